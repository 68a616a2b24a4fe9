"""torchrun entry point for DistributedDataParallel GAN training:
`torchrun --nproc_per_node=2 -m flows.distributed --out runs/big [--params params.yaml] [--set train.steps=500]`.
It reads the ingest/ folder an earlier `augment stage ingest --out runs/big` wrote and writes runs/big/gan/."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from flows.names import HELP
from pipeline import config as config_module
from pipeline import storage
from pipeline.errors import AugmentError
from pipeline.gan import distributed


def _device(local_rank: int, requested: str) -> torch.device:
    """One GPU per process (nccl) when CUDA is there and wanted, else CPU (gloo)."""
    if requested != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if requested == "cuda":
        raise AugmentError("train.device=cuda was requested but no CUDA GPU is available")
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    """Parse options, join torchrun's process group, train, leave the group."""
    parser = argparse.ArgumentParser(prog="python -m flows.distributed", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help=HELP["out"] + " ingest/ must be there; gan/ is written.")
    parser.add_argument("--params", type=Path, default=None, help="params.yaml to read; default: built-in defaults.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=HELP["set"])
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        raise AugmentError("start this module with torchrun, e.g. torchrun --nproc_per_node=2 -m flows.distributed --out DIR")
    local_rank, local_world = int(os.environ["LOCAL_RANK"]), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    config = config_module.load(args.params, args.overrides)
    device = _device(local_rank, config.train.device)
    # Processes on one machine share its cores: more threads each would only spin against each other.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=10))
    try:
        dirs = storage.stage_dirs(args.out)
        summary = distributed.run(config.train, dirs["ingest"], dirs["gan"], device)
        if summary is not None:
            print(f"trained on {dist.get_world_size()} processes: {summary}")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AugmentError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
