"""Issue #33: does a cross-validated recommendation (evaluate.folds=5) find a real gain that 40 validation images
miss, and how often does it find a false one? Repeated draws of the 20-per-class MNIST setting, each judged by the
pipeline's own stages and its cross-validation (pipeline.evaluate.crossval) with two outside sources:

  * extra: 300 more REAL MNIST images per class (a source with a real gain: +2.07 on test in outside_sources.md),
  * ours:  10,000 images of the tool's default generator (2,000 steps, benchmarks/results/budget_k20_w128.md), trained
           on 20 images per class that no draw uses: a GAN "made elsewhere". Its test gain was level with real+aug
           (-0.35 [-0.91, +0.22]), so recommending it is the false finding to count.

The MNIST folder is partitioned once: the ours-GAN's 20 training images per class (make_split.py seed 0's training
files), 300 per class for `extra`, and the rest, from which draw d deals a fresh 20-per-class dataset and 500 test
images per class (seeded by d). So no source shares an image with any draw's pool or test set.

For every draw: ingest and sources stages (read, leak check, copy index) as `augment evaluate` runs them; then for
every seed and candidate (real+aug, real+aug+extra, real+aug+ours; the default share):
  - the cross-validated decision (evaluate.folds): per seed, folds dealt afresh, a classifier per fold trained on the
    other folds and scored on its own; pipeline.evaluate.recommend on seeds x 200 pool images (Bonferroni over the 2
    sources), and each source's own crossed 97.5% interval on the pool;
  - the run's own classifiers (what evaluate.folds=0 trains: the 160 training images, the same seed), scored on the 40
    validation images: the validation-only decision, and on the 5,000 test images: the truth, each source's test gain
    over real+aug (crossed 95% interval over seeds and test images). The truth shares no model with the
    cross-validated decision; it does share them with the validation-only one, which can only flatter that rule.
A false finding is a recommendation of `ours`, whatever its test gain; each draw's truth is listed beside it.

    python benchmarks/cv_recommendation.py --draws 5 --seeds 3 --threads 1 --ours /tmp/budget-k20-w128/snapshots/step_002000/synthetic

Writes benchmarks/results/cv_recommendation.{json,md} after every draw (partial results survive). Run it again with a
larger --draws to add draws: the finished ones are kept when every other option (--seeds, --folds, --ours, --set)
matches, each draw records the commit it ran at, and the draws are seeded by their number, so draw d is the same
dataset in every call.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import config as config_module  # noqa: E402
from pipeline import storage  # noqa: E402
from pipeline.classifier import predict, train_classifier  # noqa: E402
from pipeline.device import pick_device  # noqa: E402
from pipeline.evaluate import crossval  # noqa: E402
from pipeline.evaluate import stage as evaluate_stage  # noqa: E402
from pipeline.evaluate.conditions import conditions_for  # noqa: E402
from pipeline.evaluate.recommend import class_weights, recommend  # noqa: E402
from pipeline.metrics.stats import crossed_gain, verdict  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402
from imbalanced_split import link_files  # noqa: E402  (benchmarks/ beside this file: hard links, copies across devices)
from provenance import commit_of  # noqa: E402

SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
EXTRA_PER_CLASS, TRAIN_PER_CLASS, TEST_PER_CLASS = 300, 20, 500
BASELINE, SOURCES = "real+aug", ("extra", "ours")


def partition(mnist: Path) -> dict[str, dict[str, list[Path]]]:
    """class -> {'gan': the ours-GAN's training files, 'extra': the extra source's, 'rest': the draws' files}."""
    parts = {}
    for name in sorted(d.name for d in mnist.iterdir() if d.is_dir()):
        files = sorted(p for p in (mnist / name).iterdir() if p.is_file())
        shuffled = list(files)
        random.Random(f"0:{name}").shuffle(shuffled)  # make_split.py --seed 0: its first 20 trained the ours-GAN
        gan = set(shuffled[:TRAIN_PER_CLASS])
        rest = [f for f in files if f not in gan]
        random.Random(f"extra:{name}").shuffle(rest)
        parts[name] = {"gan": sorted(gan), "extra": rest[:EXTRA_PER_CLASS], "rest": sorted(rest[EXTRA_PER_CLASS:])}
    return parts


def draw_dataset(parts: dict, draw: int, folder: Path) -> Path:
    for name, part in parts.items():
        files = list(part["rest"])
        random.Random(f"draw{draw}:{name}").shuffle(files)
        link_files(files[:TRAIN_PER_CLASS], folder / "train" / name)
        link_files(files[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS], folder / "test" / name)
    return folder


def gain_summary(gain: dict) -> dict:
    return {"mean": gain["mean"], "ci": gain["ci"], "verdict": verdict(gain), "min_detectable": gain["min_detectable_gain"]}


def judge(matrices: dict[str, np.ndarray], labels: np.ndarray, level: float) -> dict:
    """The recommendation on these columns, and each source's own interval against the baseline."""
    names = list(matrices)
    choice = recommend(matrices, {n: 0.0 if n == BASELINE else 0.5 for n in names}, {n: True for n in names},
                       val_labels=labels)
    weight = class_weights(labels)
    per_source = {s: gain_summary(crossed_gain(weight[None, :] * (matrices[f"real+aug+{s}"] - matrices[BASELINE]), level))
                  for s in SOURCES}
    return {"setting": choice["setting"], "use_synthetic": choice["use_synthetic"], "reason": choice["reason"],
            "per_source": per_source}


def run_draw(args, parts: dict, draw: int) -> dict:
    start = time.perf_counter()
    work = args.work / f"draw{draw}"
    data = draw_dataset(parts, draw, work / "data")
    config = config_module.load(None, [f"ingest.dataset={data}", f"evaluate.sources=extra={args.work / 'extra'}, ours={args.ours}",
                                       f"evaluate.seeds={args.seeds}", f"evaluate.folds={args.folds}", "evaluate.candidate_shares=",
                                       *args.overrides])
    run_dir = work / "run"
    storage.write_json(run_dir / "config.json", config.to_dict())
    run_stage("ingest", config, run_dir)
    summary = run_stage("sources", config, run_dir)
    inputs = evaluate_stage.load_inputs(config.evaluate, run_dir / "ingest", None, run_dir / "sources")
    classes, real, val, test, sets = inputs
    copies = evaluate_stage.load_copies(config.evaluate, run_dir / "sources", sets)
    wanted = [BASELINE] + [f"real+aug+{s}" for s in SOURCES]
    conditions = [c for c in conditions_for(config.evaluate, real[1], len(classes), tuple(sets)) if c.name in wanted]
    pool = (np.concatenate([real[0], val[0]]), np.concatenate([real[1], val[1]]))
    device = pick_device("cpu")
    cv = {c.name: [] for c in conditions}
    validated = {c.name: [] for c in conditions}
    tested = {c.name: [] for c in conditions}
    for seed in range(args.seeds):
        correct = crossval.seed_correct(config.evaluate, seed, conditions, pool, sets, copies, len(classes), device)
        for c in conditions:
            cv[c.name].append(correct[c.name])
            model = train_classifier(config.evaluate, c.recipe, seed, real, sets[c.source] if c.synthetic else None,
                                     len(classes), device)
            validated[c.name].append(predict(model, val[0], device) == val[1])
            tested[c.name].append(predict(model, test[0], device) == test[1])
        print(f"draw {draw} seed {seed}: " + ", ".join(f"{n} cv {np.mean(cv[n][-1]):.3f} val {np.mean(validated[n][-1]):.3f} "
                                                    f"test {np.mean(tested[n][-1]):.4f}" for n in cv), flush=True)
    cv, validated, tested = ({n: np.array(v, dtype=float) for n, v in d.items()} for d in (cv, validated, tested))
    level = 1 - 0.05 / len(SOURCES)
    truth = {s: gain_summary(crossed_gain(tested[f"real+aug+{s}"] - tested[BASELINE], 0.95)) for s in SOURCES}
    return {
        "draw": draw, "seconds": round(time.perf_counter() - start, 1), "n_pool": int(len(pool[1])), "n_val": int(len(val[1])),
        "n_test": int(len(test[1])), "excluded": {s: summary["sources"][s]["n_excluded"] for s in SOURCES},
        "training_copies": {s: int((copies[s] >= 0).sum()) for s in SOURCES},
        "cv_accuracy": {n: float(v.mean()) for n, v in cv.items()},
        "test_accuracy": {n: float(v.mean()) for n, v in tested.items()},
        "cross_validated": judge(cv, pool[1], level),
        "validation_only": judge(validated, val[1], level),
        "test_truth": truth,
    }


def count(draws: list[dict], key: str, source: str) -> int:
    """How many of these draws the rule `key` recommended the source in."""
    return sum(d[key]["setting"] == f"real+aug+{source}" and d[key]["use_synthetic"] for d in draws)


def markdown(result: dict) -> str:
    draws = result["draws"]
    n = len(draws)
    lines = ["# Cross-validated recommendation on repeated 20-per-class MNIST draws", "",
             f"Command: `{result['command']}`  ", "Draws at commit (torch threads): " + ", ".join(f"{d['draw']} at {d.get('commit', result['commit'])} "
             f"({d.get('threads', result['threads'])})" for d in draws) + "; "
             f"{n} of {result['planned_draws']} draws done; {sum(d['seconds'] for d in draws):.0f} s in all "
             f"({np.mean([d['seconds'] for d in draws]):.0f} s a draw: {result['folds']} folds x {result['seeds']} seeds x "
             f"3 candidates = {result['folds'] * result['seeds'] * 3} fold classifiers and {result['seeds'] * 3} run classifiers "
             f"of {result['steps']} steps).", "",
             "Each draw: 160 training + 40 validation images (the pool the folds split, dealt afresh per seed), 5,000 "
             "test images; `extra` = 300 more real images per class, `ours` = 10,000 images of a default GAN trained on "
             "20 other images per class. Gains in accuracy points against real+aug (balanced accuracy on the pool and "
             "on validation, accuracy on test); intervals at 97.5% (Bonferroni over the 2 sources) for the decisions, "
             "95% on test, all crossed over seeds and images. Test truth and the validation-only decision come from "
             "the run's own classifiers (160 training images), the cross-validated decision from the fold classifiers.", "",
             "| draw | source | test gain (truth) [95% CI] | cross-validated gain, 200 images [97.5% CI] | validation-only gain, 40 images [97.5% CI] |",
             "|---|---|---|---|---|"]
    fmt = lambda g: f"{100 * g['mean']:+.2f} [{100 * g['ci'][0]:+.2f}, {100 * g['ci'][1]:+.2f}] {g['verdict']}" if g["ci"] else "n/a"
    for d in draws:
        for s in SOURCES:
            lines.append(f"| {d['draw']} | {s} | {fmt(d['test_truth'][s])} | {fmt(d['cross_validated']['per_source'][s])} | "
                         f"{fmt(d['validation_only']['per_source'][s])} |")
    lines += ["", "| draw | recommended, cross-validated | recommended, validation only | real+aug test % |", "|---|---|---|---|"]
    for d in draws:
        lines.append(f"| {d['draw']} | {d['cross_validated']['setting']} | {d['validation_only']['setting']} | "
                     f"{100 * d['test_accuracy'][BASELINE]:.2f} |")
    real_gain = [d for d in draws if d["test_truth"]["extra"]["verdict"] == "significant gain"]
    ours_gain = sum(d["test_truth"]["ours"]["verdict"] == "significant gain" for d in draws)
    lines += ["", "**Counts.** `extra` had a significant test gain in "
              f"{len(real_gain)} of {n} draws; the cross-validated rule recommended it in {count(real_gain, 'cross_validated', 'extra')} "
              f"of those, the validation-only rule in {count(real_gain, 'validation_only', 'extra')}. `ours` was "
              f"recommended (a false finding: a GAN's images at most level with real+aug; its own test gain was "
              f"significant in {ours_gain} of {n} draws, see the table) {count(draws, 'cross_validated', 'ours')} times "
              f"cross-validated, {count(draws, 'validation_only', 'ours')} times on validation only.", ""]
    mdg = [d["cross_validated"]["per_source"]["extra"]["min_detectable"] for d in draws]
    mdv = [d["validation_only"]["per_source"]["extra"]["min_detectable"] for d in draws]
    if all(v is not None for v in mdg + mdv):
        lines.append(f"Smallest gain each could reliably detect (80% power, `extra`, mean over draws): cross-validated "
                     f"{100 * np.mean(mdg):.1f} points, validation only {100 * np.mean(mdv):.1f} points.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ours", type=Path, required=True, help="the default GAN's synthetic folder (make_split seed 0 training images)")
    parser.add_argument("--mnist", type=Path, default=SHARED / "data" / "mnist10k")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cv-recommendation"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if not args.mnist.is_dir():
        sys.exit(f"{args.mnist} not found: this benchmark needs ../shared/data/mnist10k")
    parts = partition(args.mnist)
    for name, part in parts.items():
        link_files(part["extra"], args.work / "extra" / name)
    command = (f"python benchmarks/cv_recommendation.py --draws {args.draws} --seeds {args.seeds} --threads {args.threads} "
               f"--ours {args.ours}" + (f" --folds {args.folds}" if args.folds != 5 else "")
               + "".join(f" --set {o}" for o in args.overrides))
    steps = config_module.load(None, list(args.overrides)).evaluate.steps
    result = {"command": command, "commit": commit_of(__file__), "threads": args.threads, "seeds": args.seeds, "folds": args.folds, "steps": steps,
              "planned_draws": args.draws, "draws": []}
    earlier = args.results / "cv_recommendation.json"
    same_study = lambda text: re.sub(r" --(draws|threads) \d+", "", text)  # all but how many draws, how fast
    if earlier.is_file():
        kept = json.loads(earlier.read_text())
        if same_study(kept["command"]) == same_study(command):
            result["draws"] = [{"commit": kept["commit"], "threads": kept["threads"], **d} for d in kept["draws"]][: args.draws]
            print(f"kept {len(result['draws'])} finished draw(s) from {earlier}", flush=True)
    for draw in range(len(result["draws"]), args.draws):
        result["draws"].append({"commit": commit_of(__file__), "threads": args.threads, **run_draw(args, parts, draw)})
        storage.write_json(args.results / "cv_recommendation.json", result)
        storage.write_text(args.results / "cv_recommendation.md", markdown(result))
        print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
