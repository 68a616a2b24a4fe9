"""One large conditional GAN trained data-parallel (DistributedDataParallel) across processes; rank 0 writes gan/."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline import storage
from pipeline.config import TrainConfig
from pipeline.errors import AugmentError
from pipeline.gan import checkpoint
from pipeline.gan.diffaugment import parse_policy
from pipeline.gan.networks import Discriminator, GeneratorSpec, build_generator
from pipeline.gan.step import LOG_EVERY, GanStep, draw_batch, ema_decay, optimizers, sampling_weights, update_ema
from pipeline.progress import logger


def shard(count: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of the dataset indices (DistributedSampler's interleaved split, without padding)."""
    return torch.arange(count)[rank::world_size]


def run(config: TrainConfig, ingest_dir: str | Path, out_dir: str | Path, device: torch.device) -> dict | None:
    """Train inside an initialised process group: every rank draws config.batch_size / world_size images per step
    from its own shard, gradients are averaged, and rank 0 writes checkpoint, EMA generator and losses to out_dir
    (the same files `train.run` writes). Returns rank 0's summary, None on other ranks."""
    if not dist.is_initialized():
        raise AugmentError("distributed training needs a process group: start it with torchrun (see README)")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if config.keep != "last" and rank == 0:
        logger.warning("distributed training measures no quality during training: train.keep=best keeps the last generator")
    if config.batch_size % world_size:
        raise AugmentError(f"train.batch_size {config.batch_size} must be divisible by the {world_size} processes")
    start, out = time.perf_counter(), Path(out_dir)
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    images, labels = torch.from_numpy(arrays["train_images"]), torch.from_numpy(arrays["train_labels"])
    spec = GeneratorSpec.for_config(config, classes, images.shape[1], images.shape[-1], world_size=world_size)
    if rank == 0:
        storage.fresh_dir(out)
    torch.manual_seed(config.seed)  # equal initial weights on every rank (DDP also broadcasts rank 0's at wrap time)
    generator = build_generator(spec).to(device)
    discriminator = Discriminator(len(classes), spec.channels, spec.image_size, spec.width,
                                  config.discriminator_width, config.minibatch_std).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    ddp_g, ddp_d = DistributedDataParallel(generator), DistributedDataParallel(discriminator)
    opt_g, opt_d = optimizers(config, generator, discriminator)
    mine = shard(len(images), rank, world_size)
    local_batch = config.batch_size // world_size
    # DDP's rules: one D forward per backward (real and fake together), and D frozen during G's step.
    gan_step = GanStep(config, generator, discriminator, opt_g, opt_d, device, parse_policy(config.augment), ddp_g, ddp_d,
                       joint_discriminator=True)
    rng = torch.Generator().manual_seed(config.seed + 1000 * rank)  # different batches and noise per rank
    weights = sampling_weights(config.sampling, labels[mine])  # over this rank's shard
    images, labels, rows, clock = images.to(device), labels.to(device), [], time.perf_counter()
    for step in range(1, config.steps + 1):
        real, batch_labels, z = draw_batch(images, labels, mine, local_batch, config.z_dim, rng, device, weights)
        losses = gan_step(real, batch_labels, z, rng)
        update_ema(ema, generator, ema_decay(config, step * config.batch_size))
        if step % LOG_EVERY == 0 or step == config.steps:
            dist.all_reduce(losses)  # the mean over ranks is the loss of the global batch
            values = (losses / world_size).tolist()
            if not all(np.isfinite(values)):
                raise AugmentError(f"GAN training diverged at step {step}; lower the learning rates and run again")
            rows.append([step, *(round(v, 5) for v in values), round(config.batch_size * step / (time.perf_counter() - clock), 1)])
        if rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps):
            checkpoint.write_losses(out, rows)
            checkpoint.save(out, spec, step, generator, discriminator, ema, opt_g, opt_d)
    if rank == 0:
        logger.info("distributed training on %d processes done", world_size)
        summary = checkpoint.export(out, spec, ema, rows, time.perf_counter() - start)
    dist.barrier()  # no rank leaves (and tears the group down) before rank 0 has written
    return summary if rank == 0 else None
