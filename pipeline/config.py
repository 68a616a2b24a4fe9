"""Typed configuration: one dataclass per stage, loaded from a mapping, overridden by `section.key=value`."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from pipeline.errors import AugmentError


PRECISIONS = ("auto", "fp32", "bf16")  # train.precision; pipeline.device.autocast reads the same list
REBALANCE = ("auto", "on", "off")      # evaluate.rebalance
CLASSICAL_GEOMETRIC = ("affine", "elastic", "flip")  # evaluate.augment: batched, combinable ("affine,elastic")
CLASSICAL_POLICIES = ("trivialaugment", "randaugment", "autoaugment", "photo")  # evaluate.augment: torchvision v2, one
DEVICES = ("auto", "cpu", "cuda", "mps")  # train/generate/evaluate.device; pipeline.device.pick_device reads the same list


@dataclass
class IngestConfig:
    dataset: str = "data"            # ImageFolder root; may hold train/ and test/ (or val/) sub-folders
    image_size: int = 28             # square side in pixels, multiple of 4, 16..128
    channels: str = "auto"           # auto | gray | rgb  (auto: gray if every input image is gray)
    resize: str = "center_crop"      # center_crop | pad   how non-square images become square
    test_fraction: float = 0.2       # share of each class held out when the dataset has no test/ folder
    val_fraction: float = 0.2        # share of each class's training images held out from the GAN and the classifiers
                                     # to choose the recommendation (0: no validation, no recommendation)
    split_seed: int = 0


@dataclass
class TrainConfig:
    steps: int = 2000                # generator updates
    batch_size: int = 64
    z_dim: int = 64
    width: int = 0                   # generator's first-map channels, halved per block; 0 = by image size (128 up to 32 px, else 256)
    lr_generator: float = 4e-4       # 4e-4 (not the usual 2e-4): 2,000 steps on a small set are far from converged
    lr_discriminator: float = 4e-4
    ema_halflife_kimg: float = 5.0   # EMA half-life in thousands of generated images
    augment: str = "translation,cutout"  # DiffAugment policy applied to real and fake before D ("" = none)
    discriminator_width: float = 0.5  # discriminator channels relative to the generator's at the same side
    minibatch_std: bool = True       # discriminator sees each batch's feature spread (penalises collapse)
    mode_seeking: float = 0.3        # weight of the mode-seeking term (MSGAN): two z, one class, images must differ
    keep: str = "best"               # last | best: export the EMA generator of the last step or of the sample grid
                                     # with the lowest Fréchet distance (best needs track_quality, else it is last)
    sample_every: int = 500          # steps between sample grids and quality measurements
    track_quality: bool = True       # measure the EMA generator's fidelity at every sample grid (gan/quality.csv)
    checkpoint_every: int = 500      # steps between checkpoints
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda | mps  (auto: CUDA when present, else CPU)
    compile: bool = False            # torch.compile the networks (pays off on CUDA)
    precision: str = "auto"          # auto | fp32 | bf16: autocast of the GAN steps (auto: bf16 on CUDA, fp32 on CPU;
                                     # bf16 on a CPU with AVX-512 BF16/AMX is faster, opt-in)
    mode: str = "conditional"        # conditional (one class-conditional model) | per_class (one generator per class)
    sampling: str = "auto"           # auto | uniform | balanced: real batches drawn image-uniform or class-balanced (every
                                     # class equally likely per slot; the fake batch's classes follow the real batch's);
                                     # auto: balanced when the largest class has >= 2x the smallest's training images


@dataclass
class GenerateConfig:
    per_class: int = 1000            # synthetic images per class; with balance: the target TOTAL (real train + synthetic)
                                     # per class, 0 = the largest class's real training count
    balance: bool = False            # top up rare classes: class c gets max(0, target - its real training images)
    seed: int = 0                    # candidate i of class c uses seed + c * 1_000_000_000 + i
    filter: str = "teacher"          # none | teacher: keep the candidates a real-trained classifier is surest of
    oversample: float = 3.0          # filter=teacher: candidates drawn per kept image
    batch_size: int = 0              # images per generator call; 0 = by device (256 on CPU, 1024 on a GPU); changes no image
    device: str = "auto"


@dataclass
class EvaluateConfig:
    seeds: int = 5                   # classifier seeds; each condition is trained once per seed (paired)
    steps: int = 600                 # classifier optimizer steps, the same for every condition
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 32                  # channels of the classifier's first block; doubled per pooled block
    model: str = "small"             # small (the built-in CNN, `width`) | a torchvision architecture by name, from scratch
                                     # (e.g. resnet18) | module:function returning an nn.Module for (channels, classes, size)
    augment: str = "elastic"         # classical augmentation of the +aug conditions: affine, elastic and/or flip, or one
                                     # torchvision v2 policy: trivialaugment | randaugment | autoaugment | photo
                                     # (elastic on every image was the strongest: benchmarks/results/classical_policies_*)
    augment_probability: float = 1.0  # chance that each image of a +aug batch is augmented (the rest stay as they are)
    synthetic_share: float = 0.5     # fraction of each real+synthetic batch drawn from synthetic images
    max_synthetic_per_class: int = 5000  # synthetic images per class read for training (bounds memory; 600 steps
                                     # of 32 synthetic images draw fewer than 2,000 per class)
    candidate_shares: str = "0.25"   # more shares for real+aug+synthetic (comma-separated; "" = none), tried on
                                     # validation by the recommendation
    rebalance: str = "auto"          # auto | on | off: also evaluate real+aug+resampled (class-balanced batches of the
                                     # real images) and real+aug+topup (classes topped up with synthetic images to
                                     # the largest class's count, class-balanced); auto: when imbalance_ratio is reached
    imbalance_ratio: float = 2.0     # rebalance=auto: largest / smallest class's real training images that counts as imbalanced
    device: str = "auto"


@dataclass
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def _first_side(image_size: int) -> int:
    while image_size % 2 == 0 and image_size // 2 >= 4:
        image_size //= 2
    return image_size


# Sides the GAN can be planned for: halving ends at a first map of 4-8 pixels (36 would start at 9 x 9, 100 at 25 x 25:
# a huge first layer and too few up-sampling blocks), so the networks stay the same shape family at every size.
IMAGE_SIZES = tuple(size for size in range(16, 129, 4) if _first_side(size) <= 8)


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Convert a YAML or command-line value to the field's type, or fail naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise AugmentError(f"config key '{key}' needs a {kind.__name__}, got {value!r}")


def from_dict(data: dict[str, Any] | None) -> Config:
    """Build a Config from nested sections; unknown sections or keys are errors that name them."""
    data = data or {}
    if not isinstance(data, dict):
        raise AugmentError("params must be a mapping of sections (ingest, train, generate, evaluate)")
    sections = {}
    for name, kind in _section_types().items():
        raw = data.get(name) or {}
        if not isinstance(raw, dict):
            raise AugmentError(f"config section '{name}' must be a mapping, got {raw!r}")
        hints = get_type_hints(kind)
        values = {}
        for key, value in raw.items():
            if key not in hints:
                raise AugmentError(f"unknown config key '{name}.{key}' (known: {', '.join(hints)})")
            values[key] = _coerce(f"{name}.{key}", value, hints[key])
        sections[name] = kind(**values)
    for name in data:
        if name not in SECTIONS:
            raise AugmentError(f"unknown config section '{name}' (known: {', '.join(SECTIONS)})")
    config = Config(**sections)
    validate(config)
    return config


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Return a new Config with `section.key=value` overrides applied and validated."""
    data = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise AugmentError(f"override '{item}' must look like section.key=value")
        dotted, value = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2:
            raise AugmentError(f"override key '{dotted}' must look like section.key (e.g. train.steps)")
        section, key = parts
        if section not in data:
            raise AugmentError(f"unknown config section '{section}' in override '{item}'")
        if key not in data[section]:
            raise AugmentError(f"unknown config key '{dotted}' (known: {', '.join(data[section])})")
        data[section][key] = value.strip()
    return from_dict(data)


def load(params_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load params.yaml (or defaults when path is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if params_path is not None:
        path = Path(params_path)
        if not path.is_file():
            raise AugmentError(f"params file '{path}' does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise AugmentError(f"params file '{path}' is not valid YAML: {error}") from None
    return apply_overrides(from_dict(data), overrides or [])


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AugmentError(message)


def parse_shares(text: str) -> list[float]:
    """'0.25, 0.75' -> [0.25, 0.75]; raises ValueError on a part that is not a number."""
    return [float(part) for part in text.split(",") if part.strip()]


def validate(config: Config) -> None:
    """Range-check every option once; messages name the key and the allowed range."""
    ingest, train, generate, evaluate = config.ingest, config.train, config.generate, config.evaluate
    _check(ingest.image_size in IMAGE_SIZES,
           f"ingest.image_size must be a multiple of 4 between 16 and 128 that halves down to 4-8 pixels "
           f"(one of {', '.join(map(str, IMAGE_SIZES))}), got {ingest.image_size}")
    _check(ingest.channels in ("auto", "gray", "rgb"), f"ingest.channels must be auto, gray or rgb, got {ingest.channels!r}")
    _check(ingest.resize in ("center_crop", "pad"), f"ingest.resize must be center_crop or pad, got {ingest.resize!r}")
    _check(0.0 < ingest.test_fraction < 1.0, f"ingest.test_fraction must be between 0 and 1, got {ingest.test_fraction}")
    _check(0.0 <= ingest.val_fraction < 1.0, f"ingest.val_fraction must be in [0, 1), got {ingest.val_fraction}")
    _check(train.steps >= 1, f"train.steps must be at least 1, got {train.steps}")
    _check(train.batch_size >= 2, f"train.batch_size must be at least 2, got {train.batch_size}")
    _check(train.z_dim >= 1 and (train.width == 0 or train.width >= 8),
           f"train.z_dim must be >= 1 and train.width 0 (auto) or >= 8, got {train.z_dim} and {train.width}")
    _check(train.lr_generator > 0 and train.lr_discriminator > 0, "train learning rates must be positive")
    _check(train.ema_halflife_kimg >= 0, "train.ema_halflife_kimg must be >= 0")
    _check(train.sample_every >= 1 and train.checkpoint_every >= 1, "train.sample_every and train.checkpoint_every must be >= 1")
    _check(train.mode in ("conditional", "per_class"), f"train.mode must be conditional or per_class, got {train.mode!r}")
    _check(0.1 <= train.discriminator_width <= 4, f"train.discriminator_width must be in [0.1, 4], got {train.discriminator_width}")
    _check(train.mode_seeking >= 0, f"train.mode_seeking must be >= 0, got {train.mode_seeking}")
    _check(train.sampling in ("auto", "uniform", "balanced"),
           f"train.sampling must be auto, uniform or balanced, got {train.sampling!r}")
    _check(train.keep in ("last", "best"), f"train.keep must be last or best, got {train.keep!r}")
    _check(train.precision in PRECISIONS, f"train.precision must be one of {', '.join(PRECISIONS)}, got {train.precision!r}")
    known = {"translation", "cutout", "color"}
    policy = {p.strip() for p in train.augment.split(",") if p.strip()}
    _check(policy <= known, f"train.augment has unknown parts {sorted(policy - known)}; use any of {sorted(known)}")
    for name, device in (("train", train.device), ("generate", generate.device), ("evaluate", evaluate.device)):
        _check(device in DEVICES, f"{name}.device must be one of {', '.join(DEVICES)}, got {device!r}")
    _check(generate.per_class >= 1 or (generate.balance and generate.per_class == 0),
           f"generate.per_class must be at least 1, got {generate.per_class} (use --per-class N with N > 0; "
           "0 means 'up to the largest class' only with --balance)")
    _check(generate.per_class <= 10_000_000, f"generate.per_class {generate.per_class} is absurdly large (max 10,000,000)")
    _check(generate.batch_size >= 0, "generate.batch_size must be at least 1 (or 0: by device)")
    _check(generate.filter in ("none", "teacher"), f"generate.filter must be none or teacher, got {generate.filter!r}")
    _check(1.0 <= generate.oversample <= 100, f"generate.oversample must be in [1, 100], got {generate.oversample}")
    _check(evaluate.seeds >= 1, f"evaluate.seeds must be at least 1, got {evaluate.seeds}")
    _check(evaluate.steps >= 1 and evaluate.batch_size >= 2, "evaluate.steps must be >= 1 and evaluate.batch_size >= 2")
    _check(evaluate.lr > 0, "evaluate.lr must be positive")
    _check(evaluate.max_synthetic_per_class >= 1, f"evaluate.max_synthetic_per_class must be >= 1, got {evaluate.max_synthetic_per_class}")
    _check(bool(evaluate.model.strip()) and evaluate.model.count(":") <= 1,
           f"evaluate.model must be small, a torchvision model name or module:function, got {evaluate.model!r}")
    _check(evaluate.width >= 4, f"evaluate.width must be at least 4, got {evaluate.width}")
    classical = {p.strip() for p in evaluate.augment.split(",") if p.strip()}
    _check(evaluate.augment.strip() in CLASSICAL_POLICIES or (bool(classical) and classical <= set(CLASSICAL_GEOMETRIC)),
           f"evaluate.augment must name any of {', '.join(CLASSICAL_GEOMETRIC)} (e.g. 'affine,elastic' or 'affine,flip'), "
           f"or one of the policies {', '.join(CLASSICAL_POLICIES)}; got {evaluate.augment!r}")
    _check(0.0 < evaluate.augment_probability <= 1.0,
           f"evaluate.augment_probability must be in (0, 1], got {evaluate.augment_probability}")
    _check(0.0 <= evaluate.synthetic_share < 1.0, f"evaluate.synthetic_share must be in [0, 1), got {evaluate.synthetic_share}")
    _check(evaluate.rebalance in REBALANCE, f"evaluate.rebalance must be one of {', '.join(REBALANCE)}, got {evaluate.rebalance!r}")
    _check(evaluate.imbalance_ratio >= 1.0, f"evaluate.imbalance_ratio must be at least 1, got {evaluate.imbalance_ratio}")
    try:
        shares = parse_shares(evaluate.candidate_shares)
    except ValueError:
        shares = [-1.0]
    _check(all(0.0 < share < 1.0 for share in shares),
           f"evaluate.candidate_shares must be comma-separated numbers in (0, 1), got {evaluate.candidate_shares!r}")
