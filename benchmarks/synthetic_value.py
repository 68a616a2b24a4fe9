"""Issue #3's protocol: does the synthetic data help on held-out REAL images? Prints and writes a results table.

    python benchmarks/synthetic_value.py --per-class 20 --seeds 10      # benchmarks/results/synthetic_value_k20.{json,md}

Makes the low-data split of ../shared/data/mnist10k with ../shared/bench/make_split.py (K train images per class,
5000 disjoint test images), runs the DEFAULT `augment run` on it (its wall time is the "default run" figure, and
its output folder can be reused by `benchmarks/performance.py --skip P5 --reuse-run`), then re-runs only the
evaluate stage on the same generator and synthetic images with `evaluate.seeds` raised to --seeds (in a sibling
folder), and tabulates every condition with its 95% interval. The control the protocol asks for ("the same batch
layout with the synthetic images replaced by extra augmented real ones") is the real+aug condition itself: synthetic
images REPLACE a share of each batch, so replacing them back with augmented real images gives exactly real+aug.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20, help="real training images per class in the split")
    parser.add_argument("--seeds", type=int, default=10, help="classifier seeds (the protocol asks for at least 10)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/augment-bench"), help="scratch folder for split and run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra section.key=value")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--direct", action="store_true",
                        help="one `augment run` with --seeds seeds (no separate default-seed run; its wall time is then not the default run's)")
    args = parser.parse_args()
    source = SHARED / "data" / "mnist10k"
    if not source.is_dir():
        sys.exit(f"synthetic_value: {source} is missing; this benchmark needs ../shared beside the project")
    split, out = args.work / f"split{args.per_class}", args.work / f"run{args.per_class}"
    shutil.rmtree(split, ignore_errors=True), shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_split.py"), str(source), str(split), "--per-class",
                    str(args.per_class), "--test-total", "5000", "--seed", "0"], check=True, capture_output=True)
    augment = Path(sys.executable).with_name("augment")
    extra = [x for o in args.overrides for x in ("--set", o)]
    if args.direct:
        extra += ["--set", f"evaluate.seeds={args.seeds}"]
    command = [str(augment), "run", "--no-dvc", "--dataset", str(split), "--out", str(out), *extra]
    load_before, clock = os.getloadavg(), time.perf_counter()
    subprocess.run(command, check=True, cwd=args.work)
    wall = time.perf_counter() - clock
    default = json.loads((out / "evaluation" / "metrics.json").read_text())
    more = out if args.direct else out.with_name(f"{out.name}-seeds{args.seeds}")
    evaluate, evaluate_wall = [], 0.0
    if not args.direct:
        shutil.rmtree(more, ignore_errors=True)
        more.mkdir()
        for stage in ("ingest", "gan", "synthetic"):
            subprocess.run(["cp", "-al", str(out / stage), str(more / stage)], check=True)  # hard links: nothing copied
        evaluate = [str(augment), "stage", "evaluate", "--out", str(more), "--set", f"ingest.dataset={split}",
                    "--set", f"evaluate.seeds={args.seeds}", *extra]
        clock = time.perf_counter()
        subprocess.run(evaluate, check=True, cwd=args.work)
        evaluate_wall = time.perf_counter() - clock
    metrics = json.loads((more / "evaluation" / "metrics.json").read_text())
    result = {
        "command": " ".join(["python benchmarks/synthetic_value.py", f"--per-class {args.per_class}", f"--seeds {args.seeds}",
                             *(["--direct"] if args.direct else []), *(f"--set {o}" for o in args.overrides)]),
        "direct": args.direct, "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "augment_command": " ".join(command), "wall_seconds": round(wall, 1),
        "evaluate_command": " ".join(evaluate), "evaluate_wall_seconds": round(evaluate_wall, 1),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "stage_seconds": stage_seconds(out), "default_run": _brief(default),
        "n_train_real": metrics["n_train_real"], "n_val": metrics["n_val"],
        "n_test": metrics["n_test"], "seeds": metrics["seeds"],
        "conditions": {name: {k: c[k] for k in ("accuracy_mean", "accuracy_std", "accuracy_runs", "macro_f1_mean",
                                                "worst_class_accuracy_mean")} for name, c in metrics["conditions"].items()},
        "gain": {name: {k: g[k] for k in ("mean", "ci95", "verdict", "min_detectable_gain", "runs")} for name, g in metrics["gain"].items()},
        "recommendation": metrics["recommendation"],
        "fidelity": {k: metrics["fidelity"][k] for k in ("frechet_distance", "precision", "recall", "density", "coverage")},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"synthetic_value_k{args.per_class}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def _brief(metrics: dict) -> dict:
    """The default run's own result (its seeds), kept beside the many-seed re-evaluation."""
    return {"seeds": metrics["seeds"], "accuracy_mean": {n: c["accuracy_mean"] for n, c in metrics["conditions"].items()},
            "gain": {n: {"mean": g["mean"], "ci95": g["ci95"], "verdict": g["verdict"]} for n, g in metrics["gain"].items()},
            "recommendation": {k: metrics["recommendation"].get(k) for k in ("use_synthetic", "setting", "reason")}}


def stage_seconds(out: Path) -> dict:
    read = lambda path: json.loads(path.read_text()) if path.is_file() else {}
    return {"ingest": read(out / "ingest" / "stats.json").get("seconds"), "train": read(out / "gan" / "summary.json").get("seconds"),
            "generate": read(out / "synthetic" / "summary.json").get("seconds"),
            "evaluate": read(out / "evaluation" / "metrics.json").get("seconds")}


def markdown(result: dict) -> str:
    """The results as a markdown table with the command that produced them."""
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result["stage_seconds"].items() if v is not None)
    lines = [f"`{result['command']}` — {result['n_train_real']} train + {result['n_val']} validation real images, "
             f"{result['n_test']} test images, {result['seeds']} classifier seeds.", "",
             (f"One `augment run` with {result['seeds']} seeds (OMP_NUM_THREADS={result['torch_threads']}): wall "
              f"{result['wall_seconds'] / 60:.1f} min ({stages}); not the default run's time." if result["direct"] else
              f"Default `augment run` (5 seeds) wall time: {result['wall_seconds'] / 60:.1f} min ({stages}); the "
              f"{result['seeds']}-seed re-evaluation took {result['evaluate_wall_seconds'] / 60:.1f} min more.") +
             f" Load average before/after {result['loadavg_before'][0]:.1f}/{result['loadavg_after'][0]:.1f}.", "",
             "| condition | accuracy % (mean ± std) | macro-F1 % | worst class % |", "|---|---|---|---|"]
    for name, c in result["conditions"].items():
        lines.append(f"| {name} | {100 * c['accuracy_mean']:.2f} ± {100 * c['accuracy_std']:.2f} | "
                     f"{100 * c['macro_f1_mean']:.2f} | {100 * c['worst_class_accuracy_mean']:.1f} |")
    lines += ["", "| paired gain | mean (points) | 95% CI | verdict |", "|---|---|---|---|"]
    for name, g in result["gain"].items():
        interval = "n/a" if g["ci95"] is None else f"[{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]"
        lines.append(f"| {name} | {100 * g['mean']:+.2f} | {interval} | {g['verdict']} |")
    choice = result["recommendation"]
    tested = choice.get("test_result")
    lines += ["", f"Recommendation (chosen on validation): **{choice['setting']}**, use synthetic data: "
              f"{choice['use_synthetic']}. {choice['reason']}." + (f" Test accuracy of that setting: "
              f"{100 * tested['mean']:.2f} ± {100 * tested['std']:.2f}%." if tested else ""),
              "", "Control (same batch layout, synthetic replaced by extra augmented real images) = the real+aug row.",
              "Fidelity: " + ", ".join(f"{k} {v:.3f}" for k, v in result["fidelity"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
