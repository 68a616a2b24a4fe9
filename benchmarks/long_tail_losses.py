"""Issue #35 item 0, on the project's own imbalanced profiles: Balanced Softmax (real+aug+bsm) against class-balanced
re-sampling (real+aug+resampled) and plain batches (real+aug), the evaluate stage's classifier with every default,
paired seeds; and what the recommendation rule (chosen on validation only, the level-on-validation tie going to the
better validation worst class) picks, with its test cost. No generator: these are the non-synthetic candidates.

    python benchmarks/long_tail_losses.py --seeds 10 --threads 2

Profiles (benchmarks/imbalanced_split.py, split seed 0, 100 test images per class): steps 5/10/20/40/80, longtail
300 down to 3 (100:1), two_rare (two 5-image classes among eight of 100); ingest carves the validation fifth out.
Writes benchmarks/results/long_tail_losses.{json,md}. The test images are scored only; nothing is tuned on them.
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
from pipeline import ingest, storage
from pipeline.classifier import predict, train_classifier
from pipeline.evaluate import stage as evaluate_stage
from pipeline.evaluate.conditions import CONDITIONS

sys.path.insert(0, str(Path(__file__).parent))
from imbalanced_split import PROFILES, write_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("real+aug", "real+aug+resampled", "real+aug+bsm")
BASELINE = "real+aug+resampled"


def profile_result(mnist: Path, profile: str, work: Path, seeds: int, overrides: list[str]) -> dict:
    counts = write_split(mnist, work / profile / "data", seed=0, counts_per_class=PROFILES[profile])
    config = config_module.load(None, [f"ingest.dataset={work / profile / 'data'}", f"evaluate.seeds={seeds}", *overrides])
    stats = ingest.run(config.ingest, work / profile / "ingest")
    arrays = storage.load_arrays(work / profile / "ingest")
    classes = [str(c) for c in arrays["classes"]]
    real = (arrays["train_images"], arrays["train_labels"])
    val, test = (arrays["val_images"], arrays["val_labels"]), (arrays["test_images"], arrays["test_labels"])
    conditions = [c for c in CONDITIONS if c.name in NAMES]
    device, records, clock = torch.device("cpu"), [], time.perf_counter()
    for seed in range(seeds):
        for condition in conditions:
            model = train_classifier(config.evaluate, condition.recipe, seed, real, None, len(classes), device)
            scores = evaluate_stage._scores(predict(model, test[0], device), test[1], len(classes))
            records.append({"seed": seed, "condition": condition.name, "val_correct": predict(model, val[0], device) == val[1],
                            **scores})
        print(f"{profile}: seed {seed} done at {time.perf_counter() - clock:.0f} s", flush=True)
    summary = {c.name: evaluate_stage._condition_summary([r for r in records if r["condition"] == c.name], classes)
               for c in conditions}
    rarest = [i for i, name in enumerate(classes) if counts[name] == min(counts.values())]
    rows = {name: {"accuracy": s["accuracy_mean"], "worst_class": s["worst_class_accuracy_mean"],
                   "rarest_classes": float(np.mean([list(s["per_class_accuracy_mean"].values())[i] for i in rarest]))}
            for name, s in summary.items()}
    gains = {}
    for treated, baseline in (("real+aug+bsm", BASELINE), (BASELINE, "real+aug"), ("real+aug+bsm", "real+aug")):
        gain = evaluate_stage._gain(records, treated, baseline, classes)
        gains[f"{treated} vs {baseline}"] = {"mean": gain["mean"], "ci95": gain["ci95"], "verdict": gain["verdict"],
                                             "worst_class": gain["worst_class_gain"]["mean"],
                                             "worst_class_ci95": gain["worst_class_gain"]["ci95"]}
    choice = evaluate_stage._recommendation(records, conditions, config.evaluate, classes, real[1], val[1])
    picked = choice.get("setting")
    return {"split_counts": counts, "train_counts": {c: v["train"] for c, v in stats["per_class"].items()},
            "n_val": int(len(val[1])), "n_test": int(len(test[1])), "seconds": round(time.perf_counter() - clock, 1),
            "conditions": rows, "gains": gains,
            "recommendation": {"setting": picked, "reason": choice.get("reason"),
                               "test_accuracy": rows[picked]["accuracy"] if picked else None,
                               "test_worst_class": rows[picked]["worst_class"] if picked else None},
            "accuracy_runs": {n: s["accuracy_runs"] for n, s in summary.items()}}


def markdown(result: dict) -> str:
    pct = lambda v: f"{100 * v:.2f}"
    ci = lambda low_high: "n/a" if low_high is None else f"[{100 * low_high[0]:+.2f}, {100 * low_high[1]:+.2f}]"
    lines = ["# Long-tail losses against re-sampling on the imbalanced profiles", "", f"Command: `{result['command']}`  ",
             f"{result['seeds']} paired seeds, torch threads {result['threads']}, every other setting the default; commit "
             f"{result['commit']}. Test images: 100 per class (balanced, so accuracy is balanced accuracy).", ""]
    for profile, r in result["profiles"].items():
        lines += [f"## `{profile}`", "", f"Training images per class after the validation fifth: {r['train_counts']}; "
                  f"{r['n_val']} validation images; {r['seconds']} s.", "",
                  "| condition | test accuracy % | worst class % (lowest class mean over seeds) | rarest classes % |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {pct(v['accuracy'])} | {pct(v['worst_class'])} | {pct(v['rarest_classes'])} |"
                  for name, v in r["conditions"].items()]
        lines += ["", "| paired over seeds | accuracy gain [95% CI] | verdict | worst-class gain per seed [95% CI] |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {100 * g['mean']:+.2f} {ci(g['ci95'])} | {g['verdict']} | "
                  f"{100 * g['worst_class']:+.1f} {ci(g['worst_class_ci95'])} |" for name, g in r["gains"].items()]
        rec = r["recommendation"]
        lines += ["", f"Recommendation (validation only): **{rec['setting']}**, test accuracy "
                  f"{'n/a' if rec['test_accuracy'] is None else pct(rec['test_accuracy'])}, worst class "
                  f"{'n/a' if rec['test_worst_class'] is None else pct(rec['test_worst_class'])}. {rec['reason']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist10k")
    parser.add_argument("--profiles", default="steps,longtail,two_rare")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (repeatable)")
    args = parser.parse_args()
    if not args.mnist.is_dir():
        raise SystemExit(f"MNIST ImageFolder not found at {args.mnist} (--mnist)")
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="long-tail-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"command": "python benchmarks/long_tail_losses.py " + " ".join(sys.argv[1:]), "commit": commit,
              "seeds": args.seeds, "threads": args.threads, "profiles": {}}
    for profile in args.profiles.split(","):
        result["profiles"][profile] = profile_result(args.mnist, profile, work, args.seeds, args.overrides)
        storage.write_json(args.results / "long_tail_losses.json", result)  # partial results survive
        storage.write_text(args.results / "long_tail_losses.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
