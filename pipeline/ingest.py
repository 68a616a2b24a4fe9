"""Stage 1: scan an ImageFolder, decode and validate every image, quarantine bad files, split, cache arrays."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.config import IngestConfig
from pipeline.errors import AugmentError
from pipeline.progress import logger, track
from pipeline import storage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
TEST_FOLDERS = ("test", "val")


@dataclass
class Candidate:
    path: Path            # absolute path of the file
    relative: str         # path relative to the dataset root, as written in the manifest
    label: str            # class name
    split: str            # train | test | "" (not decided yet)


def class_files(class_dir: Path) -> list[Path]:
    """Image files under one class folder, nested folders included, hidden entries skipped, sorted."""
    found = []
    for root, dirs, files in os.walk(class_dir):  # followlinks=False: a symlinked folder loop cannot trap us
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(dataset: str | Path) -> tuple[list[Candidate], bool]:
    """List candidate image files with their class and split; True when the dataset brings its own test split."""
    root = Path(dataset)
    if not root.exists():
        raise AugmentError(f"dataset folder '{root}' does not exist; pass --dataset DIR with one sub-folder per class")
    if not root.is_dir():
        raise AugmentError(f"dataset '{root}' is a file, not a folder; pass --dataset DIR with one sub-folder per class")
    try:
        subdirs = {p.name: p for p in _class_dirs(root)}
    except PermissionError:
        raise AugmentError(f"dataset folder '{root}' is not readable; check its permissions") from None
    test_name = next((name for name in TEST_FOLDERS if name in subdirs), None)
    has_split = "train" in subdirs and test_name is not None
    parts = [("train", subdirs["train"]), ("test", subdirs[test_name])] if has_split else [("", root)]
    candidates: list[Candidate] = []
    for split, part_root in parts:
        class_dirs = _class_dirs(part_root)
        if not class_dirs:
            raise AugmentError(f"dataset folder '{part_root}' has no class sub-folders; put each class's images in DIR/<class>/")
        for class_dir in class_dirs:
            files = class_files(class_dir)
            if not files and split != "test":
                raise AugmentError(f"class folder '{class_dir}' has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                   "add images or remove the folder")
            candidates += [Candidate(f, f.relative_to(root).as_posix(), class_dir.name, split) for f in files]
    classes = sorted({c.label for c in candidates if c.split != "test"})
    if len(classes) < 2:
        raise AugmentError(f"dataset '{root}' has {len(classes)} class folder{'s' if len(classes) != 1 else ''} with images; "
                           "a classifier needs at least 2 class folders")
    return candidates, has_split


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled down, transparency composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _square(image: Image.Image, size: int, policy: str) -> Image.Image:
    """Make the image square (center crop or black padding), then resize to size x size."""
    width, height = image.size
    if width != height:
        if policy == "center_crop":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        else:
            side = max(width, height)
            canvas = Image.new("RGB", (side, side), (0, 0, 0))
            canvas.paste(image, ((side - width) // 2, (side - height) // 2))
            image = canvas
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


# The formats the README names, recognised by their first bytes before Pillow sees the file: Pillow would otherwise
# hand any file it recognises to its plugin (an EPS file named .png runs Ghostscript).
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"))


def image_format(header: bytes) -> str | None:
    """PNG, JPEG, BMP or WEBP from a file's first 12 bytes; None for anything else."""
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in SIGNATURES if header.startswith(signature)), None)


def _open_regular(path: Path):
    """Open a file for reading only if it is a regular file: a FIFO would block forever, a device never end.
    O_NONBLOCK makes opening a FIFO return at once; it changes nothing for a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        if error.errno == errno.ELOOP or not os.path.exists(path):
            raise ValueError("a symbolic link that loops or leads nowhere") from None
        raise
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise ValueError("not a regular file (a FIFO, socket or device): skipped")
    return handle


def decode(path: Path, size: int, policy: str) -> np.ndarray:
    """Decode one file to a (size, size, 3) uint8 array; raises ValueError with a reason when it cannot."""
    with warnings.catch_warnings(), _open_regular(path) as handle:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        kind = image_format(handle.read(12))
        if kind is None:
            raise ValueError("not a PNG, JPEG, BMP or WEBP file (checked by its first bytes)")
        handle.seek(0)
        try:
            with Image.open(handle, formats=[kind]) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return np.asarray(_square(_to_rgb(image), size, policy), dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ValueError(f"refused: too many pixels ({error})") from None
        except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as error:
            raise ValueError(f"cannot decode: {error}") from None


def _split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Seeded stratified split; returns a boolean mask of test rows."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        n_test = int(round(len(rows) * fraction))
        n_test = min(max(n_test, 1), len(rows) - 1)
        is_test[rows[:n_test]] = True
    return is_test


def pixel_hash(pixels: np.ndarray) -> str:
    """An image's identity by its decoded pixels (duplicates, and the sources stage's exact copies of held-out images)."""
    return hashlib.sha256(pixels.tobytes()).hexdigest()[:16]


def run(config: IngestConfig, out_dir: str | Path) -> dict:
    """Ingest `config.dataset` into out_dir (arrays.npz, manifest.csv, quarantine.csv, stats.json); return stats."""
    out, dataset = Path(out_dir), Path(config.dataset).resolve()
    start = time.perf_counter()
    candidates, has_split = scan(dataset)
    images, kept, quarantine = decode_all(candidates, config)
    classes = _check_classes(dataset, candidates, kept)
    pixels = to_channels(np.stack(images), config.channels)                           # N x C x H x W
    labels = np.array([classes.index(c.label) for c in kept], dtype=np.int64)
    hashes = [pixel_hash(p) for p in pixels]
    # Before any split, so no image can sit on both sides of train/validation/test.
    keep = _drop_duplicates(kept, hashes, quarantine)
    kept, hashes = [c for c, k in zip(kept, keep) if k], [h for h, k in zip(hashes, keep) if k]
    pixels, labels = pixels[keep], labels[keep]
    is_test = np.array([c.split == "test" for c in kept]) if has_split else auto_split(labels, classes, config)
    if not is_test.any():
        raise AugmentError(f"the test folder of '{dataset}' has no readable image; add held-out images to test/")
    for index, label in enumerate(classes):
        if not np.any((labels == index) & ~is_test):
            raise AugmentError(f"class '{label}' has no training image left once duplicates are dropped (see quarantine.csv)")
    is_val = validation_mask(labels, is_test, config)
    stats = _write(out, config, dataset, classes, kept, hashes, pixels, labels, is_test, is_val, quarantine)
    stats.update(split="folders" if has_split else f"stratified {config.test_fraction:g} (seed {config.split_seed})",
                 seconds=round(time.perf_counter() - start, 2))
    storage.write_json(out / "stats.json", stats)
    return stats


def decode_all(candidates: list[Candidate], config: IngestConfig,
               description: str = "ingest: decoding") -> tuple[list[np.ndarray], list[Candidate], list[list[str]]]:
    """Decode every candidate (RGB, square, image_size); the ones that fail go to the quarantine rows with the reason."""
    images, kept, quarantine = [], [], []
    for candidate in track(candidates, len(candidates), description):
        try:
            images.append(decode(candidate.path, config.image_size, config.resize))
            kept.append(candidate)
        except ValueError as error:
            quarantine.append([candidate.relative, candidate.label, str(error)])
        except PermissionError:
            quarantine.append([candidate.relative, candidate.label, "not readable (permission denied)"])
        except OSError as error:  # an I/O error of the file system under the dataset
            quarantine.append([candidate.relative, candidate.label, f"not readable ({error.strerror or error})"])
    return images, kept, quarantine


def _check_classes(dataset: Path, candidates: list[Candidate], kept: list[Candidate]) -> list[str]:
    """The sorted training class names; every one must have a readable image, and test may add none."""
    classes = sorted({c.label for c in candidates if c.split != "test"})
    readable = {c.label for c in kept if c.split != "test"}
    for label in classes:
        if label not in readable:
            raise AugmentError(f"class '{label}' has no readable image (see the quarantine list); add images or remove the folder")
    if len(classes) < 2:
        raise AugmentError(f"dataset '{dataset}' has {len(classes)} class; a classifier needs at least 2 class folders")
    storage.safe_names(classes, "class folder name")
    unknown = sorted({c.label for c in kept if c.split == "test"} - set(classes))
    if unknown:
        raise AugmentError(f"test classes {unknown} have no training folder; use the same class names in train/ and test/")
    return classes


def to_channels(pixels: np.ndarray, channels: str) -> np.ndarray:
    """N x H x W x 3 RGB -> N x C x H x W; 'auto' keeps one channel when every image is gray."""
    is_gray = bool(np.all(pixels[..., 0] == pixels[..., 1]) and np.all(pixels[..., 1] == pixels[..., 2]))
    if {"auto": is_gray, "gray": True, "rgb": False}[channels]:
        pixels = np.rint(pixels @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def auto_split(labels: np.ndarray, classes: list[str], config: IngestConfig) -> np.ndarray:
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        raise AugmentError(f"class '{classes[int(counts.argmin())]}' has {counts.min()} readable image; "
                           "an automatic train/test split needs at least 2 per class")
    logger.info("no train/ and test/ folders: made a stratified %.0f%% test split (seed %d)",
                100 * config.test_fraction, config.split_seed)
    return _split(labels, config.test_fraction, config.split_seed)


def _drop_duplicates(kept: list[Candidate], hashes: list[str], quarantine: list[list[str]]) -> np.ndarray:
    """Keep one copy of every image (identical after decoding); return the mask of rows kept. A training image
    identical to an image of the dataset's own test folder would leak the test set, so the test copy is the one
    kept; among the others the first in file order stays. Every dropped copy is listed in the quarantine."""
    first = {h: c for c, h in zip(kept, hashes) if c.split == "test"}  # the test folder is the user's: left whole
    keep = np.ones(len(kept), dtype=bool)
    for i, (candidate, digest) in enumerate(zip(kept, hashes)):
        original = first.get(digest)
        if candidate.split == "test" or original is None:
            first.setdefault(digest, candidate)
            continue
        keep[i] = False
        label = "" if original.label == candidate.label else f" of class '{original.label}'"
        reason = (f"duplicate of test image {original.relative}: dropped from train" if original.split == "test" else
                  f"duplicate of {original.relative}{label}: dropped before the split (one copy kept)")
        quarantine.append([candidate.relative, candidate.label, reason])
    leaks = sum(1 for row in quarantine if row[2].startswith("duplicate of test image"))
    if leaks:
        logger.warning("dropped %d training image(s) identical to a test image (test-set leakage)", leaks)
    if (~keep).sum() > leaks:
        logger.warning("dropped %d duplicate image(s) before the split; see quarantine.csv", int((~keep).sum()) - leaks)
    return keep


def validation_mask(labels: np.ndarray, is_test: np.ndarray, config: IngestConfig) -> np.ndarray:
    """Mask of validation rows: val_fraction of each class's training rows (seeded), always leaving one to train on."""
    is_val = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(config.split_seed + 1)
    for label in np.unique(labels[~is_test]):
        rows = np.flatnonzero((labels == label) & ~is_test)
        rng.shuffle(rows)
        n_val = min(int(round(len(rows) * config.val_fraction)), len(rows) - 1)
        if config.val_fraction > 0 and len(rows) >= 2:
            n_val = max(n_val, 1)
        is_val[rows[:n_val]] = True
    return is_val


def _write(out, config, dataset, classes, kept, hashes, pixels, labels, is_test, is_val, quarantine) -> dict:
    storage.fresh_dir(out)
    is_train = ~is_test & ~is_val
    storage.save_arrays(out, train_images=pixels[is_train], train_labels=labels[is_train],
                        val_images=pixels[is_val], val_labels=labels[is_val],
                        test_images=pixels[is_test], test_labels=labels[is_test], classes=np.array(classes))
    split = np.where(is_test, "test", np.where(is_val, "val", "train"))
    rows = [[c.relative, c.label, part, h] for c, part, h in zip(kept, split, hashes)]
    storage.write_csv(out / "manifest.csv", ["file", "class", "split", "pixel_hash"], rows)
    storage.write_csv(out / "quarantine.csv", ["file", "class", "reason"], quarantine)
    per_class = {name: {"train": int(np.sum((labels == i) & is_train)), "val": int(np.sum((labels == i) & is_val)),
                        "test": int(np.sum((labels == i) & is_test))} for i, name in enumerate(classes)}
    stats = {
        "dataset": str(dataset), "classes": classes, "per_class": per_class, "n_train": int(is_train.sum()),
        "n_val": int(is_val.sum()), "n_test": int(is_test.sum()), "n_quarantined": len(quarantine),
        "image_size": config.image_size, "channels": int(pixels.shape[1]),
    }
    train_counts = {name: counts["train"] for name, counts in per_class.items()}
    largest, smallest = max(train_counts, key=train_counts.get), min(train_counts, key=train_counts.get)
    stats["imbalance_ratio"] = round(train_counts[largest] / train_counts[smallest], 4)  # every class has >= 1 (checked)
    if stats["imbalance_ratio"] > 1:
        logger.info("class sizes differ: largest '%s' %d training images, smallest '%s' %d (ratio %.1f)", largest,
                    train_counts[largest], smallest, train_counts[smallest], stats["imbalance_ratio"])
    if quarantine:
        logger.warning("quarantined %d unreadable file(s); see %s", len(quarantine), out / "quarantine.csv")
    return stats
