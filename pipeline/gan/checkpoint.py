"""What a GAN training run writes and reads back, shared by the single-process, per-class and data-parallel
trainers: the resumable checkpoint (networks and optimizers, as safetensors), the loss log, and the exported EMA
generator with its spec (gan/generator.json), which is what the generate stage reads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline import storage
from pipeline.errors import AugmentError
from pipeline.generators import GeneratorSpec
from pipeline.progress import logger

CHECKPOINT = "checkpoint.safetensors"
LOSS_COLUMNS = ["step", "loss_d", "loss_g", "d_real", "d_fake", "images_per_second"]
# train settings that may change between a run and its resumption (its length and bookkeeping, not the model)
RESUME_IGNORES = ("steps", "sample_every", "checkpoint_every", "device", "compile", "precision", "track_quality")


def write_losses(out: Path, rows: list) -> None:
    storage.write_csv(out / "losses.csv", LOSS_COLUMNS, rows)


def _state_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Flatten an optimizer's state to tensors (safetensors holds no nested objects) + its param groups as JSON."""
    state = optimizer.state_dict()
    tensors = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"{prefix}.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, json.dumps(state["param_groups"])


def _load_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict, groups_json: str) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(groups_json)})


def save(out: Path, spec: GeneratorSpec, step: int, generator, discriminator, ema, opt_g, opt_d) -> None:
    """The checkpoint a run resumes from: G, D, the EMA generator and both optimizers at `step`."""
    g_tensors, g_groups = _optimizer_tensors("opt_g", opt_g)
    d_tensors, d_groups = _optimizer_tensors("opt_d", opt_d)
    tensors = {**_state_tensors("G", generator), **_state_tensors("D", discriminator), **_state_tensors("G_ema", ema),
               **g_tensors, **d_tensors}
    metadata = {"step": str(step), "spec": json.dumps(spec.to_dict(), sort_keys=True), "opt_g": g_groups, "opt_d": d_groups}
    storage.save_tensors(out / CHECKPOINT, tensors, metadata)


def _same_model(a: dict, b: dict) -> bool:
    """True when two specs describe the same training run up to its length and bookkeeping."""
    strip = lambda spec: {**spec, "train": {k: v for k, v in spec["train"].items() if k not in RESUME_IGNORES}}
    return json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)


def resumable_step(out: Path, spec: GeneratorSpec, warn: bool = True) -> int | None:
    """The step of a checkpoint in out from the same run, if training can continue from it (else None, with a
    warning saying why when warn)."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        metadata = storage.read_metadata(path)
        step, same = int(metadata["step"]), _same_model(json.loads(metadata["spec"]), spec.to_dict())
    except (AugmentError, KeyError, ValueError):
        step, why = None, "cannot be read: training starts afresh"
    else:
        steps = spec.train["steps"]
        why = ("is from other settings: training starts afresh" if not same else
               f"is at step {step}, past train.steps={steps}: training starts afresh (set train.steps to {step} or more "
               "to continue it instead)" if step > steps else None)
    if why and warn:
        logger.warning("'%s' %s", path, why)
    return None if why else step


def restore(out: Path, generator, discriminator, ema, opt_g, opt_d) -> int:
    """Load the checkpoint into the networks and optimizers; returns its step."""
    path = out / CHECKPOINT
    tensors, metadata = storage.load_tensors(path), storage.read_metadata(path)
    for prefix, module in (("G", generator), ("D", discriminator), ("G_ema", ema)):
        storage.load_weights(module, {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}, path)
    try:
        _load_optimizer(opt_g, "opt_g", tensors, metadata["opt_g"])
        _load_optimizer(opt_d, "opt_d", tensors, metadata["opt_d"])
        return int(metadata["step"])
    except (KeyError, ValueError, TypeError) as error:
        raise AugmentError(f"'{path}' has damaged optimizer state ({error}); delete it and train again") from None


def write_generator(out: Path, spec: GeneratorSpec, generator: torch.nn.Module) -> None:
    """The generator on its own: generator_ema.safetensors + generator.json, what the generate stage reads."""
    storage.save_tensors(out / "generator_ema.safetensors", generator.state_dict(), {"format": "augment-generator-v1"})
    storage.write_json(out / "generator.json", spec.to_dict())


def export(out: Path, spec: GeneratorSpec, generator: torch.nn.Module, rows: list, seconds: float) -> dict:
    """Write the generator (write_generator) and summary.json from the loss rows; returns the summary."""
    write_generator(out, spec, generator)
    rate = float(np.median([r[-1] for r in rows])) if rows else 0.0
    summary = {"steps": spec.train["steps"], "images_per_second": rate, "seconds": round(seconds, 1),
               "final_losses": rows[-1][1:5] if rows else []}
    storage.write_json(out / "summary.json", summary)
    return summary
