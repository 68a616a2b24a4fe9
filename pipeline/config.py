"""Typed configuration: one dataclass per stage, loaded from a mapping, overridden by `section.key=value`.

Each field is declared once, with everything known about it: its type (a `Literal` lists the allowed values), its
default, its range or rule, and its help. `validate` checks every field from those declarations, and the options
table (docs/options.md), params.yaml's comments and the CLI's help are generated from them (`options_markdown`,
`params_yaml`; tests/test_config.py checks the committed files against both)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin, get_type_hints

import yaml

from pipeline.errors import AugmentError

Channels = Literal["auto", "gray", "rgb"]
Resize = Literal["center_crop", "pad"]
Device = Literal["auto", "cpu", "cuda", "mps"]  # pipeline.device.pick_device reads DEVICES
Precision = Literal["auto", "fp32", "bf16"]     # pipeline.device.autocast reads PRECISIONS
TrainMode = Literal["conditional", "per_class"]
Sampling = Literal["auto", "uniform", "balanced"]
Keep = Literal["last", "best"]
Filter = Literal["none", "teacher"]
Rebalance = Literal["auto", "on", "off"]
Batched = Literal["auto", "on", "off"]
LongTailLoss = Literal["off", "balanced_softmax"]

DEVICES: tuple[str, ...] = get_args(Device)
PRECISIONS: tuple[str, ...] = get_args(Precision)
REBALANCE: tuple[str, ...] = get_args(Rebalance)
DIFF_AUGMENTATIONS = ("color", "translation", "cutout")  # train.augment, in the order pipeline.gan.diffaugment applies them
CLASSICAL_GEOMETRIC = ("affine", "elastic", "flip")  # evaluate.augment: batched, combinable ("affine,elastic")
CLASSICAL_POLICIES = ("trivialaugment", "randaugment", "autoaugment", "photo")  # evaluate.augment: torchvision v2, one


def _first_side(image_size: int) -> int:
    while image_size % 2 == 0 and image_size // 2 >= 4:
        image_size //= 2
    return image_size


# Sides the GAN can be planned for: halving ends at a first map of 4-8 pixels (36 would start at 9 x 9, 100 at 25 x 25:
# a huge first layer and too few up-sampling blocks), so the networks stay the same shape family at every size.
IMAGE_SIZES = tuple(size for size in range(16, 129, 4) if _first_side(size) <= 8)

# Seeds stay far below 2**63 - 1 (torch's limit) after the offsets the stages add (class * 1e9, step, rank):
# a huge seed must be refused when the config is read, not overflow after a stage has emptied its folder.
SEED_MAX = 2**31 - 1

# A rule sees the field's value and its whole section; it returns what is wrong (the words after the key) or None.
Rule = Callable[[Any, Any], "str | None"]


def option(default: Any, help: str, *, at_least: float | None = None, above: float | None = None,
           at_most: float | None = None, below: float | None = None, rule: Rule | None = None, accepts: str = "",
           more: str = "") -> Any:
    """A config field. `help` is one line (params.yaml's comment, the CLI); `more` adds detail for the options
    table. Bounds: at_least/at_most are inclusive, above/below exclusive; a rule says in `accepts` what it admits."""
    return field(default=default, metadata={"help": help, "more": more, "at_least": at_least, "above": above,
                                            "at_most": at_most, "below": below, "rule": rule,
                                            "accepts": accepts})


def parse_shares(text: str) -> list[float]:
    """'0.25, 0.75' -> [0.25, 0.75]; raises ValueError on a part that is not a number."""
    return [float(part) for part in text.split(",") if part.strip()]


def _image_size(value: int, _) -> str | None:
    if value not in IMAGE_SIZES:
        return (f"must be a multiple of 4 between 16 and 128 that halves down to 4-8 pixels "
                f"(one of {', '.join(map(str, IMAGE_SIZES))}), got {value}")
    return None


def _width(value: int, _) -> str | None:
    return None if value == 0 or value >= 8 else f"must be 0 (auto) or at least 8, got {value}"


def _diff_augment(value: str, _) -> str | None:
    parts = {p.strip() for p in value.split(",") if p.strip()}
    unknown = parts - set(DIFF_AUGMENTATIONS)
    return f"has unknown parts {sorted(unknown)}; use any of {sorted(DIFF_AUGMENTATIONS)}" if unknown else None


def _per_class(value: int, section: Any) -> str | None:
    if value >= 1 or (section.balance and value == 0):
        return None
    return (f"must be at least 1, got {value} (use --per-class N with N > 0; "
            "0 means 'up to the largest class' only with --balance)")


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
MODEL_PATTERN = re.compile(rf"{_NAME}|{_NAME}(\.{_NAME})*:{_NAME}")


def _model(value: str, _) -> str | None:
    """Syntax only: importing `module` runs its code, which happens when a run starts (never in --dry-run)."""
    if MODEL_PATTERN.fullmatch(value):
        return None
    return (f"must be small, a torchvision model name, or module:function with a dotted module path and a function "
            f"name (no relative import), got {value!r}")


def _classical(value: str, _) -> str | None:
    parts = {p.strip() for p in value.split(",") if p.strip()}
    if value.strip() in CLASSICAL_POLICIES or (parts and parts <= set(CLASSICAL_GEOMETRIC)):
        return None
    return (f"must name any of {', '.join(CLASSICAL_GEOMETRIC)} (e.g. 'affine,elastic' or 'affine,flip'), "
            f"or one of the policies {', '.join(CLASSICAL_POLICIES)}; got {value!r}")


SOURCE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Words the conditions' names are made of: a source called "aug" would make "real+aug+aug" ambiguous.
RESERVED_SOURCE_NAMES = frozenset({"real", "aug", "synthetic", "resampled", "topup", "bsm", "sources", "pick"})


def parse_sources(text: str) -> dict[str, str]:
    """'diffusion=data/diff, renders=/srv/r' -> {name: folder}; names lower case, unique, not a reserved word."""
    sources: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, folder = (x.strip() for x in part.partition("="))
        if not sep or not folder:
            raise AugmentError(f"synthetic source '{part}' must look like NAME=FOLDER (e.g. diffusion=data/diffusion)")
        if not SOURCE_NAME.fullmatch(name) or name in RESERVED_SOURCE_NAMES:
            raise AugmentError(f"synthetic source name '{name}' must be lower case letters, digits, - or _ (starting with a "
                               f"letter, at most 32), and not one of {', '.join(sorted(RESERVED_SOURCE_NAMES))}")
        if name in sources:
            raise AugmentError(f"synthetic source name '{name}' is given twice")
        sources[name] = folder
    return sources


def _sources(value: str, _) -> str | None:
    try:
        parse_sources(value)
    except AugmentError as error:
        return f"is not a list of NAME=FOLDER: {error}"
    return None


def parse_names(text: str) -> list[str]:
    """'a, b' -> ['a', 'b'] (empty parts dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _source_names(value: str, _) -> str | None:
    bad = [n for n in parse_names(value) if not SOURCE_NAME.fullmatch(n)]
    return f"must be source names (lower case, digits, - and _), got {bad}" if bad else None


def _folds(value: int, _) -> str | None:
    return None if value == 0 or 2 <= value <= 20 else f"must be 0 (off) or 2 to 20 folds, got {value}"


def _shares(value: str, _) -> str | None:
    try:
        shares = parse_shares(value)
    except ValueError:
        shares = [-1.0]
    if all(0.0 < share < 1.0 for share in shares):
        return None
    return f"must be comma-separated numbers in (0, 1), got {value!r}"


@dataclass
class IngestConfig:
    dataset: str = option("data", "ImageFolder root: one sub-folder per class; may hold train/ and test/ (or val/) sub-folders",
                          more="`augment run --dataset` sets it; `augment export-digits data/digits` writes the embedded demo dataset.")
    image_size: int = option(28, "square side in pixels that halves down to a 4-8 px first map", rule=_image_size, accepts="16 to 128, listed",
                             more=f"One of {', '.join(map(str, IMAGE_SIZES))}; see [Image size](performance.md#image-size-networks-and-time).")
    channels: Channels = option("auto", "gray or rgb; auto = gray if every input image is gray")
    resize: Resize = option("center_crop", "how non-square images become square",
                            more="`center_crop` keeps the middle square of the shorter side, `pad` the whole picture with black bars.")
    test_fraction: float = option(0.2, "share of each class held out for testing when the dataset has no test/ folder",
                                  above=0.0, below=1.0)
    val_fraction: float = option(0.2, "share of each class's training images held out from the GAN and the classifiers to "
                                 "choose the recommendation", at_least=0.0, below=1.0, more="0: no validation, no recommendation.")
    split_seed: int = option(0, "seed of the stratified train / validation / test split", at_least=0, at_most=SEED_MAX)


@dataclass
class TrainConfig:
    steps: int = option(2000, "generator updates", at_least=1)
    batch_size: int = option(64, "real images per GAN step", at_least=2)
    z_dim: int = option(64, "latent size of the generator", at_least=1)
    width: int = option(0, "generator's first-map channels, halved per up-sampling block; 0 = by image size (128 up to "
                        "32 px, 256 above)", rule=_width,
                        accepts="0 or at least 8")
    lr_generator: float = option(4e-4, "Adam learning rate of the generator (betas 0, 0.99)", above=0.0,
                                 more="Twice the usual 2e-4, because 2,000 steps on a small dataset are far from converged "
                                      "(see [Results](results.md)).")
    lr_discriminator: float = option(4e-4, "Adam learning rate of the discriminator", above=0.0)
    ema_halflife_kimg: float = option(5.0, "half-life of the generator's EMA copy, in thousands of generated images", at_least=0.0)
    augment: str = option("translation,cutout", "DiffAugment policy for real and fake images before the discriminator "
                          "(any of color, translation, cutout; empty = none)", rule=_diff_augment,
                          accepts="any of `color`, `translation`, `cutout`")
    discriminator_width: float = option(0.5, "discriminator channels relative to the generator's at the same side",
                                        at_least=0.1, at_most=4.0)
    minibatch_std: bool = option(True, "the discriminator sees each batch's feature spread (penalises a collapsed generator)")
    mode_seeking: float = option(0.3, "weight of the mode-seeking term (MSGAN): two latents of one class must give "
                                 "different images", at_least=0.0)
    keep: Keep = option("best", "best: export the EMA generator of the sample grid with the lowest Fréchet distance on "
                        "the training images; last: the last one", more="`best` needs `track_quality`, else it is `last`.")
    sample_every: int = option(500, "steps between sample grids and quality measurements", at_least=1)
    track_quality: bool = option(True, "measure the EMA generator's fidelity at every sample grid (gan/quality.csv)")
    probe_steps: int = option(300, "training steps of the quality probe, the small classifier (trained once on the real "
                              "training images) whose features score the EMA generator", at_least=1,
                              more="300 takes seconds on a CPU; a change restarts training rather than mixing two probes' "
                                   "scores in one keep=best choice.")
    checkpoint_every: int = option(500, "steps between checkpoints (an interrupted run resumes from the last)", at_least=1)
    seed: int = option(0, "seed of the GAN's initial weights, batches and noise", at_least=0, at_most=SEED_MAX)
    device: Device = option("auto", "auto = CUDA if available, else CPU; or cuda, cpu, mps by name",
                            more="The same for `generate.device` and `evaluate.device`; `mps` (Apple) is accepted, not "
                                 "measured. channels_last everywhere; see [On a GPU](performance.md#on-a-gpu).")
    compile: bool = option(False, "torch.compile the networks (pays off on CUDA)")
    precision: Precision = option("auto", "autocast of the GAN steps: auto = bf16 on CUDA GPUs that support it, fp32 on "
                                  "CPU; bf16 also on a CPU (faster on AVX-512 BF16 / AMX); fp32 = no autocast",
                                  more="The classifiers (evaluate, teacher filter) always use `auto`; see "
                                       "[Performance](performance.md).")
    mode: TrainMode = option("conditional", "conditional: one class-conditional GAN; per_class: one generator per class "
                             "(fanned out)", more="See [Scaling out](scaling.md).")
    sampling: Sampling = option("auto", "GAN batches image-uniform or class-balanced (fake labels follow); auto = balanced "
                                "when the largest class has >= 2x the smallest's training images",
                                more="See [Class leakage](results.md#class-leakage-and-class-balanced-gan-batches-trainsampling-auto-the-default-since-2026-12-02).")


@dataclass
class GenerateConfig:
    per_class: int = option(1000, "synthetic images per class; with balance the target total (real train + synthetic) per "
                            "class, 0 = the largest class's real count", at_most=10_000_000, rule=_per_class,
                            accepts="at least 1 (0 with balance)")
    balance: bool = option(False, "top up rare classes: class c gets max(0, target - its real training images)",
                           more="`augment run --balance`; see [Imbalanced classes](how-it-works.md#imbalanced-classes).")
    seed: int = option(0, "candidate i of class c uses the seed + c * 1,000,000,000 + i", at_least=0, at_most=SEED_MAX)
    filter: Filter = option("teacher", "teacher: draw oversample x the images needed, keep those a classifier trained on "
                            "the real training split is surest of; none: keep every sample")
    oversample: float = option(3.0, "candidates drawn per kept image with the teacher filter", at_least=1.0, at_most=100.0)
    batch_size: int = option(0, "images per generator call; 0 = by device (256 on CPU, 1024 on a GPU); changes no image, "
                             "only speed", at_least=0)
    device: Device = option("auto", "as train.device")


@dataclass
class EvaluateConfig:
    seeds: int = option(5, "classifier seeds per condition (paired across conditions)", at_least=1, at_most=1000)
    steps: int = option(600, "classifier optimizer steps, the same for every condition", at_least=1)
    batch_size: int = option(64, "classifier batch size", at_least=2)
    lr: float = option(1e-3, "classifier learning rate (Adam)", above=0.0)
    width: int = option(32, "channels of the built-in classifier's first block, doubled per pooled block", at_least=4)
    model: str = option("small", "the downstream classifier: small (the built-in CNN), a torchvision architecture by name "
                        "trained from scratch (e.g. resnet18), or module:function", rule=_model,
                        accepts="`small`, a name, `module:function`",
                        more="`module:function` returns an `nn.Module` for (channels, classes, image size); the module is "
                             "importable from the current folder or `PYTHONPATH` (e.g. `--set evaluate.model=my_models:wide_cnn` "
                             "with `my_models.py` beside you). Nothing is downloaded. Fidelity is always measured in the "
                             "built-in CNN's features.")
    augment: str = option("elastic", "classical augmentation of the +aug conditions: any of affine, elastic, flip, or one "
                          "torchvision v2 policy: trivialaugment, randaugment, autoaugment, photo", rule=_classical,
                          accepts="any of `affine`, `elastic`, `flip`; or one policy",
                          more="`flip` only where mirrored images keep their class; `photo` = random resized crop, mirror, "
                               "colour jitter. Each image gets its own seed, so conditions stay paired. Elastic on every "
                               "image was the strongest of 13 settings: [Which classical augmentation](results.md#which-classical-augmentation).")
    augment_probability: float = option(1.0, "chance that each image of a +aug batch is augmented; the rest stay as they are",
                                        above=0.0, at_most=1.0)
    synthetic_share: float = option(0.5, "share of each real+synthetic batch drawn from synthetic images", at_least=0.0, below=1.0)
    max_synthetic_per_class: int = option(5000, "synthetic images per class the classifiers read (bounds memory)", at_least=1,
                                          more="600 steps of 32 synthetic images draw fewer than 2,000 per class.")
    candidate_shares: str = option("0.25", "more shares of real+aug+synthetic tried on validation by the recommendation "
                                   "(comma-separated; empty = none)", rule=_shares,
                                   accepts="numbers in (0, 1)")
    rebalance: Rebalance = option("auto", "also evaluate class-balanced re-sampling (real+aug+resampled) and the synthetic "
                                  "top-up beside it (real+aug+topup): on, off, or auto = when the classes are imbalanced",
                                  more="See [Imbalanced classes](how-it-works.md#imbalanced-classes).")
    long_tail_loss: LongTailLoss = option("off", "where rebalance applies, also evaluate this long-tail loss (real+aug+bsm) "
                                          "and the synthetic mix under it (real+aug+synthetic+bsm): off or balanced_softmax",
                                          more="Off by default: on the three imbalanced MNIST profiles Balanced Softmax lost "
                                               "to re-sampling in accuracy and in the worst class "
                                               "([results](results.md#balanced-softmax-on-the-same-profiles)).")
    imbalance_ratio: float = option(2.0, "with rebalance auto: the largest class's real training images over the smallest's "
                                    "from which the data counts as imbalanced", at_least=1.0)
    sources: str = option("", "outside synthetic sources measured beside the tool's own: NAME=FOLDER, comma-separated "
                          "(each FOLDER an ImageFolder of the dataset's classes; empty = none)", rule=_sources,
                          accepts="NAME=FOLDER, ...",
                          more="`augment run/evaluate --synthetic NAME=FOLDER` adds one. Read like the dataset, copies of "
                               "validation or test images excluded; see [Outside synthetic sources](how-it-works.md#outside-synthetic-sources).")
    folds: int = option(0, "choose the recommendation by k-fold cross-validation over the real training and validation "
                        "images (0 = on the validation split alone)", rule=_folds, accepts="0, or 2 to 20",
                        more="Each condition trains on k-1 folds and is scored on the one left out, for every seed: every "
                             "real image outside the test split judges, not only the validation fifth (with "
                             "ingest.val_fraction 0.2, 5 folds train on as many images as a run does). It costs folds x "
                             "seeds x candidates more classifiers. The tool's own GAN saw the training images, so its "
                             "conditions are not candidates then (nor those of evaluate.trained_on_data); an outside "
                             "source's copies of a fold's images are left out of that fold's training. See "
                             "[Cross-validated recommendation](how-it-works.md#cross-validated-recommendation).")
    trained_on_data: str = option("", "outside sources whose generator was trained or fine-tuned on this dataset's images "
                                  "(comma-separated names): with evaluate.folds they are not candidates, like the tool's own GAN",
                                  rule=_source_names, accepts="source names",
                                  more="Cross-validation holds out training images such a generator saw, which its images "
                                       "could carry into the folds' training; on the validation split alone they are "
                                       "judged as usual.")
    batched: Batched = option("auto", "train the built-in CNN's conditions of a seed as one ensemble (grouped "
                              "convolutions): on, off, or auto = on a GPU only", more="Each member keeps its seed's "
                              "initial weights, batches and augmentation draws; see [Performance](performance.md).")
    device: Device = option("auto", "as train.device")


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


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def fields(section: str) -> list[tuple[dataclasses.Field, Any]]:
    """(field, its resolved type) of one section, in declaration order."""
    kind = _section_types()[section]
    hints = get_type_hints(kind)
    return [(f, hints[f.name]) for f in dataclasses.fields(kind)]


def help_for(key: str) -> str:
    """The one-line help of 'section.key'."""
    section, name = key.split(".")
    return next(f.metadata["help"] for f, _ in fields(section) if f.name == name)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Convert a YAML or command-line value to the field's type, or fail naming the key."""
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        if isinstance(value, bool) and ("on" if value else "off") in choices:
            return "on" if value else "off"  # YAML 1.1 (PyYAML) reads an unquoted on/off as true/false
        kind = type(choices[0])
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
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise AugmentError(f"config key '{key}' needs {words.get(kind, kind.__name__)}, got {value!r}")


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


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(meta: dict) -> str | None:
    """'at least 1', 'positive', 'in (0, 1]', ... for the declared bounds, or None."""
    low, low_closed = (meta["at_least"], True) if meta["at_least"] is not None else (meta["above"], False)
    high, high_closed = (meta["at_most"], True) if meta["at_most"] is not None else (meta["below"], False)
    if low is not None and high is not None:
        return f"in {'[' if low_closed else '('}{_number(low)}, {_number(high)}{']' if high_closed else ')'}"
    if low is not None:
        return f"at least {_number(low)}" if low_closed else ("positive" if low == 0 else f"above {_number(low)}")
    if high is not None:
        return f"at most {_number(high)}" if high_closed else f"below {_number(high)}"
    return None


def _within(value: float, meta: dict) -> bool:
    return ((meta["at_least"] is None or value >= meta["at_least"]) and (meta["above"] is None or value > meta["above"])
            and (meta["at_most"] is None or value <= meta["at_most"]) and (meta["below"] is None or value < meta["below"]))


def allowed(kind: Any, meta: dict) -> str:
    """What a field accepts, in words (the options table's column)."""
    if get_origin(kind) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(kind))
    if kind is bool:
        return "`true` \\| `false`"
    return meta["accepts"] or _bounds(meta) or {int: "an integer", str: "a path"}.get(kind, "")


def validate(config: Config) -> None:
    """Check every field against its declaration (choices, bounds, rule); the message names the key and what it
    accepts."""
    for section in SECTIONS:
        values = getattr(config, section)
        for f, kind in fields(section):
            key, value, meta = f"{section}.{f.name}", getattr(values, f.name), f.metadata
            if get_origin(kind) is Literal and value not in get_args(kind):
                raise AugmentError(f"{key} must be one of {', '.join(get_args(kind))}, got {value!r}")
            if meta["rule"] is not None and (problem := meta["rule"](value, values)):
                raise AugmentError(f"{key} {problem}")
            if isinstance(value, float) and not math.isfinite(value):
                raise AugmentError(f"{key} must be a finite number, got {value}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not _within(value, meta):
                raise AugmentError(f"{key} must be {_bounds(meta)}, got {value}")


def options_markdown() -> str:
    """The options table of docs/options.md, from the declarations."""
    lines = ["| key | default | accepts | meaning |", "|---|---|---|---|"]
    for section in SECTIONS:
        for f, kind in fields(section):
            meaning = f.metadata["help"] + "."
            if f.metadata["more"]:
                meaning += " " + f.metadata["more"]
            default = json.dumps(f.default) if isinstance(f.default, (bool, str)) else repr(f.default)
            meaning = meaning.replace("|", "\\|")
            lines.append(f"| `{section}.{f.name}` | `{default}` | {allowed(kind, f.metadata)} | {meaning} |")
    return "\n".join(lines) + "\n"


PARAMS_HEADER = ("# Every number of the pipeline, one section per stage. `augment run --set section.key=value` overrides a key;\n"
                 "# dvc.yaml's stages read these sections, so `dvc repro` re-runs only the stages whose section changed.\n"
                 "# Generated from pipeline/config.py (`python -m pipeline.config params`); all keys and values: docs/options.md.\n")


def params_yaml(values: Config | None = None, width: int = 116) -> str:
    """params.yaml for `values` (the defaults when None), each key under its help as a comment."""
    import textwrap

    values = values or Config()
    lines = [PARAMS_HEADER.rstrip("\n")]
    for section in SECTIONS:
        lines.append(f"{section}:")
        for f, _ in fields(section):
            lines += textwrap.wrap(f.metadata["help"], width, initial_indent="  # ", subsequent_indent="  #   ")
            scalar = yaml.safe_dump({f.name: getattr(getattr(values, section), f.name)}, default_flow_style=False).strip()
            lines.append(f"  {scalar}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "params":
        print(params_yaml(apply_overrides(Config(), sys.argv[2:])), end="")
    elif what == "options":
        print(options_markdown(), end="")
    else:
        sys.exit("usage: python -m pipeline.config params [section.key=value ...] | options")
