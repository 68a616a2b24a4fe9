"""Issue #3 screening harness: ways of making and using synthetic images, scored on a TUNING set (never the test set).

    python benchmarks/screen_issue3.py --run /tmp/bench/run20 --split /tmp/bench/split20 --variants base,syn_top --seeds 3

--run is an `augment run` folder on the benchmark's K=20 split (its ingest/ arrays and gan/ generator are reused);
--split is that split. The tuning set is every ../shared/data/mnist10k image the split uses neither for training
nor for testing (4,800 images), so choosing a default here never touches the benchmark's test images. Each variant
trains the evaluate stage's classifier (same width, steps, batch size, learning rate and seeds) and reports its
paired gain over `base` (real+aug). Results are appended to --results as each variant finishes; the teacher
ensemble (real+aug classifiers, seeds 100+) and the baseline's runs are cached beside it (they do not depend on the
generator). Session 5's screen (benchmarks/results/screening_issue3.md) ran, each on one torch thread:

    python benchmarks/screen_issue3.py --run RUN --split SPLIT --seeds 3 --tag s1   # every variant, default generator
    python benchmarks/screen_issue3.py --run RUN --split SPLIT --gan GAN --variants base,syn_agree,syn_conf,cas,cas_aug
    python benchmarks/screen_issue3.py --run RUN --split SPLIT --variants base,oracle16,oracle48 --tag s3-oracle
Variants (names below): what fills each batch, how it is labelled, and whether classical augmentation applies.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline import storage  # noqa: E402
from pipeline.config import EvaluateConfig  # noqa: E402
from pipeline.evaluate.classifier import SmallCNN, _to_float, classical_augment, predict  # noqa: E402
from pipeline.evaluate.stage import load_synthetic  # noqa: E402
from pipeline.evaluate.stats import paired_gain  # noqa: E402
from pipeline.gan.networks import Discriminator, build_generator, to_uint8  # noqa: E402

SHARED = ROOT.parent / "shared"
CONFIG = EvaluateConfig()
ORACLE_SIZES = (16, 48)  # extra real images per class: what a generator would have to be worth


@dataclass
class Part:
    """One source of each batch: `n` images drawn from `pool`, hard or soft labels, augmented or not, loss weight."""
    pool: str
    n: int
    augment: bool = True
    soft: str | None = None      # name of a soft-label table for this pool (teacher probabilities)
    weight: float = 1.0


@dataclass
class Variant:
    parts: list[Part]
    note: str = ""
    steps: int = CONFIG.steps


def tuning_set(split: Path, source: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """mnist10k images in neither split/train nor split/test, as N x 1 x 28 x 28 uint8 and class indices."""
    classes = sorted(d.name for d in (split / "train").iterdir() if d.is_dir())
    images, labels = [], []
    for index, name in enumerate(classes):
        used = {p.name for part in ("train", "test") for p in (split / part / name).iterdir()}
        for path in sorted((source / name).iterdir()):
            if path.name not in used:
                with Image.open(path) as image:
                    images.append(np.asarray(image.convert("L"))[None])
                labels.append(index)
    return np.stack(images), np.array(labels, dtype=np.int64), classes


def train(variant: Variant, pools: dict, soft: dict, seed: int, num_classes: int, image_size: int) -> SmallCNN:
    """The evaluate stage's training loop, generalised to several pools with their own labels, augmentation and weight."""
    torch.manual_seed(seed)
    model = SmallCNN(1, num_classes, image_size, CONFIG.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, variant.steps)
    rngs = [torch.Generator().manual_seed(seed + i) for i in range(len(variant.parts))]
    augment_rng = torch.Generator().manual_seed(seed + 2)
    model.train()
    for _ in range(variant.steps):
        xs, targets, weights = [], [], []
        for part, rng in zip(variant.parts, rngs):
            x_pool, y_pool = pools[part.pool]
            index = torch.randint(0, len(x_pool), (part.n,), generator=rng)
            x = _to_float(torch.from_numpy(x_pool[index.numpy()]))
            if part.augment:
                x = classical_augment(x, CONFIG.augment, augment_rng, CONFIG.augment_probability)
            y = torch.from_numpy(y_pool[index.numpy()])
            target = soft[part.soft][index.numpy()] if part.soft else F.one_hot(y, num_classes).float().numpy()
            xs.append(x), targets.append(torch.as_tensor(target)), weights.append(torch.full((part.n,), part.weight))
        x, target, weight = torch.cat(xs), torch.cat(targets), torch.cat(weights)
        loss = (-(target * F.log_softmax(model(x), dim=1)).sum(1) * weight).sum() / weight.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def probabilities(models: list[SmallCNN], images: np.ndarray) -> np.ndarray:
    out = 0
    for model in models:
        out = out + np.concatenate([torch.softmax(model(_to_float(torch.from_numpy(images[s:s + 1024]))), 1).numpy()
                                    for s in range(0, len(images), 1024)])
    return out / len(models)


@torch.no_grad()
def sample(generator, per_class: int, num_classes: int, z_dim: int, seed: int, std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    g = torch.Generator().manual_seed(seed)
    for c in range(num_classes):
        for start in range(0, per_class, 500):
            n = min(500, per_class - start)
            z = torch.randn(n, z_dim, generator=g) * std
            images.append(to_uint8(generator(z, torch.full((n,), c))).transpose(0, 3, 1, 2))
            labels.append(np.full(n, c, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


@torch.no_grad()
def discriminator_scores(gan_dir: Path, spec: dict, images: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The last checkpoint's discriminator score of every image with its class (higher: more real-looking)."""
    train_spec = spec["train"]
    model = Discriminator(len(spec["classes"]), spec["channels"], spec["image_size"], spec["width"],
                          train_spec["discriminator_width"], train_spec["minibatch_std"])
    tensors = storage.load_tensors(gan_dir / "checkpoint.safetensors")
    model.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
    model.eval()
    # With minibatch std a score depends on the 3 other images of its group; the images come ordered by class, so each
    # group is of one class (training's groups mix classes): a ranking within a class, not a calibrated score.
    return np.concatenate([model(_to_float(torch.from_numpy(images[0][s:s + 256])), torch.from_numpy(images[1][s:s + 256])).numpy()
                           for s in range(0, len(images[1]), 256)])


def nearest_real_distance(samples: tuple[np.ndarray, np.ndarray], real: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each sample's pixel L2 distance (0-255 scale) to the nearest training image of its own class."""
    flat = lambda x: torch.from_numpy(x.reshape(len(x), -1).astype(np.float32))
    out = np.empty(len(samples[1]), dtype=np.float32)
    for c in np.unique(samples[1]):
        rows = np.flatnonzero(samples[1] == c)
        out[rows] = torch.cdist(flat(samples[0][rows]), flat(real[0][real[1] == c])).min(dim=1).values.numpy()
    return out


def load_generator(gan_dir: Path):
    spec = storage.read_json(gan_dir / "generator.json")
    generator = build_generator(spec)
    generator.load_state_dict(storage.load_tensors(gan_dir / "generator_ema.safetensors"))
    return generator.eval(), spec


def cache_key(real: tuple[np.ndarray, np.ndarray]) -> str:
    """What the teachers and the baseline depend on: the training images and labels, the classifier settings, and the
    torch thread count (a classifier trained on 2 threads differs from one on 1 by a few tenths of a point)."""
    settings = json.dumps({**dataclasses.asdict(CONFIG), "threads": torch.get_num_threads()})
    digest = hashlib.sha256(real[0].tobytes() + real[1].tobytes() + settings.encode())
    return digest.hexdigest()[:16]


def cached_teacher(real, seed: int, num_classes: int, size: int, cache: Path, key: str) -> SmallCNN:
    """A real+aug teacher (the baseline's training), cached on disk under `key` (cache_key of `real`): every screen
    of one training set shares it."""
    path = cache / f"{key}_{seed}.safetensors"
    if path.is_file():
        model = SmallCNN(1, num_classes, size, CONFIG.width)
        model.load_state_dict(storage.load_tensors(path))
        return model.eval()
    model = train(Variant([Part("real", CONFIG.batch_size)]), {"real": real}, {}, seed, num_classes, size)
    storage.save_tensors(path, model.state_dict(), {})
    return model


def variants(share: float) -> dict[str, Variant]:
    n = int(round(CONFIG.batch_size * share))
    r = CONFIG.batch_size - n
    return {
        "base": Variant([Part("real", CONFIG.batch_size)], "real+aug (the baseline every gain is paired against)"),
        "syn_top": Variant([Part("real", r), Part("syn_top", n)], "real+aug+synthetic, today's pool (teacher's surest third)"),
        "syn_raw": Variant([Part("real", r), Part("syn_raw", n)], "real+aug+synthetic, unfiltered samples"),
        "syn_agree": Variant([Part("real", r), Part("syn_agree", n)], "real+aug+synthetic, samples the teacher ensemble labels as their class"),
        "kd_syn": Variant([Part("real", r), Part("syn_raw", n, soft="syn_raw")], "unfiltered samples, labelled by the teacher ensemble's probabilities"),
        "kd_ctrl": Variant([Part("real", r), Part("real", n, soft="real")], "CONTROL for kd_syn: the same slots filled with augmented real images, teacher-labelled"),
        "kd_all": Variant([Part("real", r, soft="real"), Part("syn_raw", n, soft="syn_raw")], "every image teacher-labelled"),
        "kd_all_ctrl": Variant([Part("real", CONFIG.batch_size, soft="real")], "CONTROL for kd_all: real images only, teacher-labelled"),
        "syn_conf": Variant([Part("real", r), Part("syn_conf", n)], "real+aug+synthetic, the third of samples the teacher ensemble is surest of"),
        "syn_dscore": Variant([Part("real", r), Part("syn_dscore", n)], "real+aug+synthetic, of the ensemble-agreed samples the 1,000 per class the GAN's discriminator finds most real"),
        "syn_novel": Variant([Part("real", r), Part("syn_novel", n)], "real+aug+synthetic, of the ensemble-agreed samples the 1,000 per class farthest (pixel L2) from their nearest training image of that class"),
        "syn_near": Variant([Part("real", r), Part("syn_near", n)], "real+aug+synthetic, of the ensemble-agreed samples the 1,000 per class nearest (pixel L2) to a training image of that class"),
        "real": Variant([Part("real", CONFIG.batch_size, augment=False)], "real only, no augmentation (goal 2's baseline)"),
        "real_syn": Variant([Part("real", r, augment=False), Part("syn_agree", n, augment=False)], "real+synthetic (ensemble-agreed), no augmentation"),
        "cas": Variant([Part("syn_agree", CONFIG.batch_size, augment=False)], "synthetic only (teacher-agreed samples), no augmentation"),
        "cas_aug": Variant([Part("syn_agree", CONFIG.batch_size)], "synthetic only (teacher-agreed samples), with classical augmentation"),
        "oracle": Variant([Part("real", r), Part("oracle", n)], "ceiling: the slots filled with EXTRA REAL images (tuning half A), scored on half B"),
        **{f"oracle{k}": Variant([Part("real", r), Part(f"oracle{k}", n)], f"the slots filled with {k} extra real images per class (from half A), scored on half B")
           for k in ORACLE_SIZES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="an `augment run` folder on the K=20 split")
    parser.add_argument("--split", type=Path, required=True, help="the split folder (train/ and test/)")
    parser.add_argument("--gan", type=Path, default=None, help="another gan/ folder to sample from (default: RUN/gan)")
    parser.add_argument("--variants", default="base,syn_top,syn_raw,syn_agree,kd_syn,kd_ctrl,kd_all,kd_all_ctrl,oracle")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--latent-std", type=float, default=1.0, help="std of the latents the pools are sampled with (<1: truncation)")
    parser.add_argument("--share", type=float, default=0.25)
    parser.add_argument("--teachers", type=int, default=3, help="real+aug classifiers averaged into the teacher ensemble")
    parser.add_argument("--tag", default="", help="label of this screen in the results file")
    parser.add_argument("--results", type=Path, default=Path("/tmp/bench/screen.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    arrays = storage.load_arrays(args.run / "ingest")
    real = (arrays["train_images"], arrays["train_labels"])
    tune_x, tune_y, classes = tuning_set(args.split, SHARED / "data" / "mnist10k")
    num_classes, size = len(classes), real[0].shape[-1]
    order = np.random.default_rng(0).permutation(len(tune_y))
    half_a, half_b = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    clock, cache = time.perf_counter(), args.results.parent / "teachers"
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(real)
    teachers = [cached_teacher(real, 100 + i, num_classes, size, cache, key) for i in range(args.teachers)]
    generator, spec = load_generator(args.gan or args.run / "gan")
    raw = sample(generator, 3000, num_classes, spec["z_dim"], seed=7, std=args.latent_std)
    raw_p = probabilities(teachers, raw[0])
    agree = raw_p.argmax(1) == raw[1]
    best = lambda score, among: np.concatenate([np.flatnonzero(among & (raw[1] == c))[np.argsort(-score[among & (raw[1] == c)],
                                                kind="stable")[:1000]] for c in range(num_classes)])  # 1,000 per class
    conf = best(raw_p[np.arange(len(raw[1])), raw[1]], np.ones_like(agree))
    pools = {"real": real, "syn_conf": (raw[0][conf], raw[1][conf]), "syn_raw": raw, "syn_agree": (raw[0][agree], raw[1][agree]),
             "oracle": (tune_x[half_a], tune_y[half_a])}
    needed = {part.pool for name in args.variants.split(",") for part in variants(args.share)[name].parts}
    if "syn_top" in needed:  # decoding RUN's 10,000 PNGs and scoring with D cost time: only when a variant reads them
        if args.gan is not None:
            sys.exit("syn_top is RUN's synthetic/ folder, written by RUN's generator; drop it or --gan")
        pools["syn_top"] = load_synthetic(args.run / "synthetic", classes, real[0].shape[1:], None)
    if "syn_dscore" in needed:
        dscore = best(discriminator_scores(args.gan or args.run / "gan", spec, raw), agree)
        pools["syn_dscore"] = (raw[0][dscore], raw[1][dscore])
    if needed & {"syn_novel", "syn_near"}:  # far from every training image of its class: not a copy; near: most real-like
        distance = nearest_real_distance(raw, real)
        novel, near = best(distance, agree), best(-distance, agree)
        print(f"nearest-training-image distance: agreed samples {distance[agree].mean():.0f}, farthest kept {distance[novel].mean():.0f}, "
              f"nearest kept {distance[near].mean():.0f}, tuning images {nearest_real_distance((tune_x, tune_y), real).mean():.0f}", flush=True)
        pools["syn_novel"], pools["syn_near"] = (raw[0][novel], raw[1][novel]), (raw[0][near], raw[1][near])
    for k in ORACLE_SIZES:
        chosen = np.concatenate([half_a[tune_y[half_a] == c][:k] for c in range(num_classes)])
        pools[f"oracle{k}"] = (tune_x[chosen], tune_y[chosen])
    soft = {"real": probabilities(teachers, real[0]), "syn_raw": raw_p}
    ensemble_accuracy = float((probabilities(teachers, tune_x).argmax(1) == tune_y).mean())
    print(f"teachers + pools {time.perf_counter() - clock:.0f} s; ensemble of {args.teachers} on tuning {100 * ensemble_accuracy:.2f}%; "
          f"teacher agrees with {100 * agree.mean():.1f}% of raw samples", flush=True)
    scores = {}
    for name in args.variants.split(","):
        variant, runs = variants(args.share)[name], []
        base_cache = cache / f"{key}_base_{args.seeds}.json"
        if name == "base" and base_cache.is_file():  # the baseline does not depend on the generator
            scores[name] = json.loads(base_cache.read_text())
            continue
        for seed in range(args.seeds):
            start = time.perf_counter()
            predicted = predict(train(variant, pools, soft, seed, num_classes, size), tune_x, torch.device("cpu"))
            correct = predicted == tune_y
            runs.append({"all": float(correct.mean()), "half_b": float(correct[half_b].mean()), "seconds": time.perf_counter() - start})
        scores[name] = runs
        if name == "base":
            base_cache.write_text(json.dumps(runs))
        field_name = "half_b" if name.startswith("oracle") else "all"
        gain = paired_gain([r[field_name] for r in runs], [r[field_name] for r in scores["base"]]) if "base" in scores else None
        row = {"tag": args.tag, "variant": name, "note": variant.note, "share": args.share, "scored_on": field_name,
               "accuracy": [round(100 * r[field_name], 2) for r in runs], "ensemble_accuracy": ensemble_accuracy,
               "gain_vs_base": None if gain is None else {"mean": round(100 * gain["mean"], 2),
                                                          "ci95": gain["ci95"] and [round(100 * v, 2) for v in gain["ci95"]]},
               "seconds": round(sum(r["seconds"] for r in runs), 1), "gan": str(args.gan or args.run / "gan")}
        print(json.dumps(row), flush=True)
        with open(args.results, "a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
