"""Hinge adversarial losses (Lim & Ye 2017; Miyato et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def mode_seeking_penalty(fake: torch.Tensor, z: torch.Tensor, half: int) -> torch.Tensor:
    """MSGAN (Mao et al. 2019): images from two latents of one class should differ in proportion to the latents;
    the penalty 1 / (image distance / latent distance) is small when they do. Pairs are (i, i + half)."""
    image_distance = (fake[:half] - fake[half:2 * half]).abs().mean(dim=(1, 2, 3))
    latent_distance = (z[:half] - z[half:2 * half]).abs().mean(dim=1)
    return 1.0 / ((image_distance / latent_distance).mean() + 1e-5)


def mode_seeking_labels(labels: torch.Tensor, enabled: bool) -> tuple[torch.Tensor, int]:
    """The fake batch's classes and the pair offset: with mode seeking, images i and i + half share a class."""
    half = len(labels) // 2
    if not enabled:
        return labels, half
    return torch.cat([labels[:half], labels[:half], labels[2 * half:]]), half
