"""The downstream classifier, shared by every stage that trains one (the evaluation's conditions, the generate
stage's teacher filter, the GAN's quality probe): the networks, classical augmentation, and one training run under
one recipe (its pools, sampling and loss). It knows nothing of the evaluation's list of conditions
(pipeline.evaluate.conditions), so adding a condition leaves the GAN and generate stages untouched."""
from __future__ import annotations

import functools
import importlib
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import CLASSICAL_POLICIES, EvaluateConfig
from pipeline.device import autocast, prepare_module
from pipeline.errors import AugmentError
from pipeline.progress import track
from pipeline.sampling import class_balanced_weights


LOSSES = ("cross_entropy", "balanced_softmax")


@dataclass(frozen=True)
class Recipe:
    """How one classifier run trains: the pools its batches are drawn from and how, and its loss. Which recipes an
    evaluation compares, under which names, is pipeline.evaluate.conditions'."""
    real: bool = True
    synthetic: bool = False
    augment: bool = False       # classical augmentation (evaluate.augment) on every batch
    share: float | None = None  # synthetic share of each batch when mixed; None: evaluate.synthetic_share
    balanced: bool = False      # batch slots drawn class-balanced (every class equally likely), not image-uniform
    topup: bool = False         # one pool: the real images plus enough synthetic ones to bring every class up to
                                # the largest class's real count (what a user would build with --balance)
    loss: str = "cross_entropy"


REAL_AUG = Recipe(augment=True)  # the real images with classical augmentation: the teacher, the quality probe, timing


def topup_indices(real_labels: np.ndarray, synthetic_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows of the synthetic set that top every class up to the largest class's real count: the first
    (largest - real_c) of class c, or all it has."""
    counts = np.bincount(real_labels, minlength=num_classes)
    return np.concatenate([np.flatnonzero(synthetic_labels == c)[:counts.max() - counts[c]] for c in range(num_classes)]
                          + [np.zeros(0, dtype=np.int64)])


def share_of(recipe: Recipe, config: EvaluateConfig, real_labels: np.ndarray | None = None,
             num_classes: int = 0) -> float:
    """Fraction of each batch that is synthetic under this recipe (a top-up's: the mean over classes of the
    topped-up share, which needs the real labels)."""
    if not recipe.synthetic:
        return 0.0
    if not recipe.real:
        return 1.0
    if recipe.topup:
        counts = np.bincount(real_labels, minlength=num_classes)
        return float(np.mean(1.0 - counts / counts.max()))
    return config.synthetic_share if recipe.share is None else recipe.share


STEM_SIDE = 32  # from twice this side up, strided stem convolutions halve the image before the pooled blocks


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, max-pooled while the side is even and above 7, then global average pooling.
    For 1 x 28 x 28, width 32: 32 x 14 x 14 -> 64 x 7 x 7 -> 128 x 7 x 7 -> 128 (features) -> classes.
    From 64 px up, stride-2 stem convolutions (width channels) halve the side until it is below 64, so the blocks
    work on 32-63 px whatever the size and keep the capacity they have there: 3 x 64 x 64 -> 32 x 32 x 32 -> then as
    for 32 px (3x fewer multiply-adds than pooling from 64 px); 128 -> 64 -> 32; 96 -> 48."""

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 16):
        super().__init__()
        layers, previous, side = [], channels, image_size
        while side >= 2 * STEM_SIDE:
            layers += [nn.Conv2d(previous, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            previous, side = width, (side + 1) // 2
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class _Channels(nn.Module):
    """Repeat a gray image to three channels (torchvision's architectures expect RGB), then run the model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def build_model(name: str, channels: int, num_classes: int, image_size: int, width: int) -> nn.Module:
    """evaluate.model: 'small' (SmallCNN), a torchvision classification architecture by name, trained from scratch
    (weights=None: nothing is downloaded), or 'module:function' returning an nn.Module for (channels, num_classes,
    image_size). Built under the caller's torch seed, so every condition starts from the same weights."""
    if name == "small":
        return SmallCNN(channels, num_classes, image_size, width)
    if ":" in name:
        module_name, function_name = name.split(":", 1)
        if os.getcwd() not in sys.path:  # a console script's path lacks the current folder, where a user's module sits
            sys.path.append(os.getcwd())
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except Exception as error:  # ImportError, AttributeError, or whatever the module raises when imported
            raise AugmentError(f"evaluate.model '{name}': cannot import {function_name} from {module_name} "
                               f"({type(error).__name__}: {error})") from None
        if not callable(function):
            raise AugmentError(f"evaluate.model '{name}': {function_name} is not a function")
        try:
            model = function(channels, num_classes, image_size)
        except Exception as error:
            raise AugmentError(f"evaluate.model '{name}' failed when called with (channels={channels}, "
                               f"classes={num_classes}, image_size={image_size}): {type(error).__name__}: {error}") from None
        if not isinstance(model, nn.Module):
            raise AugmentError(f"evaluate.model '{name}' returned {type(model).__name__}, not a torch.nn.Module")
        return model
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise AugmentError(f"evaluate.model '{name}' is not 'small', 'module:function' or a torchvision classification "
                           f"model (e.g. resnet18, mobilenet_v3_small, efficientnet_b0; {len(known)} known)")
    return _Channels(torchvision.models.get_model(name, weights=None, num_classes=num_classes))


def check_model(config: EvaluateConfig, channels: int, num_classes: int, image_size: int) -> None:
    """Build evaluate.model and run two images through it, so a model that cannot train on this data fails when the
    run starts, before any folder is replaced, not after the GAN has trained. A module:function is the user's own
    code and runs here, as it would in the evaluation (never in --dry-run)."""
    if config.model == "small":
        return
    model = build_model(config.model, channels, num_classes, image_size, config.width)
    try:
        with torch.no_grad():
            scores = model.eval()(torch.zeros(2, channels, image_size, image_size))
    except Exception as error:
        raise AugmentError(f"evaluate.model '{config.model}' cannot classify {channels} x {image_size} x {image_size} "
                           f"images ({type(error).__name__}: {error})") from None
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (2, num_classes):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise AugmentError(f"evaluate.model '{config.model}' returns {shape} for 2 images; it must return "
                           f"(2, {num_classes}): one score per class")


ELASTIC_GRID, ELASTIC_SCALE = 4, 0.1  # control points per side; displacement std in normalized units (2 span the side)


def classical_augment(x: torch.Tensor, policy: str, generator: torch.Generator, probability: float = 1.0) -> torch.Tensor:
    """Batched classical augmentation, one resampling per image: random affine (±10° rotation, ±10% scale, ±12.5%
    shift), if asked horizontal flips, and with 'elastic' a smooth random displacement field (a 4 x 4 grid of
    offsets with std 5% of the side, upsampled bicubically; Simard et al. 2003). Each image is transformed with the
    given probability and otherwise left exactly as it is."""
    return resample(x, classical_grid(x, policy, generator, probability))


def resample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Every image of x sampled at its own grid (classical_grid's): each image independently of the others."""
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def classical_grid(x: torch.Tensor, policy: str, generator: torch.Generator, probability: float = 1.0) -> torch.Tensor:
    """The sampling grid of classical_augment for x's images, its random draws from `generator` (on the CPU, so the
    same seed gives the same transforms on any device); x only gives the shape, device and dtype."""
    batch = x.shape[0]
    draw = lambda low, high: torch.rand(batch, generator=generator) * (high - low) + low
    theta = torch.zeros(batch, 2, 3)
    if "affine" in policy:
        angle, scale = draw(-math.pi / 18, math.pi / 18), draw(0.9, 1.1)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / scale, -torch.sin(angle) / scale
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / scale, torch.cos(angle) / scale
        theta[:, :, 2] = torch.stack([draw(-0.25, 0.25), draw(-0.25, 0.25)], dim=1)  # 2 units span the side
    else:
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if "flip" in policy:
        theta[:, 0, :2] *= torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)[:, None]
    flow = None
    if "elastic" in policy:
        offsets = ELASTIC_SCALE * torch.randn(batch, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator)
        flow = F.interpolate(offsets, size=tuple(x.shape[-2:]), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    if probability < 1.0:  # the identity transform for the images left as they are
        keep = torch.rand(batch, generator=generator) >= probability
        theta[keep] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if flow is not None:
            flow[keep] = 0.0
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    if flow is not None:
        grid = grid + flow.to(x.device, x.dtype)
    return grid


def is_policy(augment: str) -> bool:
    """Whether evaluate.augment names a torchvision v2 policy (applied per image to uint8 pixels on the CPU)."""
    return augment.strip() in CLASSICAL_POLICIES


@functools.lru_cache(maxsize=8)
def _policy(name: str, side: int):
    from torchvision.transforms import v2

    if name == "photo":  # what a practitioner uses on photos: random resized crop, mirror, colour jitter
        return v2.Compose([v2.RandomResizedCrop(side, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05)])
    return {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment, "autoaugment": v2.AutoAugment}[name]()


def policy_augment(pixels: torch.Tensor, name: str, generator: torch.Generator, probability: float = 1.0) -> torch.Tensor:
    """A torchvision v2 policy on a uint8 N x C x H x W batch, image by image. Every image gets its own seed drawn
    from `generator` (the policy's draws run under it, torch's global generator is left as it was), so batch slot
    i gets the same operations and magnitudes in every condition: conditions stay paired. Each image is
    transformed with the given probability and otherwise left exactly as it is."""
    transform = _policy(name.strip(), pixels.shape[-1])
    seeds = torch.randint(0, 2**62, (len(pixels),), generator=generator)
    keep = torch.rand(len(pixels), generator=generator) >= probability
    out = pixels.clone()
    with torch.random.fork_rng(devices=[]):
        for i in torch.nonzero(~keep).flatten().tolist():
            torch.manual_seed(int(seeds[i]))
            out[i] = transform(pixels[i])
    return out


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


class Batches:
    """One classifier run's stream of batches under a recipe: its pools (see pools), its own generators, all seeded
    from the run's seed so that slot i of step t holds the same kind of image in every condition (paired)."""

    def __init__(self, config: EvaluateConfig, recipe: Recipe, seed: int, real, synthetic, num_classes: int):
        self.config, self.recipe = config, recipe
        self.pools = pools(config, recipe, seed, real, synthetic, num_classes)
        self.rngs = [torch.Generator().manual_seed(pool_seed) for *_, pool_seed, _ in self.pools]
        self.augment_rng = torch.Generator().manual_seed(seed + 2)
        self.policy = is_policy(config.augment)
        # Balanced Softmax (Ren et al. 2020): train on logits + log(prior of the batch labels), predict with the logits,
        # which undoes the tilt towards the classes the batches over-represent.
        self.adjust = torch.log(batch_prior(self.pools, num_classes)) if recipe.loss == "balanced_softmax" else None

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: uint8 images on the CPU (a torchvision policy already applied) and their labels."""
        parts = [(x[i], y[i]) for (x, y, n, _, weights), rng in zip(self.pools, self.rngs) if n
                 for i in [torch.randint(0, len(x), (n,), generator=rng) if weights is None
                           else torch.multinomial(weights, n, replacement=True, generator=rng)]]
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if self.recipe.augment and self.policy:
            x = policy_augment(x, self.config.augment, self.augment_rng, self.config.augment_probability)
        return x, y

    def grid(self, x: torch.Tensor) -> torch.Tensor | None:
        """The classical augmentation's grid for the float batch x (on its device; draws on the CPU generator:
        paired anywhere), or None when the recipe adds none here."""
        if not self.recipe.augment or self.policy:
            return None
        return classical_grid(x, self.config.augment, self.augment_rng, self.config.augment_probability)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adjust = None if self.adjust is None else self.adjust.to(logits.device)
        return F.cross_entropy(logits if adjust is None else logits.float() + adjust, y)


def train_classifier(config: EvaluateConfig, recipe: Recipe, seed: int, real: tuple[np.ndarray, np.ndarray],
                     synthetic: tuple[np.ndarray, np.ndarray] | None, num_classes: int, device: torch.device,
                     progress: str | None = None) -> SmallCNN:
    """Train for config.steps steps, whatever the condition; batches mix synthetic images at config.synthetic_share
    (replacing real ones, so batch size and step count stay equal), or draw class-balanced from the real images
    (resampled) or from real + top-up images (topup); see pools. Nothing of the test set is used."""
    torch.manual_seed(seed)  # same seed, same initial weights and real-batch order in every condition (paired)
    real_x = torch.from_numpy(real[0])
    model = prepare_module(build_model(config.model, real_x.shape[1], num_classes, real_x.shape[-1], config.width), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    batches = Batches(config, recipe, seed, real, synthetic, num_classes)
    model.train()
    steps = range(config.steps) if progress is None else track(range(config.steps), config.steps, progress)
    for _ in steps:
        x, y = batches.draw()
        x, y = _to_float(x.to(device)), y.to(device)
        grid = batches.grid(x)
        if grid is not None:
            x = resample(x, grid)
        with autocast(device):
            loss = batches.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def batch_prior(batch_pools: list[tuple], num_classes: int) -> torch.Tensor:
    """The expected share of each class among a batch's labels, from the pools' slots and draw weights (floored at
    a tiny value: a class no batch can hold gets a very negative, not an infinite, log prior)."""
    prior = torch.zeros(num_classes, dtype=torch.float64)
    for _, labels, slots, _, weights in batch_pools:
        if slots:
            draw = torch.full((len(labels),), 1.0 / len(labels), dtype=torch.float64) if weights is None else weights / weights.sum()
            prior += slots * torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, draw)
    return (prior / prior.sum()).clamp(min=1e-8).float()


def pools(config: EvaluateConfig, recipe: Recipe, seed: int, real, synthetic, num_classes: int) -> list[tuple]:
    """(images, labels, slots per batch, seed, draw weights or None for uniform) of each pool a batch is drawn from."""
    if recipe.topup:
        rows = topup_indices(real[1], synthetic[1], num_classes)
        x, y = np.concatenate([real[0], synthetic[0][rows]]), np.concatenate([real[1], synthetic[1][rows]])
        return [(torch.from_numpy(x), torch.from_numpy(y), config.batch_size, seed, class_balanced_weights(torch.from_numpy(y)))]
    n_synthetic = {(True, False): 0, (False, True): config.batch_size,
                   (True, True): int(round(config.batch_size * share_of(recipe, config)))}[(recipe.real, recipe.synthetic)]
    weights = class_balanced_weights(torch.from_numpy(real[1])) if recipe.balanced else None
    result = [(torch.from_numpy(real[0]), torch.from_numpy(real[1]), config.batch_size - n_synthetic, seed, weights)]
    if n_synthetic:
        result.append((torch.from_numpy(synthetic[0]), torch.from_numpy(synthetic[1]), n_synthetic, seed + 1, None))
    return result


@torch.no_grad()
def predict(model: SmallCNN, images: np.ndarray, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """Predicted class of every image."""
    return np.concatenate([model(_batch(images, s, batch_size, device)).argmax(1).cpu().numpy()
                           for s in range(0, len(images), batch_size)])


@torch.no_grad()
def embed(model: SmallCNN, images: np.ndarray, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features (the space the fidelity measures work in)."""
    return np.concatenate([model.embed(_batch(images, s, batch_size, device)).float().cpu().numpy()
                           for s in range(0, len(images), batch_size)])


def _batch(images: np.ndarray, start: int, size: int, device: torch.device) -> torch.Tensor:
    return _to_float(torch.from_numpy(images[start:start + size])).to(device)
