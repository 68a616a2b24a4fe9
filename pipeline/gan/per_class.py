"""train.mode=per_class: one generator per class, each trained alone (the unit of fan-out), then merged into gan/."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch

from pipeline import storage
from pipeline.config import TrainConfig
from pipeline.device import pick_device
from pipeline.errors import AugmentError
from pipeline.gan import checkpoint, train
from pipeline.gan.networks import spec_for
from pipeline.generators import build_generator, read_spec
from pipeline.gan.quality import COLUMNS as QUALITY_COLUMNS, QualityProbe
from pipeline.progress import logger

FOLDER = "per_class"  # gan/per_class/<class>/ holds one class's training run (train.run's usual outputs)


def class_names(ingest_dir: str | Path) -> list[str]:
    """The classes to train, in the order generate and evaluate index them."""
    return [str(c) for c in storage.load_arrays(ingest_dir)["classes"]]  # load_arrays checks each is a safe name


def _one_class_overrides(config: TrainConfig, index: int) -> dict:
    """A class's own seed; no quality tracking (nor keep=best, which picks by it): one class gives no measure."""
    return {"track_quality": False, "keep": "last", "seed": config.seed + index}


def train_class(config: TrainConfig, ingest_dir: str | Path, gan_dir: str | Path, name: str) -> dict:
    """Train class `name`'s own generator on that class's training images only, into gan_dir/per_class/<name>/."""
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    if name not in classes:
        raise AugmentError(f"class '{name}' is not in the ingested dataset (classes: {', '.join(classes)})")
    index = classes.index(name)
    # Hidden name: ingest ignores hidden folders, so it can never be a class of its own.
    subset = Path(gan_dir) / FOLDER / f".ingest-{name}"
    keep = arrays["train_labels"] == index
    storage.save_arrays(subset, train_images=arrays["train_images"][keep],
                        train_labels=np.zeros(int(keep.sum()), dtype=arrays["train_labels"].dtype), classes=np.array([name]))
    # A one-class quality probe measures nothing (its classifier has one answer): quality is measured on the merged model.
    one_class = dataclasses.replace(config, **_one_class_overrides(config, index))
    try:
        return train.run(one_class, subset, Path(gan_dir) / FOLDER / name)
    finally:
        shutil.rmtree(subset, ignore_errors=True)


def merge(config: TrainConfig, ingest_dir: str | Path, gan_dir: str | Path) -> dict:
    """Combine the per-class generators into gan/generator.json + generator_ema.safetensors (what generate reads),
    with losses.csv averaged over classes, a sample grid, quality.csv and summary.json."""
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    gan, tensors, summaries, losses = Path(gan_dir), {}, {}, []
    for index, name in enumerate(classes):
        folder = gan / FOLDER / name
        if not (folder / "generator_ema.safetensors").is_file():
            raise AugmentError(f"class '{name}' has no trained generator in '{folder}'; run its training first")
        spec = read_spec(folder / "generator.json").to_dict()
        expected = dict(dataclasses.asdict(config), **_one_class_overrides(config, index))
        if spec["train"] != expected:
            raise AugmentError(f"'{folder}' was trained with other train settings; train class '{name}' again")
        tensors.update({f"generators.{index}.{k}": v for k, v in storage.load_tensors(folder / "generator_ema.safetensors").items()})
        summaries[name] = storage.read_json_object(folder / "summary.json", ("seconds", "images_per_second"))
        losses.append(np.array(storage.read_csv_rows(folder / "losses.csv"), dtype=float))
    for stale in gan.iterdir():  # an earlier conditional run's files, or classes no longer in the dataset
        if stale.name not in (FOLDER, storage.STAGE_MARKER):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for stale in (gan / FOLDER).iterdir():
        if stale.name not in classes and stale.name != storage.STAGE_MARKER:
            shutil.rmtree(stale, ignore_errors=True)
    spec = spec_for(config, classes, arrays["train_images"].shape[1], arrays["train_images"].shape[-1], kind="per_class")
    generator = build_generator(spec).eval()
    storage.load_weights(generator, tensors, gan / FOLDER)
    rows = [[int(r[0]), *(round(float(v), 5) for v in r[1:])] for r in np.mean(losses, axis=0)] if losses[0].size else []
    checkpoint.write_losses(gan, rows)
    _samples_and_quality(config, arrays, generator, gan, len(classes))
    checkpoint.write_generator(gan, spec, generator)
    summary = {"steps": config.steps, "mode": "per_class", "classes": summaries,
               "images_per_second": float(np.median([s["images_per_second"] for s in summaries.values()])),
               "seconds": round(sum(s["seconds"] for s in summaries.values()), 1),
               "final_losses": rows[-1][1:5] if rows else []}
    storage.write_json(gan / "summary.json", summary)
    logger.info("merged %d per-class generators into %s", len(classes), gan)
    return summary


def _samples_and_quality(config: TrainConfig, arrays: dict, generator: torch.nn.Module, gan: Path, num_classes: int) -> None:
    """The same fixed-noise grid and fidelity row the conditional trainer writes, for the merged generator."""
    device = pick_device(config.device)
    generator.to(device)
    labels = torch.arange(num_classes).repeat_interleave(train.GRID_COLUMNS).to(device)
    z = torch.randn(len(labels), config.z_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    with torch.no_grad():
        train.save_grid(gan / "samples" / f"step_{config.steps:06d}.png", generator(z, labels), num_classes)
    if config.track_quality:
        probe = QualityProbe(arrays["train_images"], arrays["train_labels"], num_classes, config.z_dim, device,
                             config.probe_steps)
        storage.write_csv(gan / "quality.csv", QUALITY_COLUMNS, [[config.steps, *(round(v, 5) for v in probe.measure(generator))]])
    generator.cpu()


def run(config: TrainConfig, ingest_dir: str | Path, gan_dir: str | Path) -> dict:
    """The sequential per-class train stage (what `augment stage train` and dvc call): every class, then merge."""
    for name in class_names(ingest_dir):
        train_class(config, ingest_dir, gan_dir, name)
    return merge(config, ingest_dir, gan_dir)
