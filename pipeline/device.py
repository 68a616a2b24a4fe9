"""Device choice, CPU threads, and the CUDA-only speed-ups (AMP, channels_last), kept in one place."""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch

from pipeline.config import DEVICES, PRECISIONS, Config
from pipeline.errors import AugmentError


def set_threads(threads: int = 0) -> int:
    """Choose torch's CPU threads deliberately: `threads` intra-op threads (0: one per CPU this process may run on)
    and one inter-op thread; returns the count in force. On a small machine oversubscription costs far more than a
    thread gains (2 cores: a GAN step took 0.11 s on 1 thread, 2.1 s on 2 while another process held a core), so a
    caller that shares the machine (DataLoader workers, Dask workers, a second run) should pass its share."""
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)  # the stages run no parallel graph branches
    except RuntimeError:  # settable only before the first inter-op work; keep what is in force then
        pass
    return torch.get_num_threads()


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU (Apple's mps only when asked for: it is not measured); asking for a
    device that is not there is a user error."""
    if name not in DEVICES:
        raise AugmentError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AugmentError("device 'cuda' was requested but no CUDA GPU is available; use device=auto or cpu")
    if name == "mps" and not _mps_available():
        raise AugmentError("device 'mps' was requested but this machine has no Apple GPU (MPS); use device=auto or cpu")
    return torch.device(name)


# Options whose default depends on the device, for the sizes that change speed but not results: generation draws
# one latent per seed and runs the generator in eval mode, so its batch size changes no image (tests/test_gpu_path.py).
# 256 on a CPU: 1,024 wrote no faster here (benchmarks/results/gpu_check_cpu.md); 1,024 on a GPU, where a batch of 256
# small images leaves most of the device idle (to be confirmed by benchmarks/gpu_check.py on a lent GPU).
GENERATE_BATCH = {"cpu": 256, "cuda": 1024, "mps": 1024}


def default_generate_batch(device: torch.device) -> int:
    return GENERATE_BATCH.get(device.type, GENERATE_BATCH["cpu"])


def resolve(config: Config) -> Config:
    """Fill the options left to the device (value 0) with the device's default, for config.json to record what ran.
    Options that change results (GAN and classifier batch, width, steps) are the same on every device, so a run on a
    GPU follows the protocol the CPU benchmarks measured; precision 'auto' is resolved by autocast (bf16 on CUDA)."""
    if config.generate.batch_size:
        return config
    batch = default_generate_batch(pick_device(config.generate.device))
    return dataclasses.replace(config, generate=dataclasses.replace(config.generate, batch_size=batch))


def prepare_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to device in channels_last memory format: tensor cores prefer it on CUDA, and oneDNN's CPU convolutions
    ran a GAN training step 1.12x faster with it here (benchmarks/perf_levers.py)."""
    module.to(device)
    module.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return module


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast (no loss scaling needed) or full fp32. auto: bf16 on CUDA GPUs that support it, fp32 on CPU;
    bf16 on a CPU is opt-in (a GAN step ran 1.5x faster on this machine's AVX-512 BF16 cores, benchmarks/perf_levers.py)."""
    if precision not in PRECISIONS:
        raise AugmentError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cuda" and precision != "fp32" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise AugmentError("precision bf16 was requested but this GPU does not support bfloat16; use auto or fp32")
        precision = "fp32"
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
