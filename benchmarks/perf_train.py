"""Training-side measurements for benchmarks/performance.py: our train loop's rate, the reference loop a user would
write (ImageFolder + DataLoader + per-sample transforms, as pytorch/examples dcgan), FLOPs of one step, matmul peak."""
from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from pipeline.config import TrainConfig
from pipeline.gan import train
from pipeline.gan.diffaugment import parse_policy
from pipeline.gan.networks import Discriminator, spec_for
from pipeline.gan.step import GanStep, ema_decay, optimizers, update_ema
from pipeline.generators import build_generator

WINDOW = train.LOG_EVERY  # steps per timed window, the same as train.run's logged rate windows


def steady_rate(rates: list[float]) -> float:
    """Median images/s over the windows after the first (the first holds warm-up: allocator, first-call costs)."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def bench_config(steps: int, **changes) -> TrainConfig:
    """The default TrainConfig (so the benchmark follows today's defaults) made into a pure-throughput run."""
    return dataclasses.replace(TrainConfig(), steps=steps, track_quality=False, keep="last", sample_every=steps,
                               checkpoint_every=steps, device="cpu", **changes)


def ours(ingest_dir: Path, gan_dir: Path, steps: int, **changes) -> dict:
    """train.run on the ingested arrays; its own logged per-window rates (losses.csv)."""
    import shutil

    shutil.rmtree(gan_dir, ignore_errors=True)  # a checkpoint there would make train.run resume instead of train
    summary = train.run(bench_config(steps, **changes), ingest_dir, gan_dir)
    rows = (gan_dir / "losses.csv").read_text().splitlines()[1:]
    rates = [float(row.split(",")[-1]) for row in rows]
    return {"images_per_second": round(steady_rate(rates), 1), "window_rates": rates, "steps": steps,
            "run_seconds": summary["seconds"], "threads": torch.get_num_threads()}


class Step:
    """One full D+G step as train.run does it: pipeline.gan.step.GanStep itself (hinge losses, DiffAugment on real and
    fake, mode seeking, Adam) and the EMA update, so the benchmarks time the trainer's computation, not a copy of it.
    `precision` is train.precision (bf16 autocast for the levers); `channels_last` as pipeline.device prepares modules."""

    def __init__(self, config: TrainConfig, num_classes: int, channels: int, image_size: int, precision: str = "fp32",
                 channels_last: bool = False):
        torch.manual_seed(config.seed)
        self.config = dataclasses.replace(config, precision=precision)
        spec = spec_for(self.config, [str(c) for c in range(num_classes)], channels, image_size)
        self.generator = build_generator(spec)
        self.discriminator = Discriminator(num_classes, channels, image_size, spec.width, config.discriminator_width,
                                           config.minibatch_std)
        if channels_last:  # levers only: what channels_last does on this CPU
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.rng, self.images_seen = torch.Generator().manual_seed(config.seed), 0
        self.step = GanStep(self.config, self.generator, self.discriminator,
                            *optimizers(self.config, self.generator, self.discriminator), torch.device("cpu"),
                            parse_policy(config.augment))

    def __call__(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One step on a batch in [-1, 1]; returns [loss_d, loss_g, D(real), D(fake)] (not read back: no sync)."""
        z = torch.randn(len(real), self.config.z_dim, generator=self.rng)
        losses = self.step(real, labels, z, self.rng)
        self.images_seen += len(real)
        update_ema(self.ema, self.generator, ema_decay(self.config, self.images_seen))
        return losses


def reference(train_dir: Path, steps: int, workers: int, channels: int, image_size: int) -> dict:
    """The loop a user would write: ImageFolder + per-sample transforms + DataLoader, `.item()` every step to log."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    gray = [transforms.Grayscale(num_output_channels=1)] if channels == 1 else []  # ImageFolder loads RGB
    # The files already have the training side, so no Resize/CenterCrop: the reference pays for nothing we skip.
    dataset = datasets.ImageFolder(str(train_dir), transform=transforms.Compose(
        [*gray, transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]))
    loader = DataLoader(dataset, batch_size=TrainConfig().batch_size, shuffle=True, drop_last=True, num_workers=workers)
    step = Step(bench_config(steps), len(dataset.classes), channels, image_size)
    rates, done, clock, log = [], 0, time.perf_counter(), []
    while done < steps:
        for real, labels in loader:  # a new epoch re-creates the workers, as in the example
            log.append(tuple(step(real, labels).tolist()))  # `.item()`-style logging: a host sync every step
            done += 1
            if done % WINDOW == 0 or done == steps:
                rates.append(round((done - WINDOW * (len(rates))) * len(real) / (time.perf_counter() - clock), 1))
                clock = time.perf_counter()
            if done == steps:
                break
    return {"images_per_second": round(steady_rate(rates), 1), "window_rates": rates, "steps": steps,
            "num_workers": workers, "threads": torch.get_num_threads(), "images_in_folder": len(dataset)}


def step_flops(config: TrainConfig, num_classes: int, channels: int, image_size: int) -> dict:
    """FLOPs (matmul/conv counted by FlopCounterMode, forward + backward) of one full D+G step at the config's batch."""
    from torch.utils.flop_counter import FlopCounterMode

    step = Step(config, num_classes, channels, image_size)
    real, labels = _batch(config, num_classes, channels, image_size)
    step(real, labels)  # spectral norm's first call initialises its vectors: count a steady step
    counter = FlopCounterMode(display=False)
    with counter:
        step(real, labels)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops_per_step": int(counter.get_total_flops()), "by_op": by_op,
            "parameters_generator": sum(p.numel() for p in step.generator.parameters()),
            "parameters_discriminator": sum(p.numel() for p in step.discriminator.parameters())}


def _batch(config: TrainConfig, num_classes: int, channels: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    real = torch.rand(config.batch_size, channels, image_size, image_size) * 2 - 1
    return real, torch.randint(0, num_classes, (config.batch_size,))


def step_vs_matmul(config: TrainConfig, num_classes: int, channels: int, image_size: int, side: int, rounds: int,
                   steps: int) -> dict:
    """Seconds per training step and dense fp32 torch.mm FLOP/s (side x side), measured in alternation so that
    drift on a shared machine hits both alike; medians over the rounds."""
    step = Step(config, num_classes, channels, image_size)
    real, labels = _batch(config, num_classes, channels, image_size)
    a, b = torch.randn(side, side), torch.randn(side, side)
    for _ in range(3):
        step(real, labels)
    torch.mm(a, b)
    step_seconds, mm_seconds = [], []
    for _ in range(rounds):
        clock = time.perf_counter()
        for _ in range(steps):
            step(real, labels)
        step_seconds.append((time.perf_counter() - clock) / steps)
        clock = time.perf_counter()
        torch.mm(a, b)
        mm_seconds.append(time.perf_counter() - clock)
    flops = 2 * side ** 3
    return {"step_seconds": statistics.median(step_seconds), "matmul_flops_per_second": flops / statistics.median(mm_seconds),
            "matmul_best_flops_per_second": flops / min(mm_seconds), "matmul_side": side, "rounds": rounds,
            "steps_per_round": steps, "threads": torch.get_num_threads()}
