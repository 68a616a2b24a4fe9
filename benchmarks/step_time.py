"""Seconds per GAN training step at several image sizes, through the real training loop (pipeline.gan.train), and
seconds per step of the evaluate stage's classifier (pipeline.classifier.train_classifier, real+aug) — where
it has a strided stem (from 64 px) also without it (pooling from the full size, as before the stem existed)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import config as config_module
from pipeline import storage
from pipeline import classifier
from pipeline.gan import train
from pipeline.gan.networks import Discriminator
from pipeline.generators import build_generator


def measure(image_size: int, channels: int, steps: int, overrides: list[str]) -> dict:
    """Train `steps` steps on random pixels of the given shape (speed does not depend on content); return timings."""
    config = config_module.load(None, [f"train.steps={steps}", f"train.sample_every={steps}", f"train.checkpoint_every={steps}",
                                       "train.track_quality=false", *overrides]).train
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        ingest_dir = Path(folder) / "ingest"
        images = rng.integers(0, 256, (200, channels, image_size, image_size), dtype=np.uint8)
        storage.save_arrays(ingest_dir, train_images=images, train_labels=np.arange(200) % 10,
                            test_images=images[:10], test_labels=np.arange(10), classes=np.array([str(c) for c in range(10)]))
        clock = time.perf_counter()
        summary = train.run(config, ingest_dir, Path(folder) / "gan")
        seconds = time.perf_counter() - clock
        spec = storage.read_json(Path(folder) / "gan" / "generator.json")
    generator = build_generator(spec)
    discriminator = Discriminator(len(spec["classes"]), channels, image_size, spec["width"])
    count = lambda module: sum(p.numel() for p in module.parameters())
    return {"image_size": image_size, "channels": channels, "width": spec["width"], "batch_size": config.batch_size,
            "generator_params_m": round(count(generator) / 1e6, 2), "discriminator_params_m": round(count(discriminator) / 1e6, 2),
            "seconds_per_step": round(config.batch_size / summary["images_per_second"], 3), "wall_seconds": round(seconds, 1)}


def classifier_step(image_size: int, channels: int, steps: int, stem: bool = True) -> float:
    """Seconds per classifier step (default evaluate settings, real+aug condition) on random pixels."""
    config = config_module.load(None, [f"evaluate.steps={steps}"]).evaluate
    rng = np.random.default_rng(0)
    real = (rng.integers(0, 256, (200, channels, image_size, image_size), dtype=np.uint8), np.arange(200) % 10)
    default_side = classifier.STEM_SIDE
    classifier.STEM_SIDE = default_side if stem else 10 ** 9
    try:  # a short warm-up run first: oneDNN builds its kernels for these shapes once
        classifier.train_classifier(dataclasses.replace(config, steps=2), classifier.REAL_AUG, 0, real, None, 10, torch.device("cpu"))
        clock = time.perf_counter()
        classifier.train_classifier(config, classifier.REAL_AUG, 0, real, None, 10, torch.device("cpu"))
        return round((time.perf_counter() - clock) / steps, 4)
    finally:
        classifier.STEM_SIDE = default_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="28:1,64:3,128:3", help="image_size:channels pairs, comma-separated")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on a shared CPU)")
    parser.add_argument("--set", action="append", default=[], help="extra train.* override, repeatable")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = [measure(int(s), int(c), args.steps, args.set) for s, c in (pair.split(":") for pair in args.sizes.split(","))]
    for row in rows:
        row["classifier_seconds_per_step"] = classifier_step(row["image_size"], row["channels"], args.steps)
        if row["image_size"] >= 2 * classifier.STEM_SIDE:  # the sizes that get a stem
            row["classifier_seconds_per_step_without_stem"] = classifier_step(row["image_size"], row["channels"], args.steps, stem=False)
    result = {"rows": rows, "threads": args.threads, "steps": args.steps, "overrides": args.set,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    print(json.dumps(result, indent=2))
    if args.out:
        storage.write_json(args.out, result)


if __name__ == "__main__":
    main()
