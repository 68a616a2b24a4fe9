"""Fidelity of the EMA generator during training, measured like the evaluate stage's, on real TRAINING images."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.config import EvaluateConfig
from pipeline.classifier import REAL_AUG, embed, train_classifier
from pipeline.metrics.fidelity import frechet_distance, manifold_scores
from pipeline.generators import to_uint8

SAMPLES_PER_CLASS = 50
COLUMNS = ["step", "frechet_distance", "precision", "recall", "density", "coverage"]


class QualityProbe:
    """Trains a small classifier on the real training images once, then scores generator samples in its features."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, z_dim: int, device: torch.device,
                 steps: int):
        # Its own augmentation, not evaluate.augment: which snapshot keep=best exports depends on the training only.
        config = EvaluateConfig(steps=steps, width=16, batch_size=64, augment="affine,elastic", augment_probability=0.5)
        self.model = train_classifier(config, REAL_AUG, 0, (images, labels), None, num_classes, device)
        self.real_features = embed(self.model, images, device)
        self.device = device
        self.labels = torch.arange(num_classes).repeat_interleave(SAMPLES_PER_CLASS).to(device)
        self.z = torch.randn(len(self.labels), z_dim, generator=torch.Generator().manual_seed(4321)).to(device)

    @torch.no_grad()
    def measure(self, generator: torch.nn.Module) -> list[float]:
        """Fréchet distance, precision, recall, density and coverage of a fixed batch of samples."""
        samples = np.ascontiguousarray(to_uint8(generator(self.z, self.labels)).transpose(0, 3, 1, 2))
        fake = embed(self.model, samples, self.device)
        scores = manifold_scores(self.real_features, fake)
        return [frechet_distance(self.real_features, fake), *(scores[k] for k in COLUMNS[2:])]
