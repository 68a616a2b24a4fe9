"""One GAN training step (a discriminator update, then a generator update), shared by the single-process trainer,
the data-parallel trainer and the speed benchmarks, so all three time and train the same computation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pipeline.config import TrainConfig
from pipeline.device import autocast
from pipeline.gan.diffaugment import diff_augment
from pipeline.sampling import class_balanced_weights
from pipeline.gan.losses import discriminator_hinge, generator_hinge, mode_seeking_labels, mode_seeking_penalty


@dataclass
class GanStep:
    """The networks and optimizers of one training run. `generator_forward` / `discriminator_forward` are what the
    step calls: the modules themselves, their torch.compile wrappers, or their DistributedDataParallel wrappers.
    `joint_discriminator` sends real and fake through D in one call and scores G's images with the bare
    discriminator, frozen: DistributedDataParallel allows one D forward per backward and must not see D's
    gradients during G's step."""
    config: TrainConfig
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device
    policy: tuple[str, ...] = ()
    generator_forward: Callable | None = None
    discriminator_forward: Callable | None = None
    joint_discriminator: bool = False

    def __post_init__(self) -> None:
        if self.generator_forward is None:  # not `or`: a compiled module's truth value asks the module for a len()
            self.generator_forward = self.generator
        if self.discriminator_forward is None:
            self.discriminator_forward = self.discriminator

    def __call__(self, real: torch.Tensor, batch_labels: torch.Tensor, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Update D then G on one batch (real in [-1, 1]); returns the detached [loss_d, loss_g, D(real), D(fake)]
        without reading them back (no host sync)."""
        config, policy, d_forward = self.config, self.policy, self.discriminator_forward
        fake_labels, half = mode_seeking_labels(batch_labels, bool(config.mode_seeking))
        with autocast(self.device, config.precision):
            fake = self.generator_forward(z, fake_labels)
            if self.joint_discriminator:
                both = torch.cat([diff_augment(real, policy, rng), diff_augment(fake.detach(), policy, rng)])
                scores = d_forward(both, torch.cat([batch_labels, fake_labels]))
                real_scores, fake_scores = scores[:len(real)], scores[len(real):]
            else:
                real_scores = d_forward(diff_augment(real, policy, rng), batch_labels)
                fake_scores = d_forward(diff_augment(fake.detach(), policy, rng), fake_labels)
            loss_d = discriminator_hinge(real_scores, fake_scores)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        if self.joint_discriminator:
            self.discriminator.requires_grad_(False)
        with autocast(self.device, config.precision):
            scorer = self.discriminator if self.joint_discriminator else d_forward
            loss_g = generator_hinge(scorer(diff_augment(fake, policy, rng), fake_labels))
            if config.mode_seeking:
                loss_g = loss_g + config.mode_seeking * mode_seeking_penalty(fake, z, half)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.joint_discriminator:
            self.discriminator.requires_grad_(True)
        return torch.stack([loss_d.detach(), loss_g.detach(), real_scores.detach().mean(), fake_scores.detach().mean()])


LOG_EVERY = 50  # steps between loss rows; losses are read back (a host sync) only then


def optimizers(config: TrainConfig, generator: torch.nn.Module,
               discriminator: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam with beta1 = 0 (the usual choice for GANs with spectral norm), one per network."""
    return (torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=(0.0, 0.99)),
            torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=(0.0, 0.99)))


def draw_batch(images: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor | None, batch_size: int, z_dim: int,
               rng: torch.Generator, device: torch.device,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of real images in [-1, 1] drawn with replacement, uniformly or (weights) in proportion to per-image
    weights, from `pool`'s indices when given (a data-parallel rank's shard); their labels, and the generator's noise.
    All random draws come from `rng`."""
    if weights is not None:
        index = torch.multinomial(weights, batch_size, replacement=True, generator=rng)
    else:
        index = torch.randint(0, len(pool) if pool is not None else len(images), (batch_size,), generator=rng)
    index = (pool[index] if pool is not None else index).to(device)
    z = torch.randn(batch_size, z_dim, generator=rng).to(device)
    return images[index].float() / 127.5 - 1.0, labels[index], z


AUTO_BALANCED_RATIO = 2.0  # train.sampling=auto: class-balanced batches from this largest / smallest class ratio
# (evaluate.imbalance_ratio's default too). On the `steps` profile of imbalanced MNIST (4-64 training images per
# class) balanced batches raised the share of a rare class's samples that an oracle puts in that class from 48% to
# 94% (benchmarks/results/rare_classes_screens.md).


def sampling_weights(sampling: str, labels: torch.Tensor) -> torch.Tensor | None:
    """Draw weights for train.sampling: None (uniform) or class-balanced; auto decides by the class counts."""
    if sampling == "auto":
        counts = torch.bincount(labels)
        counts = counts[counts > 0]
        sampling = "balanced" if counts.max() >= AUTO_BALANCED_RATIO * counts.min() else "uniform"
    return class_balanced_weights(labels) if sampling == "balanced" else None


def ema_decay(config: TrainConfig, images_seen: int) -> float:
    """Per-step EMA decay from a half-life in kimg, ramped up early so the EMA does not start from noise."""
    halflife_images = min(config.ema_halflife_kimg * 1000, images_seen * 0.05)
    return 0.5 ** (config.batch_size / max(halflife_images, 1e-8)) if halflife_images > 0 else 0.0


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- lerp(ema, model, 1 - decay) in one fused call per tensor list (a GPU step of small networks is bound by
    kernel launches; on the CPU the result is the same to the bit), buffers copied."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
        for target, source in zip(ema.buffers(), model.buffers()):
            target.copy_(source)
