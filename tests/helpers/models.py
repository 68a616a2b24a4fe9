"""A user's own classifier for `evaluate.model=helpers.models:tiny_mlp` (tests only)."""
from torch import nn

CALLS = []


def tiny_mlp(channels: int, num_classes: int, image_size: int) -> nn.Module:
    CALLS.append((channels, num_classes, image_size))
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, 32), nn.ReLU(), nn.Linear(32, num_classes))


def not_a_model(channels: int, num_classes: int, image_size: int):
    return "a string"
