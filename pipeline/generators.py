"""A generator, as the stages after training see one: a module that turns one latent per seed and a class index into
an image in [-1, 1], described by a spec (gan/generator.json) and rebuilt from it by kind. Generate, the teacher
filter, export and evaluate depend on this seam, not on the GAN: a second family of generators (a small
class-conditional diffusion model, say) is one new module plus one line in KINDS."""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import storage
from pipeline.errors import AugmentError

# kind -> "module:function" that builds the module from a spec; imported only when a generator of that kind is built.
KINDS = {"conditional": "pipeline.gan.networks:build_conditional",
         "per_class": "pipeline.gan.networks:build_per_class"}  # train.mode=per_class: one generator per class, merged
SPEC_FILE, WEIGHTS_FILE = "generator.json", "generator_ema.safetensors"


@dataclass(frozen=True)
class GeneratorSpec:
    """What generator.json holds: enough to rebuild the generator, and the settings it was trained with."""
    z_dim: int                  # latent size: one latent per seed (pipeline.generate.noise_for)
    width: int                  # first-map channels, resolved
    classes: list[str]
    channels: int
    image_size: int
    train: dict | None = None   # the trainer's settings; None for a generator built outside a training run
    kind: str = "conditional"   # a key of KINDS
    world_size: int | None = None  # processes of a data-parallel run

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorSpec:
        data = dict(data)
        if "mode" in data:  # generator.json before the registry called the kind `mode`
            data["kind"] = data.pop("mode")
        return cls(**data)

    def to_dict(self) -> dict:
        """The JSON form: optional keys only when set (a conditional generator's generator.json has no `kind`)."""
        data = {"z_dim": self.z_dim, "width": self.width, "classes": self.classes, "channels": self.channels,
                "image_size": self.image_size}
        if self.train is not None:
            data["train"] = self.train
        if self.kind != "conditional":
            data["kind"] = self.kind
        if self.world_size is not None:
            data["world_size"] = self.world_size
        return data


def read_spec(path: Path) -> GeneratorSpec:
    """generator.json, checked field by field: a run folder may have travelled or been tampered with, and its class
    names become folder names."""
    data = storage.read_json_object(path, ("z_dim", "width", "classes", "channels", "image_size"))
    known = {f.name for f in dataclasses.fields(GeneratorSpec)} | {"mode"}
    positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65536
    kind = data.get("kind", data.get("mode", "conditional"))
    problem = None
    if not all(positive(data[k]) for k in ("z_dim", "width", "image_size")) or data["channels"] not in (1, 3):
        problem = "a size is not a positive whole number, or channels is not 1 or 3"
    elif not isinstance(data["classes"], list) or len(data["classes"]) < 1:
        problem = "classes is not a list of names"
    elif kind not in KINDS:
        problem = f"unknown generator kind {kind!r} (known: {', '.join(KINDS)})"
    elif set(data) - known:
        problem = f"unknown keys {sorted(set(data) - known)}"
    if problem:
        raise AugmentError(f"'{path}' is damaged: {problem}; train again")
    storage.safe_names(data["classes"])
    return GeneratorSpec.from_dict(data)


def build_generator(spec: GeneratorSpec | dict) -> torch.nn.Module:
    """The (untrained) module a spec describes, built by its kind's function."""
    spec = spec if isinstance(spec, GeneratorSpec) else GeneratorSpec.from_dict(spec)
    module, function = KINDS[spec.kind].split(":")
    return getattr(importlib.import_module(module), function)(spec)


def load_generator(folder: Path, device: torch.device) -> tuple[torch.nn.Module, dict, str]:
    """The trained generator in `folder` (generator.json + generator_ema.safetensors), in eval mode on `device`; its
    spec as a dict; and the weights' sha256 (what the synthetic manifest records)."""
    from pipeline.device import prepare_module

    spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
    if not spec_path.is_file() or not weights_path.is_file():
        raise AugmentError(f"no trained generator in '{folder}'; run the train stage first")
    spec = read_spec(spec_path)
    generator = build_generator(spec)
    storage.load_weights(generator, storage.load_tensors(weights_path), weights_path)
    return prepare_module(generator.eval(), device), spec.to_dict(), storage.sha256_file(weights_path)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], B x C x H x W float -> B x H x W x C uint8."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()
