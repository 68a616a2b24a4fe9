"""Several built-in classifiers trained as one module: the members of an evaluation (a recipe and a seed each) share
every operation, so a step costs one launch per layer instead of one per layer and member. On a two-core CPU most
of a small CNN's step is overhead, and on a GPU one such network leaves the device idle; together they fill it.

How members stay what they are alone: the SmallCNN of member m becomes group m of grouped convolutions (its input
channels, its output channels); BatchNorm runs over all members' channels, which is per-member statistics because
member m's channels only ever see member m's images; the head is a per-member linear map. Each member starts from
its own seed's initial weights (built exactly as pipeline.classifier builds them) and draws its own batches and
augmentation (pipeline.classifier.Batches), so the protocol stays paired. Adam is elementwise, so stacking
parameters changes no update. What is not bit for bit the same: the grouped kernels' reduction order and the dropout
draws, so results are statistically, not bitwise, equal to the serial path's (benchmarks/ensemble_speed.py
measures both)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.classifier import Batches, Recipe, SmallCNN, _to_float, resample
from pipeline.config import EvaluateConfig
from pipeline.device import autocast, prepare_module


def _grouped(layers: list[nn.Module]) -> nn.Module:
    """One layer standing for the same layer of every member (conv, batch norm, or a stateless one)."""
    first, members = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        conv = nn.Conv2d(first.in_channels * members, first.out_channels * members, first.kernel_size, first.stride,
                         first.padding, bias=first.bias is not None, groups=members)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([layer.weight for layer in layers]))
            if first.bias is not None:
                conv.bias.copy_(torch.cat([layer.bias for layer in layers]))
        return conv
    if isinstance(first, nn.BatchNorm2d):
        norm = nn.BatchNorm2d(first.num_features * members, first.eps, first.momentum)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(torch.cat([getattr(layer, name) for layer in layers]))
        return norm
    return first  # ReLU, MaxPool: the same for every member


class Ensemble(nn.Module):
    """M SmallCNNs as one: input B x (M*C) x H x W (member m's batch in channels m*C..), output M x B x classes."""

    def __init__(self, members: list[SmallCNN]):
        super().__init__()
        self.members = len(members)
        self.features = nn.Sequential(*[_grouped(list(layers)) for layers in zip(*(m.features for m in members))])
        dropouts, linears = zip(*((m.head[0], m.head[1]) for m in members))
        self.dropout = nn.Dropout(dropouts[0].p)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in linears]))  # M x classes x F
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in linears]))      # M x classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))                              # B x (M*F)
        if self.members == 1:  # the serial network's own ops: one member trains bit for bit as it would alone
            return F.linear(self.dropout(h), self.weight[0], self.bias[0])[None]
        h = self.dropout(h.view(len(h), self.members, -1)).transpose(0, 1)  # M x B x F
        return torch.baddbmm(self.bias[:, None, :], h, self.weight.transpose(1, 2))


def stack(batches: list[torch.Tensor]) -> torch.Tensor:
    """M tensors B x C x H x W -> B x (M*C) x H x W (member m's images in its channel group)."""
    return torch.cat(batches, dim=1)


def train_ensemble(config: EvaluateConfig, members: list[tuple[Recipe, int]], real: tuple[np.ndarray, np.ndarray],
                   synthetic: list[tuple[np.ndarray, np.ndarray] | None], num_classes: int,
                   device: torch.device) -> Ensemble:
    """Train the built-in classifier for every (recipe, seed) member at once, member m on synthetic[m]; the same
    steps, schedule and batch streams each member would have alone (pipeline.classifier.train_classifier)."""
    channels, side = real[0].shape[1], real[0].shape[-1]
    networks = []
    for _, seed in members:
        torch.manual_seed(seed)  # the seed's initial weights, as train_classifier builds them
        networks.append(SmallCNN(channels, num_classes, side, config.width))
    with torch.random.fork_rng(devices=[]):  # building draws init weights it then overwrites: keep the RNG where a
        model = prepare_module(Ensemble(networks), device)  # lone member's run has it, for its dropout draws
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    streams = [Batches(config, recipe, seed, real, pool, num_classes)
               for (recipe, seed), pool in zip(members, synthetic)]
    model.train()
    for _ in range(config.steps):
        xs, ys, grids = [], [], []
        for stream in streams:
            x, y = stream.draw()
            x = _to_float(x.to(device))
            xs.append(x)
            ys.append(y.to(device))
            grids.append(stream.grid(x))
        augmented = [m for m, grid in enumerate(grids) if grid is not None]
        if augmented:  # one resampling for every augmented member's batch (each image at its own grid)
            flat = resample(torch.cat([xs[m] for m in augmented]), torch.cat([grids[m] for m in augmented]))
            for m, x in zip(augmented, flat.split([len(xs[m]) for m in augmented])):
                xs[m] = x
        with autocast(device):
            logits = model(stack(xs))
            loss = sum(stream.loss(logits[m], ys[m]) for m, stream in enumerate(streams))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: Ensemble, images: np.ndarray, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """Every member's predicted class of every image: M x N."""
    parts = []
    for start in range(0, len(images), batch_size):
        x = _to_float(torch.from_numpy(images[start:start + batch_size])).to(device)
        parts.append(model(x.repeat(1, model.members, 1, 1)).argmax(-1).cpu().numpy())
    return np.concatenate(parts, axis=1)


def member(model: Ensemble, index: int, template: SmallCNN) -> SmallCNN:
    """Member `index` as a SmallCNN of its own (for its features: the fidelity measures), weights copied out."""
    state, groups = {}, model.members
    for name, whole in zip(template.features.state_dict(), model.features.state_dict().values()):
        state[f"features.{name}"] = whole.chunk(groups)[index] if whole.dim() else whole
    state["head.1.weight"], state["head.1.bias"] = model.weight[index].detach(), model.bias[index].detach()
    template.load_state_dict(state)
    return template.eval()
