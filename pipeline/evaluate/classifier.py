"""The downstream classifier, and one training run under one condition (real, or real + synthetic)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import EvaluateConfig
from pipeline.device import autocast, prepare_module


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, max-pooled while the side is above 7, then global average pooling and a linear head.
    For 1 x 28 x 28: 32 x 14 x 14 -> 64 x 7 x 7 -> 128 x 7 x 7 -> 128 -> classes."""

    def __init__(self, channels: int, num_classes: int, image_size: int):
        super().__init__()
        layers, previous, side, width = [], channels, image_size, 32
        while True:
            layers += [nn.Conv2d(previous, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            previous = width
            if side <= 7 or side % 2:
                break
            layers.append(nn.MaxPool2d(2))
            side //= 2
            width = min(width * 2, 256)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(previous, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def train_and_test(config: EvaluateConfig, seed: int, real: tuple[np.ndarray, np.ndarray],
                   test: tuple[np.ndarray, np.ndarray], num_classes: int, device: torch.device,
                   synthetic: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Train for config.steps steps (batches mix in synthetic images at config.synthetic_share when given);
    return the predicted class of every test image. No test image influences training or stopping."""
    torch.manual_seed(seed)  # same seed, same initial weights in every condition (paired comparison)
    real_x, real_y = (torch.from_numpy(a) for a in real)
    model = prepare_module(SmallCNN(real_x.shape[1], num_classes, real_x.shape[-1]), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    n_synthetic = 0 if synthetic is None else int(round(config.batch_size * config.synthetic_share))
    real_rng = torch.Generator().manual_seed(seed)
    synthetic_rng = torch.Generator().manual_seed(seed + 1)
    if synthetic is not None:
        syn_x, syn_y = (torch.from_numpy(a) for a in synthetic)
    model.train()
    for _ in range(config.steps):
        index = torch.randint(0, len(real_x), (config.batch_size - n_synthetic,), generator=real_rng)
        x, y = real_x[index], real_y[index]
        if n_synthetic:
            pick = torch.randint(0, len(syn_x), (n_synthetic,), generator=synthetic_rng)
            x, y = torch.cat([x, syn_x[pick]]), torch.cat([y, syn_y[pick]])
        x, y = _to_float(x).to(device), y.to(device)
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return predict(model, test[0], device)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 512) -> np.ndarray:
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        x = _to_float(torch.from_numpy(images[start:start + batch_size])).to(device)
        with autocast(device):
            outputs.append(model(x).argmax(dim=1).cpu())
    return torch.cat(outputs).numpy()
