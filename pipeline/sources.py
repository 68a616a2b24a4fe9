"""Outside synthetic sources: folders of images the tool did not make (a diffusion model's, a renderer's, another
GAN's), each an ImageFolder whose class folders name the dataset's classes. They are read the way ingest reads the
dataset (the same formats, EXIF, square, size, gray or colour), bad files quarantined, and checked for leaks: an
outside image that is a copy of a validation or test image would fake a gain, so exact copies (the same pixels) and
near copies (see _feature_space) are excluded and listed. A source made mostly of them is refused.
Stage output: sources/<name>/arrays.npz, manifest.csv, quarantine.csv, and sources/summary.json."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from pipeline import ingest, storage
from pipeline.classifier import REAL_AUG, embed, train_classifier
from pipeline.config import SOURCE_NAME, Config, parse_sources
from pipeline.device import pick_device
from pipeline.errors import AugmentError
from pipeline.progress import logger

NEAR_COPY = 0.5     # near copy: closer to a held-out image than this share of any real training image's distance to one
MOSTLY_LEAKS = 0.5  # a source with more than this share of its images excluded as copies of held-out images is refused
SUMMARY = "summary.json"


def scan(name: str, folder: str | Path, classes: list[str]) -> list[ingest.Candidate]:
    """The image files of one source; a class folder the dataset does not have is an error (its images would
    silently be nobody's class), a class the source lacks is allowed and reported."""
    root = Path(folder)
    if not root.is_dir():
        raise AugmentError(f"synthetic source '{name}': '{root}' is not a folder (one sub-folder per class)")
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    unknown = sorted(p.name for p in found if p.name not in classes)
    if unknown:
        raise AugmentError(f"synthetic source '{name}' has class folders the dataset does not have: {unknown} "
                           f"(the dataset's classes: {', '.join(classes)}); rename or remove them")
    candidates = [ingest.Candidate(f, f.relative_to(root).as_posix(), d.name, "")
                  for d in found for f in ingest.class_files(d)]
    if not candidates:
        raise AugmentError(f"synthetic source '{name}': '{root}' holds no image files in class folders")
    return candidates


def run(config: Config, ingest_dir: str | Path, out_dir: str | Path) -> dict:
    """Read every source of evaluate.sources into out_dir/<name>/; return the summary (also out_dir/summary.json)."""
    start, sources = time.perf_counter(), parse_sources(config.evaluate.sources)
    out = storage.fresh_dir(out_dir)
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    summary = {"sources": {}}
    if sources:
        held_out = _held_out(arrays)
        features = _feature_space(config, arrays, held_out)
        for name, folder in sources.items():
            summary["sources"][name] = _read_source(config, name, folder, classes, arrays, held_out, features, out / name)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    storage.write_json(out / SUMMARY, summary)
    return summary


def _held_out(arrays: dict) -> dict:
    """The validation and test images: their pixel hashes (ingest's) and where each came from."""
    images = np.concatenate([arrays["val_images"], arrays["test_images"]]) if "val_images" in arrays else arrays["test_images"]
    kinds = ["validation"] * (len(images) - len(arrays["test_images"])) + ["test"] * len(arrays["test_images"])
    return {"images": images, "kinds": kinds, "hashes": {ingest.pixel_hash(p): i for i, p in enumerate(images)}}


def _feature_space(config: Config, arrays: dict, held_out: dict) -> dict:
    """The copy check's features: the evaluation's built-in CNN trained on the real training images (real+aug,
    seed 0), the held-out images embedded in it, and the near-copy threshold: NEAR_COPY times the smallest distance
    from a real training image to its nearest held-out image. Those are distinct real images compared with the same
    held-out set, so the threshold follows the set's size (thousands of test images leave every image some close
    neighbour); a re-encoded or slightly altered copy lies far below it."""
    device = pick_device(config.evaluate.device)
    evaluate = dataclasses.replace(config.evaluate, model="small")  # the built-in CNN's features, whatever evaluates
    real = (arrays["train_images"], arrays["train_labels"])
    model = train_classifier(evaluate, REAL_AUG, 0, real, None, len(arrays["classes"]), device,
                             progress="sources: training the copy check's feature classifier")
    held_out_features = embed(model, held_out["images"], device)
    distances, _ = NearestNeighbors(n_neighbors=1).fit(held_out_features).kneighbors(embed(model, real[0], device))
    threshold = NEAR_COPY * float(distances[:, 0].min())
    return {"model": model, "device": device, "held_out": held_out_features, "threshold": threshold,
            "train": embed(model, real[0], device),
            "train_hashes": {ingest.pixel_hash(p): i for i, p in enumerate(real[0])}}


def _read_source(config: Config, name: str, folder: str, classes: list[str], arrays: dict, held_out: dict,
                 features: dict, out: Path) -> dict:
    candidates = scan(name, folder, classes)
    images, kept, quarantine = ingest.decode_all(candidates, config.ingest, f"sources: reading {name}")
    channels = arrays["train_images"].shape[1]
    pixels = ingest.to_channels(np.stack(images), "gray" if channels == 1 else "rgb") if images else \
        np.zeros((0, channels, config.ingest.image_size, config.ingest.image_size), np.uint8)
    labels = np.array([classes.index(c.label) for c in kept], dtype=np.int64)
    # Each image hashed and embedded once: both the leak check and the training-copy index read them.
    hashes = [ingest.pixel_hash(p) for p in pixels]
    embedded = embed(features["model"], pixels, features["device"]) if len(pixels) else np.zeros((0, 1), np.float32)
    excluded = _leaks(hashes, embedded, held_out, features)
    rows = [[c.relative, c.label, excluded.get(i, "kept")] for i, c in enumerate(kept)]
    keep = np.array([i not in excluded for i in range(len(kept))], dtype=bool)
    storage.write_csv(out / "quarantine.csv", ["file", "class", "reason"], quarantine)  # before a refusal names it
    if len(kept) == 0:
        raise AugmentError(f"synthetic source '{name}': no image in '{folder}' could be read (see {out / 'quarantine.csv'})")
    if len(excluded) > MOSTLY_LEAKS * len(kept):
        raise AugmentError(f"synthetic source '{name}': {len(excluded)} of its {len(kept)} images are copies of the "
                           "dataset's validation or test images; refused (it would fake a gain on exactly the images "
                           "that judge it)")
    storage.save_arrays(out, images=pixels[keep], labels=labels[keep], classes=np.array(classes),
                        copies=_training_copies([h for h, k in zip(hashes, keep) if k], embedded[keep], features))
    storage.write_csv(out / "manifest.csv", ["file", "class", "status"], rows)
    counts = np.bincount(labels[keep], minlength=len(classes))
    missing = [c for c, n in zip(classes, counts) if n == 0]
    if excluded:
        logger.warning("synthetic source '%s': excluded %d image(s) that copy validation or test images (%s)", name,
                       len(excluded), out / "manifest.csv")
    if missing:
        logger.warning("synthetic source '%s' has no images of %s: its conditions use the other classes' images only",
                       name, ", ".join(missing))
    return {"folder": str(Path(folder).resolve()), "n_images": int(keep.sum()), "n_quarantined": len(quarantine),
            "n_excluded": len(excluded), "per_class": dict(zip(classes, counts.tolist())), "missing_classes": missing,
            "excluded": [{"file": kept[i].relative, "reason": reason} for i, reason in sorted(excluded.items())]}


def _leaks(hashes: list[str], embedded: np.ndarray, held_out: dict, features: dict) -> dict[int, str]:
    """Row -> why it is excluded: the same pixels as a held-out image (hashes: ingest's pixel hash of each row), or
    nearer to one than the near-copy threshold in the copy check's features (embedded; see _feature_space)."""
    found = {}
    for i, digest in enumerate(hashes):
        match = held_out["hashes"].get(digest)
        if match is not None:
            found[i] = f"the same pixels as a {held_out['kinds'][match]} image"
    if len(hashes):
        distance, index = NearestNeighbors(n_neighbors=1).fit(features["held_out"]).kneighbors(embedded)
        for i in np.flatnonzero(distance[:, 0] < features["threshold"]):
            found.setdefault(int(i), f"a near copy of a {held_out['kinds'][int(index[i, 0])]} image "
                                     f"(feature distance {distance[i, 0]:.3f} < {features['threshold']:.3f})")
    return found


def _training_copies(hashes: list[str], embedded: np.ndarray, features: dict) -> np.ndarray:
    """For each image, the index of the real TRAINING image it copies (the same pixels, or nearer than the near-copy
    threshold), else -1. Kept in the source (a copy of a training image helps no more than that image), but a
    cross-validated recommendation leaves it out of the fold that holds that image out (evaluate.folds)."""
    copies = np.full(len(hashes), -1, dtype=np.int64)
    if len(hashes) and len(features["train"]):
        distance, index = NearestNeighbors(n_neighbors=1).fit(features["train"]).kneighbors(embedded)
        near = distance[:, 0] < features["threshold"]
        copies[near] = index[near, 0]
    for i, digest in enumerate(hashes):  # the same pixels: whatever the features say
        copies[i] = features["train_hashes"].get(digest, copies[i])
    return copies


def training_copies(sources_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The source's `copies` array (see _training_copies) and its labels, as stored by the sources stage."""
    path = Path(sources_dir) / name
    arrays = storage.load_arrays(path)
    if "copies" not in arrays:
        raise AugmentError(f"'{path}' was read by an older version without its copy index; re-run the sources stage")
    copies, labels = np.asarray(arrays["copies"]), np.asarray(arrays["labels"])
    if copies.shape != labels.shape or copies.dtype.kind != "i":
        raise AugmentError(f"'{path}' is damaged (its copy index does not match its images); re-run the sources stage")
    return copies.astype(np.int64), labels


def load(sources_dir: str | Path, classes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (images, labels) of every source the sources stage read (none when it read none)."""
    folder = Path(sources_dir)
    summary = storage.read_json_object(folder / SUMMARY, ("sources",)) if (folder / SUMMARY).is_file() else {"sources": {}}
    result = {}
    for name in summary["sources"]:
        if not SOURCE_NAME.fullmatch(str(name)):
            raise AugmentError(f"'{folder / SUMMARY}' names a source '{name}' that is not a valid source name; re-run the sources stage")
        arrays = storage.load_arrays(folder / name)
        if [str(c) for c in arrays["classes"]] != classes:
            raise AugmentError(f"source '{name}' in '{folder}' was read for other classes; re-run the sources stage")
        result[name] = (arrays["images"], arrays["labels"])
    return result

