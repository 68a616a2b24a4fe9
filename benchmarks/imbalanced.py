"""Imbalanced MNIST (5/10/20/40/80 training images per class): does --balance help the rare classes?

Trains one GAN, generates two synthetic sets (uniform per_class, and balanced up to the largest class), trains the
evaluate stage's classifier under paired seeds, and writes benchmarks/results/imbalanced.{json,md}.

    python benchmarks/imbalanced.py --mnist ../shared/data/mnist10k
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from pipeline import config as config_module
from pipeline import generate, ingest, storage
from pipeline.device import pick_device
from pipeline.classifier import predict, train_classifier
from pipeline.evaluate.conditions import BY_NAME
from pipeline.evaluate.stage import load_synthetic
from pipeline.metrics.stats import paired_gain
from pipeline.gan import train

from imbalanced_split import write_split

# (label, classifier condition, synthetic set); each treated run is paired with its baseline by seed.
RUNS = [("real", "real", None), ("real+synthetic uniform", "real+synthetic", "uniform"),
        ("real+synthetic balanced", "real+synthetic", "balanced")]
AUG_RUNS = [("real+aug", "real+aug", None), ("real+aug+synthetic uniform", "real+aug+synthetic", "uniform"),
            ("real+aug+synthetic balanced", "real+aug+synthetic", "balanced")]
BASELINE = {"real+synthetic uniform": "real", "real+synthetic balanced": "real",
            "real+aug+synthetic uniform": "real+aug", "real+aug+synthetic balanced": "real+aug"}


def score(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> dict:
    per_class = np.array([np.mean(predicted[truth == c] == c) for c in range(num_classes)])
    return {"accuracy": float(np.mean(predicted == truth)), "per_class": per_class,
            "macro_f1": float(f1_score(truth, predicted, labels=list(range(num_classes)), average="macro", zero_division=0))}


def summarize(records: list[dict], classes: list[str], train_counts: dict, runs_done: list) -> dict:
    """Per condition: means over seeds; worst class = lowest per-class accuracy averaged over seeds (as in report.html)."""
    result = {}
    for label, *_ in runs_done:
        runs = [r for r in records if r["run"] == label]
        per_class = np.mean([r["per_class"] for r in runs], axis=0)
        result[label] = {"accuracy": float(np.mean([r["accuracy"] for r in runs])), "macro_f1": float(np.mean([r["macro_f1"] for r in runs])),
                         "worst_class_accuracy": float(per_class.min()), "worst_class": classes[int(per_class.argmin())],
                         "per_class_accuracy": dict(zip(classes, per_class.round(4).tolist())), "accuracy_runs": [r["accuracy"] for r in runs]}
        if label in BASELINE:
            base = sorted((r for r in records if r["run"] == BASELINE[label]), key=lambda r: r["seed"])
            runs = sorted(runs, key=lambda r: r["seed"])
            gain = paired_gain([r["accuracy"] for r in runs], [r["accuracy"] for r in base])
            result[label]["gain_vs"] = BASELINE[label]
            result[label]["accuracy_gain"] = {"mean": gain["mean"], "ci95": gain["ci95"]}
            result[label]["macro_f1_gain"] = float(np.mean([a["macro_f1"] - b["macro_f1"] for a, b in zip(runs, base)]))
            result[label]["worst_class_gain"] = result[label]["worst_class_accuracy"] - result[BASELINE[label]]["worst_class_accuracy"]
            by_count: dict[int, list[float]] = {}
            for c, name in enumerate(classes):
                by_count.setdefault(train_counts[name], []).append(float(np.mean([a["per_class"][c] - b["per_class"][c] for a, b in zip(runs, base)])))
            result[label]["gain_by_train_count"] = {str(k): round(float(np.mean(v)), 4) for k, v in sorted(by_count.items())}
    return result


def markdown(result: dict, command: str) -> str:
    rows = ["| condition | accuracy % | macro-F1 % | worst class % | gain vs baseline (acc / macro-F1 / worst class, points) | "
            + " | ".join(f"gain, {k}-image classes" for k in result["train_counts_distinct"]) + " |",
            "|---|---|---|---|---|" + "---|" * len(result["train_counts_distinct"])]
    for label, v in result["conditions"].items():
        gain = (f"{100 * v['accuracy_gain']['mean']:+.2f} / {100 * v['macro_f1_gain']:+.2f} / {100 * v['worst_class_gain']:+.1f}"
                if "gain_vs" in v else "baseline")
        by_count = [f"{100 * v['gain_by_train_count'][str(k)]:+.1f}" if "gain_vs" in v else "" for k in result["train_counts_distinct"]]
        rows.append(f"| {label} | {100 * v['accuracy']:.2f} | {100 * v['macro_f1']:.2f} | {100 * v['worst_class_accuracy']:.1f} "
                    f"({v['worst_class']}) | {gain} | " + " | ".join(by_count) + " |")
    meta = (f"Command: `{command}`  \nTrain counts per class: {result['train_counts']}; test: {result['n_test']} real images. "
            f"Synthetic: uniform {result['synthetic_counts']['uniform']}, balanced {result['synthetic_counts']['balanced']}.  \n"
            f"Seeds {result['seeds']}, classifier steps {result['classifier_steps']}, GAN steps {result['gan_steps']}, torch threads "
            f"{result['threads']}. Seconds: {result['seconds']}. Load average before {result['loadavg_before']}, after {result['loadavg_after']}.")
    return "# Imbalanced MNIST benchmark\n\n" + meta + "\n\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist10k")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--gan-steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--classifier-steps", type=int, default=400)
    parser.add_argument("--with-aug", action="store_true", help="also the classical-augmentation conditions (twice the time)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before, clock, seconds = os.getloadavg(), time.perf_counter(), {}
    work = args.work or Path(tempfile.mkdtemp(prefix="imbalanced-"))
    counts = write_split(args.mnist, work / "data")
    config = config_module.load(None, [f"ingest.dataset={work / 'data'}", f"train.steps={args.gan_steps}", "train.track_quality=false",
                                       f"evaluate.seeds={args.seeds}", f"evaluate.steps={args.classifier_steps}"])
    ingest.run(config.ingest, work / "ingest")
    seconds["ingest"] = round(time.perf_counter() - clock, 1)
    train.run(config.train, work / "ingest", work / "gan")
    seconds["gan"] = round(time.perf_counter() - clock - sum(seconds.values()), 1)
    generated = {"uniform": generate.run(config.generate, work / "gan", work / "uniform", work / "ingest")["generated"],
                 "balanced": generate.run(config_module.apply_overrides(config, ["generate.balance=true", "generate.per_class=0"]).generate,
                                          work / "gan", work / "balanced", work / "ingest")["generated"]}
    arrays = storage.load_arrays(work / "ingest")
    classes = [str(c) for c in arrays["classes"]]
    real, test = (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])
    synthetic = {name: load_synthetic(work / name, classes, real[0].shape[1:]) for name in generated}
    seconds["generate"] = round(time.perf_counter() - clock - sum(seconds.values()), 1)
    device, records, runs_done = pick_device("cpu"), [], RUNS + (AUG_RUNS if args.with_aug else [])
    for seed in range(args.seeds):
        for label, condition, pool in runs_done:
            model = train_classifier(config.evaluate, BY_NAME[condition].recipe, seed, real, synthetic.get(pool), len(classes), device)
            records.append({"run": label, "seed": seed, **score(predict(model, test[0], device), test[1], len(classes))})
            print(f"seed {seed} {label:30s} accuracy {records[-1]['accuracy']:.4f}", flush=True)
    seconds["classifiers"] = round(time.perf_counter() - clock - sum(seconds.values()), 1)
    seconds["total"] = round(time.perf_counter() - clock, 1)
    command = "python benchmarks/imbalanced.py " + " ".join(sys.argv[1:])
    result = {"command": command, "train_counts": counts, "train_counts_distinct": sorted(set(counts.values())),
              "n_test": int(len(test[1])), "synthetic_counts": generated, "seeds": args.seeds, "classifier_steps": args.classifier_steps,
              "gan_steps": args.gan_steps, "threads": args.threads, "seconds": seconds,
              "conditions": summarize(records, classes, counts, runs_done), "config": config.to_dict(),
              "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    storage.write_json(args.out / "imbalanced.json", result)
    storage.write_text(args.out / "imbalanced.md", markdown(result, command))
    print(markdown(result, command))


if __name__ == "__main__":
    main()
