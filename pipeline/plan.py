"""What a run would do, without doing it: the per-class split and synthetic counts from the file list (nothing is
decoded, nothing written), the disk the synthetic set needs, and a time estimate from a few GAN and classifier
steps timed on this machine at the run's sizes."""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from pipeline import generate, ingest, sources
from pipeline.config import Config, TrainConfig, parse_sources
from pipeline.device import pick_device, prepare_module
from pipeline.classifier import REAL_AUG, check_model, train_classifier
from pipeline.evaluate import crossval
from pipeline.evaluate.conditions import conditions_for
from pipeline.gan.diffaugment import parse_policy
from pipeline.gan.networks import Discriminator, spec_for
from pipeline.generators import build_generator
from pipeline.gan.step import GanStep, draw_batch, optimizers

PNG_SECONDS = 1 / 800  # writing one small PNG on this project's 2-core CPU (benchmarks/results/gpu_check_cpu.md)


def split_counts(config: Config, scanned: tuple | None = None) -> dict[str, dict[str, int]]:
    """Per class: train, val and test images as ingest would split the files (before undecodable files and
    duplicates are dropped, which only ingest can see); scanned: ingest.scan's result when the caller has it."""
    candidates, has_split = scanned or ingest.scan(config.ingest.dataset)
    classes = sorted({c.label for c in candidates if c.split != "test"})
    labels = np.array([classes.index(c.label) if c.label in classes else -1 for c in candidates])
    if has_split:
        is_test = np.array([c.split == "test" for c in candidates])
    else:
        is_test = ingest.auto_split(labels, classes, config.ingest)
    labels, is_test = labels[labels >= 0], is_test[labels >= 0]
    is_val = ingest.validation_mask(labels, is_test, config.ingest)
    return {name: {"train": int(np.sum((labels == i) & ~is_test & ~is_val)), "val": int(np.sum((labels == i) & is_val)),
                   "test": int(np.sum((labels == i) & is_test))} for i, name in enumerate(classes)}


def _channels(config: Config, sample: int = 24) -> int:
    """1 or 3: ingest.channels, or (auto) gray when every one of a few evenly spaced files decodes gray."""
    if config.ingest.channels != "auto":
        return 1 if config.ingest.channels == "gray" else 3
    candidates, _ = ingest.scan(config.ingest.dataset)
    for candidate in candidates[::max(1, len(candidates) // sample)]:
        try:
            pixels = ingest.decode(candidate.path, 8, config.ingest.resize)
        except ValueError:
            continue
        if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])):
            return 3
    return 1


def time_gan_steps(train: TrainConfig, image_size: int, channels: int, device: torch.device, steps: int,
                   warmup: int = 1) -> tuple[float, float, list[float]]:
    """Time the real GAN training step (pipeline.gan.step) on random pixels, which run as fast as images:
    (warm-up seconds, including torch.compile's compilation when train.compile is on; seconds per step; the last
    step's losses)."""
    spec = spec_for(train, [str(c) for c in range(10)], channels, image_size)
    torch.manual_seed(0)
    generator = prepare_module(build_generator(spec), device)
    discriminator = prepare_module(Discriminator(10, channels, image_size, spec.width, train.discriminator_width,
                                                 train.minibatch_std), device)
    forwards = (torch.compile(generator), torch.compile(discriminator)) if train.compile else (generator, discriminator)
    step = GanStep(train, generator, discriminator, *optimizers(train, generator, discriminator), device,
                   parse_policy(train.augment), *forwards)
    images = torch.randint(0, 256, (512, channels, image_size, image_size), dtype=torch.uint8).to(device)
    labels = (torch.arange(len(images)) % 10).to(device)
    rng = torch.Generator().manual_seed(0)
    batch = lambda: draw_batch(images, labels, None, train.batch_size, train.z_dim, rng, device)
    clock = time.perf_counter()
    for _ in range(warmup):  # kernels are built (and compiled) for these shapes once
        step(*batch(), rng).tolist()
    warmup_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    for _ in range(steps):
        losses = step(*batch(), rng)
    losses = losses.tolist()  # a host sync: every step has finished
    return warmup_seconds, (time.perf_counter() - clock) / steps, losses


def _seconds_per_classifier_step(config: Config, channels: int, num_classes: int, device: torch.device, steps: int = 5) -> float:
    """Timed on the built-in CNN when evaluate.model is module:function: a dry run imports no user code."""
    size = config.ingest.image_size
    rng = np.random.default_rng(0)
    real = (rng.integers(0, 256, (64, channels, size, size), dtype=np.uint8), np.arange(64) % num_classes)
    evaluate = config.evaluate if ":" not in config.evaluate.model else dataclasses.replace(config.evaluate, model="small")
    quick = dataclasses.replace(evaluate, steps=2)
    train_classifier(quick, REAL_AUG, 0, real, None, num_classes, device)  # warm-up
    clock = time.perf_counter()
    train_classifier(dataclasses.replace(evaluate, steps=steps), REAL_AUG, 0, real, None, num_classes, device)
    return (time.perf_counter() - clock) / steps


def preflight(config: Config, out_dir: str | Path, user_code: bool = True) -> None:
    """What can be checked before any folder is written and before a Prefect server starts: the dataset's layout
    (class folders, at least two classes), the disk the synthetic set needs under out_dir, and (user_code) that
    evaluate.model builds and classifies this data's images, which imports a module:function model."""
    scanned = ingest.scan(config.ingest.dataset)
    candidates = scanned[0]
    classes = {c.label for c in candidates if c.split != "test"}
    largest = max(Counter(c.label for c in candidates).values())  # bounds a balanced run's top-up per class
    generate.check_disk_space(out_dir, generate.estimated_bytes(max(config.generate.per_class, largest), len(classes),
                                                                config.ingest.image_size, 3))
    for name, folder in parse_sources(config.evaluate.sources).items():  # a missing folder or unknown class, now
        sources.scan(name, folder, sorted(classes))
    if config.evaluate.folds:  # refused now, not after the generator trained
        crossval.check_sources(config.evaluate, {crossval.OWN_SOURCE, *parse_sources(config.evaluate.sources)})
        counts = split_counts(config, scanned)
        crossval.check_pool(np.repeat(np.arange(len(counts)), [c["train"] + c["val"] for c in counts.values()]),
                            list(counts), config.evaluate.folds)
    if user_code:
        check_model(config.evaluate, _channels(config), len(classes), config.ingest.image_size)


def plan(config: Config) -> dict:
    """The run's plan: per-class counts, the synthetic set's disk bound, and estimated seconds per stage."""
    counts = split_counts(config)
    real = {name: c["train"] for name, c in counts.items()}
    rows = generate.plan_counts(config.generate, real)
    for row in rows:
        row.update(val=counts[row["class"]]["val"], test=counts[row["class"]]["test"])
    n_classes, n_synthetic = len(rows), sum(r["generated"] for r in rows)
    channels = _channels(config)
    device = pick_device(config.train.device)
    gan_step = time_gan_steps(config.train, config.ingest.image_size, channels, device, steps=3)[1]
    classifier_step = _seconds_per_classifier_step(config, channels, n_classes, device)
    real_labels = np.repeat(np.arange(n_classes), [real[r["class"]] for r in rows])
    conditions = conditions_for(config.evaluate, real_labels, n_classes,
                                ("synthetic", *parse_sources(config.evaluate.sources)))
    n_conditions = len(conditions)
    n_folded = config.evaluate.folds * len(crossval.candidates(conditions)[0])  # evaluate.folds: each candidate k times more
    candidates = n_synthetic * (config.generate.oversample if config.generate.filter == "teacher" else 1)
    teacher = 600 * classifier_step if config.generate.filter == "teacher" else 0.0  # pipeline.filtering.TEACHER steps
    probe = 600 * classifier_step if config.train.track_quality else 0.0  # the quality probe's classifier
    seconds = {"train": config.train.steps * gan_step + probe,
               "generate": teacher + n_synthetic * PNG_SECONDS + candidates * gan_step / config.train.batch_size / 3,
               "evaluate": config.evaluate.seeds * (n_conditions + n_folded) * config.evaluate.steps * classifier_step}
    return {"classes": rows, "n_synthetic": n_synthetic, "conditions": n_conditions, "cross_validated": n_folded,
            "device": str(device),
            "disk_bytes": generate.estimated_bytes(max(r["generated"] for r in rows), n_classes, config.ingest.image_size, channels),
            "seconds_per_gan_step": round(gan_step, 4), "seconds_per_classifier_step": round(classifier_step, 4),
            "estimated_seconds": {k: round(v) for k, v in seconds.items()}}
