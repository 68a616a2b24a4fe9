"""Differentiable augmentation applied to real and fake images alike before the discriminator (DiffAugment-style)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.config import DIFF_AUGMENTATIONS


def translation(x: torch.Tensor, generator: torch.Generator | None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * side pixels in x and y; edges repeat the border."""
    batch, side = x.shape[0], x.shape[-1]
    max_shift = max(1, int(side * ratio + 0.5))
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 2), generator=generator, device="cpu").to(x.device, x.dtype)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shifts * (2.0 / side)  # normalized coordinates span 2 over the side
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)


def cutout(x: torch.Tensor, generator: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ratio * side at a random place in each image."""
    batch, side = x.shape[0], x.shape[-1]
    size = max(1, int(side * ratio + 0.5))
    corners = torch.randint(0, side - size + 1, (batch, 2), generator=generator, device="cpu").to(x.device)
    coords = torch.arange(side, device=x.device)
    rows = (coords[None, :] >= corners[:, :1]) & (coords[None, :] < corners[:, :1] + size)        # B x S
    cols = (coords[None, :] >= corners[:, 1:]) & (coords[None, :] < corners[:, 1:] + size)        # B x S
    keep = ~(rows[:, :, None] & cols[:, None, :])                                                  # B x S x S
    return x * keep[:, None].to(x.dtype)


def color(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random brightness and contrast per image (and saturation for RGB)."""
    batch = x.shape[0]
    draw = lambda: torch.rand(batch, 1, 1, 1, generator=generator, device="cpu").to(x.device, x.dtype)
    x = x + (draw() - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (draw() * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (draw() + 0.5) + mean


# Applied in the order config.DIFF_AUGMENTATIONS lists them (train.augment is validated against the same list).
OPERATIONS = {name: {"color": color, "translation": translation, "cutout": cutout}[name] for name in DIFF_AUGMENTATIONS}


def parse_policy(policy: str) -> list[str]:
    """'translation,cutout' -> ['translation', 'cutout'] in a fixed order."""
    wanted = {part.strip() for part in policy.split(",") if part.strip()}
    return [name for name in OPERATIONS if name in wanted]


def diff_augment(x: torch.Tensor, policy: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
    for name in policy:
        x = OPERATIONS[name](x, generator)
    return x
