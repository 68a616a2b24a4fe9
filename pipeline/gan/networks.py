"""Class-conditional generator (conditional BatchNorm) and projection discriminator (spectral norm)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from pipeline.generators import GeneratorSpec


def plan_resolutions(image_size: int) -> list[int]:
    """Feature-map sides from the generator's first map up to image_size: halve while the side stays an even number >= 4
    (config.validate admits only sizes that end at a first side of 4-8, e.g. 28 -> 7, 64 -> 4, 96 -> 6)."""
    sides = [image_size]
    while sides[0] % 2 == 0 and sides[0] // 2 >= 4:
        sides.insert(0, sides[0] // 2)
    return sides


def default_width(image_size: int) -> int:
    """train.width = 0 (auto): the generator's first-map channels for this size. Above 32 px there are 4-5 up-sampling
    blocks; starting wider keeps enough channels in the middle blocks for colour detail (README: time per step)."""
    return 128 if image_size <= 32 else 256


def plan_widths(image_size: int, width: int) -> list[int]:
    """Generator channels at each resolution of `plan_resolutions`: `width` (0 = default_width) first, halved per
    block, never below 16 up to 32 px or 32 above (thin high-resolution maps lose colour texture)."""
    width = width or default_width(image_size)
    floor = 16 if image_size <= 32 else 32
    return [max(floor, width >> i) for i in range(len(plan_resolutions(image_size)))]


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain = self.gain(labels)[:, :, None, None]
        bias = self.bias(labels)[:, :, None, None]
        return self.norm(x) * gain + bias


class UpBlock(nn.Module):
    """Double the side: transposed conv 4x4 stride 2, conditional BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.norm = ConditionalBatchNorm2d(out_channels, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x), labels))


class Generator(nn.Module):
    """z (B x z_dim) + class (B) -> image (B x C x S x S) in [-1, 1]; for S=28, width=128:
    z -> 128 x 7 x 7 -> 64 x 14 x 14 -> 32 x 28 x 28 -> C x 28 x 28."""

    def __init__(self, z_dim: int, num_classes: int, channels: int, image_size: int, width: int):
        super().__init__()
        sides, widths = plan_resolutions(image_size), plan_widths(image_size, width)
        self.z_dim, self.base_side, self.base_width = z_dim, sides[0], widths[0]
        self.embed = nn.Embedding(num_classes, z_dim)
        self.project = nn.Linear(2 * z_dim, widths[0] * sides[0] ** 2)                   # width x base x base
        self.project_norm = ConditionalBatchNorm2d(widths[0], num_classes)
        self.blocks = nn.ModuleList(UpBlock(a, b, num_classes) for a, b in zip(widths, widths[1:]))  # side doubles per block
        self.to_image = nn.Conv2d(widths[-1], channels, 3, 1, 1)                          # C x S x S

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.project(torch.cat([z, self.embed(labels)], dim=1))
        x = x.view(-1, self.base_width, self.base_side, self.base_side)
        x = torch.relu(self.project_norm(x, labels))
        for block in self.blocks:
            x = block(x, labels)
        return torch.tanh(self.to_image(x))


class Discriminator(nn.Module):
    """Image + class -> realness score (B). Strided SN convs halve the side down to the generator's base side,
    then a 3x3 conv, global sum pooling and a projection term <embed(class), features>. For S=28, width=128:
    C x 28 x 28 -> 32 x 14 x 14 -> 64 x 7 x 7 -> 64 x 7 x 7 -> 64."""

    def __init__(self, num_classes: int, channels: int, image_size: int, width: int, width_ratio: float = 0.5,
                 minibatch_std: bool = False):
        super().__init__()
        widths = [max(8, int(w * width_ratio)) for w in reversed(plan_widths(image_size, width))][1:]  # after each down block
        layers, previous = [], channels
        for out in widths:
            layers += [spectral_norm(nn.Conv2d(previous, out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            previous = out
        self.down = nn.Sequential(*layers)
        self.minibatch_std = minibatch_std
        # One extra input channel carries the batch's feature spread: a collapsed generator shows a low one.
        self.last = nn.Sequential(spectral_norm(nn.Conv2d(previous + minibatch_std, previous, 3, 1, 1)), nn.LeakyReLU(0.2))
        self.linear = spectral_norm(nn.Linear(previous, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, previous))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.down(images)
        if self.minibatch_std:
            h = torch.cat([h, _minibatch_std(h)], dim=1)                                  # B x (F+1) x s x s
        h = self.last(h).sum(dim=(2, 3))                                                  # B x F
        return self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


def _minibatch_std(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Per group of `group` images, the mean standard deviation of every feature, as one constant map (StyleGAN)."""
    b, _, s, _ = h.shape
    g = group if b % group == 0 else 1
    spread = h.view(g, -1, *h.shape[1:]).std(dim=0, unbiased=False).mean(dim=(1, 2, 3))  # B/g
    return spread.repeat(g)[:, None, None, None].expand(b, 1, s, s) if g > 1 else torch.zeros(b, 1, s, s, device=h.device, dtype=h.dtype)


class PerClassGenerator(nn.Module):
    """One single-class Generator per class behind the conditional interface: sample i comes from generators[labels[i]]."""

    def __init__(self, z_dim: int, num_classes: int, channels: int, image_size: int, width: int):
        super().__init__()
        self.generators = nn.ModuleList(Generator(z_dim, 1, channels, image_size, width) for _ in range(num_classes))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = None
        for index, generator in enumerate(self.generators):
            chosen = (labels == index).nonzero().squeeze(1)
            if len(chosen):
                images = generator(z[chosen], torch.zeros_like(chosen))
                out = z.new_empty(len(z), *images.shape[1:]) if out is None else out
                out[chosen] = images
        return out


def spec_for(config, classes: list[str], channels: int, image_size: int, **extra) -> GeneratorSpec:
    """The spec every GAN trainer writes to gan/generator.json: its sizes (train.width 0 resolved) and train settings."""
    return GeneratorSpec(z_dim=config.z_dim, width=config.width or default_width(image_size), classes=list(classes),
                         channels=int(channels), image_size=int(image_size), train=dataclasses.asdict(config), **extra)


def build_conditional(spec: GeneratorSpec) -> Generator:
    """kind 'conditional': one class-conditional generator."""
    return Generator(spec.z_dim, len(spec.classes), spec.channels, spec.image_size, spec.width)


def build_per_class(spec: GeneratorSpec) -> PerClassGenerator:
    """kind 'per_class': one generator per class behind the conditional interface (train.mode=per_class)."""
    return PerClassGenerator(spec.z_dim, len(spec.classes), spec.channels, spec.image_size, spec.width)
