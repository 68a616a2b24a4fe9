"""Class-balanced draws, shared by the GAN's real batches (train.sampling) and the classifier's re-sampled and
topped-up conditions, so that "class-balanced" means the same thing in both."""
from __future__ import annotations

import torch


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-image draw weights (float64, on the CPU) that make every present class equally likely: 1 / its count."""
    counts = torch.bincount(labels)
    return (1.0 / counts[labels].double()).cpu()
