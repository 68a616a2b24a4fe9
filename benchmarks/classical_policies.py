"""Which classical augmentation policy is strongest? The real+aug classifier of the evaluate stage (default settings,
600 steps) trained under each `evaluate.augment` policy and probability, scored on TUNING images that are in neither
the run's training nor its test images, so the choice of the default never sees a test image.

    python benchmarks/classical_policies.py --data mnist --mnist ../shared/data/mnist10k --seeds 5
    python benchmarks/classical_policies.py --data photos --seeds 3

- mnist: the benchmark's 20-per-class split (../shared/bench/make_split.py, seed 0), ingested as `augment run` does
  (validation carved out of the 20); tuning images: 300 per class from the MNIST files after the split's train and
  test picks.
- photos: benchmarks/sample_photos.py (seed 0) at 64 px, ingested as `augment run` does; tuning images: a second draw
  of crops (seed 1, 3x the counts) from the same three photos, which is as close to "more of the same data" as the
  set allows.
Paired: every policy uses the same seeds, initial weights and batch order; gains are against the current default.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import config as config_module
from pipeline import ingest, storage
from pipeline import classifier
from pipeline.metrics.stats import paired_gain, verdict

from imbalanced_split import class_names, link_files, shuffled_files
from sample_photos import COUNTS, write_photos

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ("affine,elastic", 0.5)  # the reference: the default before this measurement (now elastic@1)
POLICIES = {"mnist": ["affine", "elastic", "affine,elastic", "trivialaugment", "randaugment", "autoaugment"],
            "photos": ["affine", "affine,flip", "affine,elastic", "photo", "trivialaugment", "randaugment", "autoaugment"]}


def mnist_sets(mnist: Path, work: Path, per_class: int = 20, tuning_per_class: int = 300) -> tuple[Path, Path, list[str]]:
    """The split (make_split.py from the shared folder the MNIST images are in) and the tuning folder."""
    split = work / "split"
    subprocess.run([sys.executable, str(mnist.parents[1] / "bench" / "make_split.py"), str(mnist), str(split),
                    "--per-class", str(per_class), "--test-total", "5000", "--seed", "0"], check=True, capture_output=True)
    for name in class_names(mnist):
        rest = shuffled_files(mnist, name, 0)[per_class + 500:]  # after the split's train and test picks
        link_files(rest[:tuning_per_class], work / "tuning" / name)
    return split, work / "tuning", ["ingest.image_size=28"]


def photo_sets(work: Path) -> tuple[Path, Path, list[str]]:
    write_photos(work / "photos", seed=0)
    write_photos(work / "tuning", seed=1, counts={k: 3 * v for k, v in COUNTS.items()})
    return work / "photos", work / "tuning", ["ingest.image_size=64"]


def load_all(folder: Path, work: Path, overrides: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every image of an ImageFolder, decoded as ingest does (its train and test halves put back together)."""
    config = config_module.load(None, [f"ingest.dataset={folder}", "ingest.test_fraction=0.5", "ingest.val_fraction=0", *overrides])
    ingest.run(config.ingest, work / "tuning-ingest")
    arrays = storage.load_arrays(work / "tuning-ingest")
    return (np.concatenate([arrays["train_images"], arrays["test_images"]]),
            np.concatenate([arrays["train_labels"], arrays["test_labels"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(POLICIES), required=True)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist10k")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--probabilities", default="0.5,1.0", help="evaluate.augment_probability values to try")
    parser.add_argument("--settings", nargs="*", default=None, metavar="POLICY@P",
                        help="score only these settings (e.g. elastic@1 affine,elastic@1) instead of the grid")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="results stem (default benchmarks/results/classical_policies_<data>)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or ROOT / "benchmarks" / "results" / f"classical_policies_{args.data}"
    work = Path(tempfile.mkdtemp(prefix="policies-"))
    if args.data == "mnist" and not args.mnist.is_dir():
        sys.exit(f"classical_policies: {args.mnist} is missing (pass --mnist)")
    dataset, tuning, size = mnist_sets(args.mnist, work) if args.data == "mnist" else photo_sets(work)
    base = config_module.load(None, [f"ingest.dataset={dataset}", *size])
    stats = ingest.run(base.ingest, work / "ingest")
    arrays = storage.load_arrays(work / "ingest")
    real = (arrays["train_images"], arrays["train_labels"])
    tuning_x, tuning_y = load_all(tuning, work, size)
    classes = len(arrays["classes"])
    device = torch.device("cpu")
    settings = [("none", 1.0)] + [(p, q) for p in POLICIES[args.data] for q in map(float, args.probabilities.split(","))]
    if args.settings:
        settings = [(text.rpartition("@")[0], float(text.rpartition("@")[2])) for text in args.settings]
    if DEFAULT not in settings:
        settings.append(DEFAULT)
    results, clock = {}, time.perf_counter()
    for policy, probability in settings:
        name = f"{policy}@{probability:g}"
        evaluate = config_module.EvaluateConfig(augment="affine" if policy == "none" else policy, augment_probability=probability)
        recipe = classifier.Recipe(augment=policy != "none")  # real, or real+aug
        runs, started = [], time.perf_counter()
        for seed in range(args.seeds):
            model = classifier.train_classifier(evaluate, recipe, seed, real, None, classes, device)
            runs.append(float(np.mean(classifier.predict(model, tuning_x, device) == tuning_y)))
        results[name] = {"policy": policy, "probability": probability, "runs": runs, "mean": float(np.mean(runs)),
                         "std": float(np.std(runs, ddof=1)) if len(runs) > 1 else 0.0,
                         "seconds_per_run": (time.perf_counter() - started) / args.seeds}
        print(f"{name:28s} {100 * np.mean(runs):6.2f}%  ({results[name]['seconds_per_run']:.0f} s/run)", flush=True)
    default = results[f"{DEFAULT[0]}@{DEFAULT[1]:g}"]["runs"]
    for row in results.values():
        gain = paired_gain(row["runs"], default)
        row["gain_vs_default"] = {"mean": gain["mean"], "ci95": gain["ci95"], "verdict": verdict(gain)}
    best = max(results, key=lambda n: results[n]["mean"])
    result = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]), "data": args.data,
              "n_train": int(len(real[1])), "n_tuning": int(len(tuning_y)), "per_class_train": stats["per_class"],
              "seeds": args.seeds, "threads": torch.get_num_threads(), "seconds": time.perf_counter() - clock,
              "default": f"{DEFAULT[0]}@{DEFAULT[1]:g}", "best": best, "results": results}
    storage.write_json(out.with_suffix(".json"), result)
    storage.write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# Classical augmentation policies on {result['data']}", "", f"`{result['command']}`", "",
             f"{result['n_train']} real training images, {result['n_tuning']} tuning images (not the run's test images), "
             f"{result['seeds']} paired seeds, {result['threads']} torch thread(s), {result['seconds']:.0f} s.", "",
             f"| policy @ probability | tuning accuracy % | vs {result['default']} (points, 95% CI) | verdict | s/run |",
             "|---|---|---|---|---|"]
    for name, row in sorted(result["results"].items(), key=lambda kv: -kv[1]["mean"]):
        gain = row["gain_vs_default"]
        ci = "" if gain["ci95"] is None else f" [{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
        lines.append(f"| {name} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {100 * gain['mean']:+.2f}{ci} | "
                     f"{gain['verdict']} | {row['seconds_per_run']:.0f} |")
    lines += ["", f"Best on the tuning images: **{result['best']}**."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
