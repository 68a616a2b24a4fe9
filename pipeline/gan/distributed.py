"""One large conditional GAN trained data-parallel (DistributedDataParallel) across processes started by torchrun: the
same training loop as one process (pipeline.gan.train.training_loop), with a World of several ranks."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.config import TrainConfig
from pipeline.errors import AugmentError
from pipeline.gan.train import World, shard, training_loop  # noqa: F401 - shard: the split every rank draws from


def run(config: TrainConfig, ingest_dir: str | Path, out_dir: str | Path, device: torch.device) -> dict | None:
    """Train inside an initialised process group: every rank draws config.batch_size / world_size images per step
    from its own shard, gradients are averaged, and rank 0 writes checkpoint, EMA generator and losses to out_dir
    (the same files `train.run` writes). Returns rank 0's summary, None on other ranks."""
    if not dist.is_initialized():
        raise AugmentError("distributed training needs a process group: start it with torchrun (see README)")
    return training_loop(config, ingest_dir, out_dir, device, World(dist.get_rank(), dist.get_world_size()))
