"""Rare classes: does the generator beat class-balanced re-sampling of the real images? The default pipeline
(ingest, train, generate, evaluate with every default but the seeds) on an imbalanced MNIST split, one profile a
call; writes benchmarks/results/rare_classes_<profile>.{json,md}.

    python benchmarks/rare_classes.py --profile steps --seeds 10 --threads 1 --work /tmp/rare-steps

Profiles (training images per class before the validation fifth is carved out; 100 test images per class):
steps 5/10/20/40/80 (two digits each), longtail 300 down to 3 (geometric, 100:1), two_rare two 5-image digits
among eight of 100. The test images are only read by the evaluate stage's final scoring.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import config as config_module
from pipeline import generate, ingest, storage
from pipeline import classifier
from pipeline.evaluate import stage as evaluate_stage
from pipeline.metrics.stats import paired_gain, verdict
from pipeline.gan import train

from imbalanced_split import PROFILES, class_names, link_files, shuffled_files, write_split

BASELINES = ("real+aug", "real+aug+resampled")  # what a practitioner would use instead of synthetic images


def _gain_row(conditions: dict, treated: str, baseline: str) -> dict:
    """Paired over seeds (the runs are in seed order): accuracy and balanced accuracy."""
    a, b = conditions[treated], conditions[baseline]
    row = {"treated": treated, "baseline": baseline}
    for score in ("accuracy", "balanced_accuracy"):
        gain = paired_gain(a[f"{score}_runs"], b[f"{score}_runs"])
        row[score] = {"mean": gain["mean"], "ci95": gain["ci95"], "verdict": verdict(gain)}
    row["worst_class"] = a["worst_class_accuracy_mean"] - b["worst_class_accuracy_mean"]
    return row


def summarize(metrics: dict, counts: dict[str, int]) -> dict:
    conditions = metrics["conditions"]
    rows = {name: {"accuracy": v["accuracy_mean"], "balanced_accuracy": v["balanced_accuracy_mean"],
                   "macro_f1": v["macro_f1_mean"], "worst_class": v["worst_class_accuracy_mean"],
                   "worst_class_name": min(v["per_class_accuracy_mean"], key=v["per_class_accuracy_mean"].get),
                   "rare_classes": float(np.mean([v["per_class_accuracy_mean"][c] for c, n in counts.items() if n == min(counts.values())]))}
            for name, v in conditions.items()}
    candidates = [n for n in conditions if n.startswith("real+aug+") and n not in BASELINES]  # synthetic, with aug
    gains = [_gain_row(conditions, "real+aug+resampled", "real+aug")] if set(BASELINES) <= set(conditions) else []
    gains += [_gain_row(conditions, treated, baseline) for treated in candidates for baseline in BASELINES if baseline in conditions]
    choice = metrics["recommendation"]
    picked = choice.get("setting")
    harm = [_gain_row(conditions, picked, baseline) for baseline in BASELINES if picked and picked != baseline and baseline in conditions]
    return {"conditions": rows, "gains": gains, "recommendation": {"setting": picked, "use_synthetic": choice["use_synthetic"],
            "reason": choice["reason"], "test_accuracy": choice.get("test_result", {}).get("mean"), "vs_baselines": harm}}


def oracle_agreement(mnist: Path, counts: dict[str, int], work: Path, per_class: int = 300, seed: int = 0) -> dict:
    """Class leakage of the synthetic set, judged by an oracle: the evaluation's classifier trained (real+aug) on
    `per_class` MNIST images per class that are in neither the split's training nor its test images (the files after
    them in the split's order), checked on 100 more such images. Returns the oracle's own accuracy there and, per
    class, the share of the synthetic images (as generated, after the teacher filter) the oracle puts in their class."""
    for name in class_names(mnist):
        rest = shuffled_files(mnist, name, seed)[counts[name] + 100:]
        link_files(rest[:per_class], work / "oracle" / "train" / name)
        link_files(rest[per_class:per_class + 100], work / "oracle" / "test" / name)
    stats = ingest.run(config_module.load(None, [f"ingest.dataset={work / 'oracle'}", "ingest.val_fraction=0"]).ingest,
                       work / "oracle-ingest")
    arrays = storage.load_arrays(work / "oracle-ingest")
    classes = [str(c) for c in arrays["classes"]]
    model = classifier.train_classifier(config_module.EvaluateConfig(steps=1000), classifier.REAL_AUG, seed,
                                        (arrays["train_images"], arrays["train_labels"]), None, len(classes), torch.device("cpu"))
    oracle_accuracy = float(np.mean(classifier.predict(model, arrays["test_images"], torch.device("cpu")) == arrays["test_labels"]))
    images, labels = evaluate_stage.load_synthetic(work / "synthetic", classes, arrays["train_images"].shape[1:])
    predicted = classifier.predict(model, images, torch.device("cpu"))
    per_class = {name: float(np.mean(predicted[labels == i] == i)) for i, name in enumerate(classes) if np.any(labels == i)}
    rarest = [name for name, n in counts.items() if n == min(counts.values())]
    return {"oracle_accuracy": oracle_accuracy, "oracle_train_per_class": stats["per_class"][classes[0]]["train"],
            "agreement_per_class": per_class, "agreement_rarest": float(np.mean([per_class[c] for c in rarest if c in per_class])),
            "agreement_all": float(np.mean(predicted == labels))}


def markdown(result: dict) -> str:
    pct = lambda v: f"{100 * v:.2f}"
    ci = lambda g: "n/a" if g["ci95"] is None else f"[{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]"
    lines = [f"# Rare classes, profile `{result['profile']}`", "", f"Command: `{result['command']}`  ",
             f"Training images per class in the split (before the validation fifth): {result['split_counts']}; after it: "
             f"{result['train_counts']}. Test: {result['n_test']} real images. Seeds {result['seeds']}, torch threads "
             f"{result['threads']}, every other setting the default. Seconds: {result['seconds']}. Commit {result['commit']}.",
             "", "| condition | accuracy % | balanced acc. % | macro-F1 % | worst class % | rarest classes % |", "|---|---|---|---|---|---|"]
    for name, v in result["summary"]["conditions"].items():
        lines.append(f"| {name} | {pct(v['accuracy'])} | {pct(v['balanced_accuracy'])} | {pct(v['macro_f1'])} | "
                     f"{100 * v['worst_class']:.1f} ({v['worst_class_name']}) | {100 * v['rare_classes']:.1f} |")
    lines += ["", "| gain (paired over seeds) | accuracy [95% CI] | balanced accuracy [95% CI] | worst class |", "|---|---|---|---|"]
    for g in result["summary"]["gains"] + result["summary"]["recommendation"]["vs_baselines"]:
        lines.append(f"| {g['treated']} vs {g['baseline']} | {100 * g['accuracy']['mean']:+.2f} {ci(g['accuracy'])} | "
                     f"{100 * g['balanced_accuracy']['mean']:+.2f} {ci(g['balanced_accuracy'])} | {100 * g['worst_class']:+.1f} |")
    rec = result["summary"]["recommendation"]
    if result.get("leakage"):
        leak = result["leakage"]
        lines += ["", f"Class leakage (oracle trained on {leak['oracle_train_per_class']} other MNIST images per class, "
                  f"{100 * leak['oracle_accuracy']:.1f}% on 100 more): synthetic images in their own class "
                  f"{100 * leak['agreement_all']:.1f}% overall, {100 * leak['agreement_rarest']:.1f}% in the rarest classes; per class "
                  + ", ".join(f"{c} {100 * v:.0f}%" for c, v in leak["agreement_per_class"].items()) + "."]
    lines += ["", f"Recommendation (validation only): **{rec['setting']}**, test accuracy "
              f"{'n/a' if rec['test_accuracy'] is None else pct(rec['test_accuracy'])}. {rec['reason']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist10k")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="steps")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: two benchmarks can share the 2 cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Override one key (repeatable).")
    parser.add_argument("--leakage", action="store_true", help="also measure class leakage with an oracle (other MNIST images)")
    parser.add_argument("--name", default=None, help="results file stem (default rare_classes_<profile>)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="which MNIST images form the split (0: the split every results file so far used)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"rare-{args.profile}-"))
    counts = write_split(args.mnist, work / "data", seed=args.split_seed, counts_per_class=PROFILES[args.profile])
    config = config_module.load(None, [f"ingest.dataset={work / 'data'}", f"evaluate.seeds={args.seeds}", *args.overrides])
    clock, seconds = time.perf_counter(), {}
    stages = [("ingest", lambda: ingest.run(config.ingest, work / "ingest")),
              ("train", lambda: train.run(config.train, work / "ingest", work / "gan")),
              ("generate", lambda: generate.run(config.generate, work / "gan", work / "synthetic", work / "ingest")),
              ("evaluate", lambda: evaluate_stage.run(config.evaluate, work / "ingest", work / "synthetic", work / "gan", work / "evaluation"))]
    outputs = {}
    for name, run in stages:
        start = time.perf_counter()
        outputs[name] = run()
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    seconds["total"] = round(time.perf_counter() - clock, 1)
    metrics = outputs["evaluate"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    command = "python benchmarks/rare_classes.py " + " ".join(sys.argv[1:])
    result = {"command": command, "profile": args.profile, "split_seed": args.split_seed, "split_counts": counts, "seeds": args.seeds, "threads": args.threads,
              "train_counts": {c: v["train"] for c, v in outputs["ingest"]["per_class"].items()}, "n_test": metrics["n_test"],
              "seconds": seconds, "commit": commit, "summary": summarize(metrics, counts), "gain": metrics["gain"],
              "imbalance_ratio": metrics["imbalance_ratio"], "config": config.to_dict(),
              "validation": metrics["recommendation"].get("validation"),  # every candidate's validation scores
              "accuracy_runs": {name: v["accuracy_runs"] for name, v in metrics["conditions"].items()}}
    if args.leakage:
        result["leakage"] = oracle_agreement(args.mnist, counts, work, seed=args.split_seed)
    stem = args.name or f"rare_classes_{args.profile}"
    storage.write_json(args.out / f"{stem}.json", result)
    storage.write_text(args.out / f"{stem}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
