"""Device choice and the CUDA-only speed-ups (AMP, channels_last), kept in one place."""
from __future__ import annotations

import contextlib

import torch

from pipeline.errors import AugmentError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AugmentError("device 'cuda' was requested but no CUDA GPU is available; use device=auto or cpu")
    return torch.device(name)


def prepare_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to device; on CUDA use channels_last memory format, which tensor cores prefer."""
    module.to(device)
    if device.type == "cuda":
        module.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return module


def autocast(device: torch.device):
    """bf16 autocast on CUDA GPUs that support it (no loss scaling needed); full fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
