"""Hinge adversarial losses (Lim & Ye 2017; Miyato et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()
