"""How often does the recommendation say "use synthetic data" when it does not help, and what does a sound test cost?

One evaluation with many paired seeds on the 20-per-class MNIST split (validation: 4 images per class), for three
synthetic sets beside real+aug, each at the two default shares (0.5 and 0.25):
  * gan:    the tool's own default generator's images (their 10-seed test gain is not significant),
  * copies: the real training images again, posing as synthetic: a deliberately useless set (a +aug batch with them
            is exactly a real+aug batch), so its true gain is zero by construction,
  * extra:  300 more REAL MNIST images per class, outside the split: a set that truly helps (the price side).
Then, many times: draw a subset of 3 (or 5) seeds and re-draw the validation images (a class-stratified
bootstrap), and ask the recommendation rule. Reported: how often each rule picks a synthetic setting; for copies and
gan that is the false-recommendation rate, for extra the detection rate. The old rule (validation images as the
unit, seeds averaged away) is re-implemented here as it stood before; the new one is pipeline.evaluate.recommend.

    python benchmarks/verdict_calibration.py --seeds 20 --draws 2000 --threads 1 \
        --ingest /tmp/budget-k20-w128/ingest --synthetic /tmp/budget-k20-w128/snapshots/step_002000/synthetic

Without --ingest/--synthetic it makes the split (../shared/bench/make_split.py) and runs the default ingest, train
and generate first. Writes benchmarks/results/verdict_calibration.{json,md} (and the raw per-seed correctness in
verdict_calibration_runs.npz, so the simulation can be re-run with --reuse).
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import config as config_module
from pipeline import generate, ingest, storage
from pipeline.classifier import Recipe, predict, train_classifier
from pipeline.evaluate.recommend import recommend
from pipeline.evaluate.stage import load_synthetic
from pipeline.gan import train
from pipeline.metrics.stats import paired_gain, verdict

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARES = (0.5, 0.25)
SETS = ("gan", "copies", "extra")


def extra_real(mnist: Path, classes: list[str], per_class: int, skip: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` MNIST images per class that make_split (seed 0) put in neither train nor test: the files after the
    first `skip` of each class's seeded order, decoded as ingest decodes them."""
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (mnist / name).iterdir() if p.is_file())
        random.Random(f"0:{name}").shuffle(files)  # make_split.py's order: train first, then test
        for path in files[skip:skip + per_class]:
            images.append(ingest.decode(path, size, "center_crop")[..., :1].transpose(2, 0, 1))
            labels.append(index)
    return np.stack(images), np.array(labels, dtype=np.int64)


def evaluate_runs(config, real, val, test, sets: dict, seeds: int, device) -> dict:
    """Per condition: seeds x n_val validation correctness and the seeds' test accuracies."""
    conditions = [("real+aug", Recipe(augment=True), None)]
    conditions += [(f"{name}@{share:g}", Recipe(synthetic=True, augment=True, share=share), name)
                   for name in sets for share in SHARES]
    result = {name: {"val": [], "test": []} for name, _, _ in conditions}
    clock = time.perf_counter()
    for seed in range(seeds):
        for name, condition, source in conditions:
            model = train_classifier(config, condition, seed, real, sets.get(source), 10, device)
            result[name]["val"].append(predict(model, val[0], device) == val[1])
            result[name]["test"].append(float(np.mean(predict(model, test[0], device) == test[1])))
        print(f"seed {seed}: {time.perf_counter() - clock:.0f} s", flush=True)
    return {name: {"val": np.array(v["val"], dtype=float), "test": np.array(v["test"])} for name, v in result.items()}


def old_rule(val: dict[str, np.ndarray], labels: np.ndarray, candidates: list[str]) -> bool:
    """The rule before this change: the best synthetic candidate (by balanced accuracy) against real+aug, paired over
    the validation IMAGES (each image's correctness averaged over the seeds), 95% t-interval, no seed variance."""
    _, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weight = len(labels) / (len(counts) * counts[index])
    per_image = {n: val[n].mean(axis=0) for n in ["real+aug", *candidates]}
    challenger = max(candidates, key=lambda n: (float(np.mean(weight * per_image[n])), -float(n.split("@")[1])))
    gain = paired_gain((weight * per_image[challenger]).tolist(), (weight * per_image["real+aug"]).tolist())
    return verdict(gain) == "significant gain"


def new_rule(val: dict[str, np.ndarray], labels: np.ndarray, candidates: list[str]) -> tuple[bool, float | None]:
    names = ["real+aug", *candidates]
    choice = recommend({n: val[n] for n in names}, {n: 0.0 if n == "real+aug" else float(n.split("@")[1]) for n in names},
                       {n: True for n in names}, val_labels=labels)
    return choice["use_synthetic"], choice["validation"]["gain"].get("min_detectable_gain")


def simulate(runs: dict, labels: np.ndarray, seeds_per_draw: int, draws: int, rng: np.random.Generator) -> dict:
    """Rates over `draws` re-drawn (seed subset, validation images) pairs, for each synthetic set and each rule."""
    total = next(iter(runs.values()))["val"].shape[0]
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    tally = {name: {"old": 0, "new": 0, "detectable": []} for name in SETS}
    for _ in range(draws):
        seeds = rng.choice(total, seeds_per_draw, replace=False)
        images = np.concatenate([rng.choice(rows, len(rows), replace=True) for rows in classes])
        val = {name: run["val"][np.ix_(seeds, images)] for name, run in runs.items()}
        for name in SETS:
            candidates = [f"{name}@{share:g}" for share in SHARES]
            tally[name]["old"] += old_rule(val, labels[images], candidates)
            use, detectable = new_rule(val, labels[images], candidates)
            tally[name]["new"] += use
            if detectable is not None:
                tally[name]["detectable"].append(detectable)
    return {name: {"old": t["old"] / draws, "new": t["new"] / draws,
                   "median_detectable_points": 100 * float(np.median(t["detectable"])) if t["detectable"] else None}
            for name, t in tally.items()}


def test_gains(runs: dict) -> dict:
    base = runs["real+aug"]["test"]
    return {name: {**(gain := paired_gain(run["test"].tolist(), base.tolist())), "verdict": verdict(gain)}
            for name, run in runs.items() if name != "real+aug"}


def markdown(result: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}%"
    lines = ["# Is the recommendation fooled by noise? (verdict calibration)", "", f"Command: `{result['command']}`  ",
             f"{result['seeds']} paired classifier seeds per condition on the 20-per-class MNIST split ({result['n_val']} "
             f"validation images, {result['n_test']} test images); {result['draws']} draws per row; commit {result['commit']}; "
             f"{result['seconds']:.0f} s.", "", "## Test gains over real+aug, all seeds (the ground truth)", "",
             "| setting | gain (points) | 95% CI | verdict |", "|---|---|---|---|"]
    for name, gain in result["test_gains"].items():
        lines.append(f"| {name} | {100 * gain['mean']:+.2f} | [{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}] | {gain['verdict']} |")
    lines += ["", "## How often a synthetic setting is recommended", "",
              "| seeds per run | synthetic set | old rule (images as the unit) | new rule (seeds and images, Bonferroni) | "
              "median smallest detectable validation gain, new rule (points) |", "|---|---|---|---|---|"]
    for seeds, rates in result["rates"].items():
        for name, rate in rates.items():
            detectable = "n/a" if rate["median_detectable_points"] is None else f"{rate['median_detectable_points']:.1f}"
            lines.append(f"| {seeds} | {name} | {pct(rate['old'])} | {pct(rate['new'])} | {detectable} |")
    lines += ["", "For `copies` (true gain zero by construction) and `gan` (not significant on test) every recommendation "
              "is a false one; for `extra` (a real gain) the rate is the detection rate."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=SHARED / "data" / "mnist10k")
    parser.add_argument("--work", type=Path, default=Path("/tmp/verdict-calibration"))
    parser.add_argument("--ingest", type=Path, help="an ingest folder of the 20/class split (default: made here)")
    parser.add_argument("--synthetic", type=Path, help="the default generator's synthetic folder for it")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600, help="classifier steps (the evaluate default; fewer only to smoke-test)")
    parser.add_argument("--reuse", action="store_true", help="re-run only the simulation on the saved per-seed runs")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    raw = args.results / "verdict_calibration_runs.npz"
    ingest_dir = args.ingest or args.work / "ingest"
    if not args.ingest:
        split = args.work / "split"
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_split.py"), str(args.mnist), str(split), "--per-class",
                        "20", "--test-total", "5000", "--seed", "0"], check=True)
        config = config_module.load(None, [f"ingest.dataset={split}"])
        ingest.run(config.ingest, ingest_dir)
        train.run(config.train, ingest_dir, args.work / "gan")
        generate.run(config.generate, args.work / "gan", args.work / "synthetic", ingest_dir)
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    real = (arrays["train_images"], arrays["train_labels"])
    val, test = (arrays["val_images"], arrays["val_labels"]), (arrays["test_images"], arrays["test_labels"])
    if args.reuse:
        with np.load(raw, allow_pickle=False) as saved:
            runs = {name: {"val": saved[f"{name}/val"], "test": saved[f"{name}/test"]} for name in
                    sorted({key.rsplit("/", 1)[0] for key in saved.files})}
    else:
        evaluate = config_module.EvaluateConfig(steps=args.steps)
        sets = {"gan": load_synthetic(args.synthetic or args.work / "synthetic", classes, real[0].shape[1:],
                                      evaluate.max_synthetic_per_class),
                "copies": real,
                "extra": extra_real(args.mnist, classes, 300, 20 + 500, real[0].shape[-1])}
        runs = evaluate_runs(evaluate, real, val, test, sets, args.seeds, torch.device("cpu"))
        storage.real_dir(args.results)
        with storage.atomic_path(raw) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{f"{n}/{k}": v for n, run in runs.items() for k, v in run.items()})
    rng = np.random.default_rng(0)
    total = next(iter(runs.values()))["val"].shape[0]
    rates = {seeds: simulate(runs, val[1], seeds, args.draws, rng) for seeds in (3, 5) if seeds <= total}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"command": "python benchmarks/verdict_calibration.py " + " ".join(sys.argv[1:]), "commit": commit,
              "seeds": int(next(iter(runs.values()))["val"].shape[0]), "draws": args.draws, "n_val": int(len(val[1])),
              "n_test": int(len(test[1])), "seconds": time.perf_counter() - clock, "rates": rates, "test_gains": test_gains(runs)}
    storage.write_json(args.results / "verdict_calibration.json", result)
    storage.write_text(args.results / "verdict_calibration.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
