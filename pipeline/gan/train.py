"""Stage 2: train the class-conditional GAN on the ingested arrays: the one training loop, in one process or in several
data-parallel ones (pipeline/gan/distributed.py); sample grids and quality as it goes. The step is pipeline.gan.step's,
the files pipeline.gan.checkpoint's."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import storage
from pipeline.config import TrainConfig
from pipeline.device import pick_device, prepare_module
from pipeline.errors import AugmentError
from pipeline.gan import checkpoint
from pipeline.gan.diffaugment import parse_policy
from pipeline.gan.networks import Discriminator, spec_for
from pipeline.generators import build_generator, to_uint8
from pipeline.gan.quality import COLUMNS as QUALITY_COLUMNS, QualityProbe
from pipeline.gan.step import LOG_EVERY, GanStep, draw_batch, ema_decay, optimizers, sampling_weights, update_ema
from pipeline.progress import logger, track

GRID_COLUMNS = 8
BEST = "generator_best.safetensors"  # keep=best: EMA snapshot at the best sample grid so far


def save_grid(path: Path, images: torch.Tensor, rows: int) -> None:
    """Write images (rows*cols x C x H x W) as one PNG, one row per class."""
    pixels = to_uint8(images)
    n, h, w, c = pixels.shape
    cols = n // rows
    grid = pixels.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)
    with storage.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


@dataclass(frozen=True)
class World:
    """The processes that train one model together. One process (rank 0 of 1) is the ordinary case; a data-parallel
    run (pipeline/gan/distributed.py) has one per GPU or CPU share, each drawing its share of every batch from its
    own shard of the images, gradients averaged by DistributedDataParallel, and rank 0 writing every file."""
    rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over the processes (every process must call it at the same step)."""
        if self.size == 1:
            return values
        import torch.distributed as dist

        dist.all_reduce(values)
        return values / self.size

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, module: torch.nn.Module):
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module)


def shard(count: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of the dataset indices (DistributedSampler's interleaved split, without padding)."""
    return torch.arange(count)[rank::world_size]


def run(config: TrainConfig, ingest_dir: str | Path, out_dir: str | Path) -> dict:
    """Train on ingest_dir's arrays in this process; write gan/ (checkpoint, generator_ema, generator.json, samples,
    losses.csv, quality.csv: the EMA generator's fidelity at every sample grid)."""
    return training_loop(config, ingest_dir, out_dir, pick_device(config.device))


def training_loop(config: TrainConfig, ingest_dir: str | Path, out_dir: str | Path, device: torch.device,
                  world: World = World()) -> dict | None:
    """The one GAN training loop, for one process or `world.size` data-parallel ones (the same setup, step, logging,
    sample grids and checkpoints; only rank 0 writes, and quality tracking needs one process). Resumes from a
    checkpoint of the same run. Returns rank 0's summary (None on the other ranks)."""
    start = time.perf_counter()
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    images = torch.from_numpy(arrays["train_images"])                                  # N x C x S x S uint8
    labels = torch.from_numpy(arrays["train_labels"])
    if config.batch_size % world.size:
        raise AugmentError(f"train.batch_size {config.batch_size} must be divisible by the {world.size} processes")
    spec = spec_for(config, classes, images.shape[1], images.shape[-1], **({"world_size": world.size} if world.size > 1 else {}))
    out = Path(out_dir)
    resumed = checkpoint.resumable_step(out, spec, warn=world.leader)  # every rank reads it before rank 0 changes anything
    world.barrier()
    if world.leader:
        if resumed is None:
            storage.fresh_dir(out)
        else:
            storage.refuse_links(out)
            storage.remove_stale_temp_files(out)
        storage.real_dir(out / "samples")
    world.barrier()
    tracked = config.track_quality and world.size == 1
    if world.leader and not tracked and config.track_quality:
        logger.warning("distributed training measures no quality during training: train.keep=best keeps the last generator")
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    generator, discriminator = build_generator(spec), Discriminator(
        len(classes), spec.channels, spec.image_size, spec.width, config.discriminator_width, config.minibatch_std)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g, opt_d = optimizers(config, generator, discriminator)
    start_step = 0
    if resumed is not None:
        start_step = checkpoint.restore(out, generator, discriminator, ema, opt_g, opt_d)
        if world.leader:
            logger.info("resuming training from step %d of %d", start_step, config.steps)
    for module in (generator, discriminator, ema):
        prepare_module(module, device)
    g_forward, d_forward = world.wrap(generator), world.wrap(discriminator)
    if config.compile:
        g_forward, d_forward = torch.compile(g_forward), torch.compile(d_forward)
    # DDP's rules: one D forward per backward (real and fake together), and D frozen during G's step.
    gan_step = GanStep(config, generator, discriminator, opt_g, opt_d, device, parse_policy(config.augment), g_forward,
                       d_forward, joint_discriminator=world.size > 1)
    rng = torch.Generator().manual_seed(config.seed + start_step + 1000 * world.rank)  # own batches and noise per rank
    mine = shard(len(images), world.rank, world.size) if world.size > 1 else None
    weights = sampling_weights(config.sampling, labels if mine is None else labels[mine])  # fake labels follow
    fixed_labels = torch.arange(len(classes)).repeat_interleave(GRID_COLUMNS).to(device)
    fixed_z = torch.randn(len(fixed_labels), config.z_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    images, labels = images.to(device), labels.to(device)
    losses_path, quality_path = out / "losses.csv", out / "quality.csv"
    rows = storage.read_csv_rows(losses_path) if resumed is not None else []
    probe = QualityProbe(arrays["train_images"], arrays["train_labels"], len(classes), config.z_dim, device,
                         config.probe_steps) \
        if tracked and start_step < config.steps else None  # a finished run only re-exports
    quality = storage.read_csv_rows(quality_path) if resumed is not None and probe else []
    history, clock = [], time.perf_counter()
    steps = range(start_step + 1, config.steps + 1)
    for step in track(steps, len(steps), "train: GAN steps") if world.leader else steps:
        real, batch_labels, z = draw_batch(images, labels, mine, config.batch_size // world.size, config.z_dim, rng,
                                           device, weights)
        history.append(gan_step(real, batch_labels, z, rng))
        update_ema(ema, generator, ema_decay(config, step * config.batch_size))
        sample_now = step % config.sample_every == 0 or step == config.steps
        checkpoint_now = step % config.checkpoint_every == 0 or step == config.steps
        if step % LOG_EVERY == 0 or sample_now or checkpoint_now:  # checked before anything is written: no garbage saved
            values = world.mean(torch.stack(history).float().mean(0)).tolist()  # the loss of the global batch
            if not all(np.isfinite(values)):
                raise AugmentError(f"GAN training diverged at step {step} (loss is {values[0]:.3g}); "
                                   "lower train.lr_generator / train.lr_discriminator and run again")
            rate = len(history) * config.batch_size / (time.perf_counter() - clock)
            rows.append([step] + [round(v, 5) for v in values] + [round(rate, 1)])
            history, clock = [], time.perf_counter()
        if sample_now and world.leader:
            with torch.no_grad():
                save_grid(out / "samples" / f"step_{step:06d}.png", ema(fixed_z, fixed_labels), len(classes))
            if probe:
                quality.append([step, *(round(v, 5) for v in probe.measure(ema))])
                if config.keep == "best" and quality[-1][1] <= min(float(row[1]) for row in quality):
                    storage.save_tensors(out / BEST, ema.state_dict(), {"step": str(step)})
        if checkpoint_now and world.leader:
            checkpoint.write_losses(out, rows)
            if probe:
                storage.write_csv(quality_path, QUALITY_COLUMNS, quality)
            checkpoint.save(out, spec, step, generator, discriminator, ema, opt_g, opt_d)
    summary = None
    if world.leader:
        summary = checkpoint.export(out, spec, _kept(out, config, ema, tracked), rows, time.perf_counter() - start)
    world.barrier()  # no rank leaves (and tears the group down) before rank 0 has written
    return summary


def _kept(out: Path, config: TrainConfig, ema: torch.nn.Module, tracked: bool = True) -> torch.nn.Module:
    """The EMA generator to export: the last one, or (keep=best) the snapshot with the lowest Fréchet distance."""
    if not tracked:
        return ema
    if config.keep == "best" and not config.track_quality:
        logger.warning("train.keep=best picks by the quality measured during training, which train.track_quality=false "
                       "turned off: keeping the last generator")
    if config.keep != "best" or not (out / BEST).is_file():
        return ema
    best = copy.deepcopy(ema)
    storage.load_weights(best, storage.load_tensors(out / BEST), out / BEST)
    logger.info("keeping the generator of step %s (lowest Fréchet distance)", storage.read_metadata(out / BEST)["step"])
    return best
