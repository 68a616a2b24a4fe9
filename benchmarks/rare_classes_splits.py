"""Is the recommendation, chosen on one validation split, reliable across splits? Reads `rare_classes.py` results run
with different `--split-seed`s (each a fresh draw of which MNIST images are training, validation and test images,
with its own GAN) and tabulates, per split: the pick, its test accuracy, the better of the two baselines on test
(real+aug, real+aug+resampled) and the pick's paired gain over it, and whether the pick was the best condition on
test. Beside the tool's rule (a synthetic candidate replaces the best setting without synthetic data only when its
validation gain is significant) it scores the naive rule, the best balanced accuracy on validation whatever the
evidence, to show what the significance requirement is worth. Writes one markdown table.

    python benchmarks/rare_classes_splits.py RESULTS.json ... --out benchmarks/results/rare_classes_splits.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rare_classes import BASELINES

from pipeline import storage
from pipeline.metrics.stats import paired_gain


def row(result: dict) -> dict:
    summary = result["summary"]
    conditions, rec = summary["conditions"], summary["recommendation"]
    picked = rec["setting"]
    better = max(BASELINES, key=lambda name: conditions[name]["accuracy"])
    best = max(conditions, key=lambda name: conditions[name]["accuracy"])
    runs = result["accuracy_runs"]
    vs_better = lambda name: None if name == better else paired_gain(runs[name], runs[better])
    validation = result["validation"]
    scores = validation["balanced_accuracy"]
    challenger, default = validation["best_with_synthetic"], validation["best_without_synthetic"]
    naive = challenger if challenger and scores[challenger] > scores[default] else default
    return {"profile": result["profile"], "split_seed": result.get("split_seed", 0), "seeds": result["seeds"], "picked": picked,
            "picked_accuracy": conditions[picked]["accuracy"], "better_baseline": better,
            "better_baseline_accuracy": conditions[better]["accuracy"],
            "gain": vs_better(picked), "best_on_test": best, "best_accuracy": conditions[best]["accuracy"],
            "naive": naive, "naive_accuracy": conditions[naive]["accuracy"], "naive_gain": vs_better(naive),
            "reason": rec["reason"]}


def _harm(gain: dict | None) -> bool:
    return gain is not None and gain["ci95"] is not None and gain["ci95"][1] < 0


def _gain(gain: dict | None) -> str:
    if gain is None:
        return "the same condition"
    text = f"{100 * gain['mean']:+.2f} [{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
    return f"**{text}**" if _harm(gain) else text


def markdown(rows: list[dict], command: str) -> str:
    pct = lambda v: f"{100 * v:.2f}"
    lines = ["# Rare classes: the recommendation across repeated splits", "", f"Command: `{command}`", "",
             "Each row is one split (`rare_classes.py --split-seed S`): its own training, validation and test images, "
             "its own GAN, and the paired classifier seeds shown. Harm means the pick is significantly worse on test "
             "than the better of real+aug and real+aug+resampled (its 95% interval below 0), in bold.", "",
             "| profile | split | seeds | better baseline on test (%) | the tool's pick (%) | pick vs better baseline [95% CI] | "
             "naive pick: best on validation (%) | naive vs better baseline [95% CI] | best on test (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['profile']} | {r['split_seed']} | {r['seeds']} | {r['better_baseline']} ({pct(r['better_baseline_accuracy'])}) | "
                     f"{r['picked']} ({pct(r['picked_accuracy'])}) | {_gain(r['gain'])} | {r['naive']} ({pct(r['naive_accuracy'])}) | "
                     f"{_gain(r['naive_gain'])} | {r['best_on_test']} ({pct(r['best_accuracy'])}) |")
    harmed = lambda key: sum(1 for r in rows if _harm(r[key]))
    best = sum(1 for r in rows if r["picked"] == r["best_on_test"])
    lines += ["", f"Splits: {len(rows)}. The tool's pick was significantly worse on test than the better baseline on "
              f"{harmed('gain')} and the best condition on test on {best}; the naive pick was significantly worse on "
              f"{harmed('naive_gain')}.", "",
              "The recommendation's reasons, from validation alone:", ""]
    lines += [f"- {r['profile']} split {r['split_seed']}: {r['reason']}" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rare_classes_splits.md")
    args = parser.parse_args()
    rows = sorted((row(json.loads(path.read_text())) for path in args.results), key=lambda r: (r["profile"], r["split_seed"]))
    text = markdown(rows, "python benchmarks/rare_classes_splits.py " + " ".join(sys.argv[1:]))
    storage.write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
