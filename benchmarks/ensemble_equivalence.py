"""Issue #34, deliverable 2: does the batched evaluate stage (evaluate.batched=on, one ensemble of a seed's
conditions, pipeline/ensemble.py) give the serial path's results? Bit for bit it cannot with several members (the
grouped kernels' reduction order and the dropout draws differ; tests/test_ensemble.py tests the one-member case
bit for bit), so this measures the statistical claim: for every condition, the 10-seed mean accuracy of the
batched path minus the serial path's, paired by seed, with its 95% t-interval. Equivalent here means every
interval contains 0.

It runs the evaluate stage twice on one finished run folder (ingest/, gan/, synthetic/, as `augment run --out`
leaves it; e.g. the 20-per-class MNIST split), each mode into its own folder under --work, every other setting the
default. Resumable: each seed is saved as it finishes, and a finished seed is not run again.

    python benchmarks/ensemble_equivalence.py --run RUN --seeds 10 --threads 2
    # or one process per core: --mode serial --threads 1 & --mode batched --threads 1 (pinned with taskset)

About 45 minutes on this 2-core CPU with the defaults (60 serial and 60 batched classifiers of 600 steps at 28 px).
Writes benchmarks/results/ensemble_equivalence.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from provenance import commit_of  # benchmarks/ beside this file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"serial": "off", "batched": "on"}


def seed_accuracy(work: Path, mode: str, seeds: int) -> dict[int, dict[str, float]]:
    """Seed -> condition -> test accuracy, for the seeds this mode has finished: from metrics.json once aggregated
    (aggregation removes the seed files), else from the seed files written so far."""
    from pipeline import storage
    from pipeline.evaluate import stage as evaluate_stage

    metrics = work / mode / "metrics.json"
    if metrics.is_file():
        conditions = storage.read_json(metrics)["conditions"]
        return {s: {c: v["accuracy_runs"][s] for c, v in conditions.items()} for s in range(seeds)}
    paths = {s: work / mode / evaluate_stage.SEEDS_FOLDER / f"{s}.json" for s in range(seeds)}
    return {s: {r["condition"]: r["accuracy"] for r in storage.read_json(p)["records"]} for s, p in paths.items() if p.is_file()}


def finished_runs(work: Path, seeds: int) -> tuple[dict[str, dict[str, list[float]]], int]:
    """Per mode, condition -> accuracy per seed, over the seeds BOTH modes have finished (a run still under way, or
    cut off, is compared on those), and how many seeds that is."""
    accuracy = {m: seed_accuracy(work, m, seeds) for m in MODES}
    done = sorted(set(accuracy["serial"]) & set(accuracy["batched"]))
    if not done:
        return {m: {} for m in MODES}, 0
    return {m: {c: [accuracy[m][s][c] for s in done] for c in accuracy[m][done[0]]} for m in MODES}, len(done)


def compare(runs: dict[str, dict[str, list[float]]]) -> list[dict]:
    """Per condition: batched minus serial accuracy, paired by seed (points, 95% t-interval)."""
    from pipeline.metrics.stats import paired_gain

    rows = []
    for name in runs["serial"]:
        a, b = runs["serial"][name], runs["batched"][name]
        gain = paired_gain(b, a)
        rows.append({"condition": name, "serial_mean": sum(a) / len(a), "batched_mean": sum(b) / len(b),
                     "difference": gain["mean"], "ci95": gain["ci95"], "identical_seeds": sum(x == y for x, y in zip(a, b)),
                     "seeds": len(a), "contains_zero": gain["ci95"] is not None and gain["ci95"][0] <= 0 <= gain["ci95"][1]})
    return rows


def markdown(result: dict) -> str:
    lines = ["# The evaluate stage batched against serial: same results? (issue #34, deliverable 2)", "",
             f"Command: `{result['command']}`  ", f"Commit {result['commit']}, torch threads {result['threads']}; run folder "
             f"{result['run']}; seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in result["seconds"].items()) + "; "
             f"**{result['seeds_compared']} of {result['seeds_planned']} seeds** finished in both modes and compared"
             + ("" if result["seeds_compared"] == result["seeds_planned"] else " (a partial run: run the same commands again to finish it)")
             + ".", "",
             "Accuracy % on the run's held-out test images, mean over seeds; difference = batched − serial in points, "
             "paired by seed, [95% t-interval].", "",
             "| condition | serial % | batched % | difference [95% CI] | seeds identical | interval contains 0 |",
             "|---|---|---|---|---|---|"]
    for r in result["comparison"]:
        ci = f"[{100 * r['ci95'][0]:+.2f}, {100 * r['ci95'][1]:+.2f}]" if r["ci95"] else "–"
        lines.append(f"| {r['condition']} | {100 * r['serial_mean']:.2f} | {100 * r['batched_mean']:.2f} | "
                     f"{100 * r['difference']:+.2f} {ci} | {r['identical_seeds']} of {r['seeds']} | {'yes' if r['contains_zero'] else '**no**'} |")
    every = all(r["contains_zero"] for r in result["comparison"])
    lines += ["", f"**Every interval contains 0: {'yes' if every else 'no'}.** With this many conditions, about one in twenty "
              "intervals misses 0 by chance alone, so one miss alone is no evidence of a difference."]
    return "\n".join(lines) + "\n"


def run_mode(args: argparse.Namespace, config, mode: str) -> None:
    """One mode's seeds, each saved as it finishes (evaluation/seeds/<seed>.json: a killed run resumes at the next
    seed), then the stage's aggregation into metrics.json."""
    from pipeline import storage
    from pipeline.evaluate import stage as evaluate_stage

    config, out = dataclasses.replace(config, batched=MODES[mode]), args.work / mode
    if (out / "metrics.json").is_file():  # aggregated (which removes the seed files): done
        return
    timing = args.work / f"{mode}.seconds.json"
    seconds = storage.read_json(timing) if timing.is_file() else {}
    for seed in range(config.seeds):
        path = out / evaluate_stage.SEEDS_FOLDER / f"{seed}.json"
        if path.is_file() and storage.read_json(path)["config"] == dataclasses.asdict(config):
            continue
        start = time.perf_counter()
        evaluate_stage.run_seed(config, args.run / "ingest", args.run / "synthetic", out, seed)
        seconds[str(seed)] = round(time.perf_counter() - start, 1)
        storage.write_json(timing, seconds)
        print(f"{mode}: seed {seed} in {seconds[str(seed)]:.0f} s", flush=True)
    evaluate_stage.aggregate(config, args.run / "ingest", args.run / "synthetic", args.run / "gan", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder: ingest/, gan/, synthetic/")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ensemble-equivalence"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--mode", choices=["both", *MODES, "compare"], default="both",
                        help="run one mode only (two processes, one per core, each --threads 1); compare: only tabulate the "
                             "seeds both modes have finished")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (a smoke run)")
    args = parser.parse_args()
    import torch

    from pipeline import config as config_module, storage

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    for part in ("ingest", "gan", "synthetic"):
        if not (args.run / part).is_dir():
            sys.exit(f"{args.run / part} not found: --run needs a finished run folder (ingest/, gan/, synthetic/)")
    config = config_module.load(None, [f"evaluate.seeds={args.seeds}", *args.overrides]).evaluate
    for mode in {"both": list(MODES), "compare": []}.get(args.mode, [args.mode]):
        run_mode(args, config, mode)
    runs, done = finished_runs(args.work, config.seeds)
    if done < 2:
        print(f"{done} seed(s) finished in both modes: no comparison yet", flush=True)
        return
    timing = {mode: args.work / f"{mode}.seconds.json" for mode in MODES}
    seconds = {mode: sum(storage.read_json(t).values()) if t.is_file() else 0.0 for mode, t in timing.items()}
    command = (f"python benchmarks/ensemble_equivalence.py --run {args.run} --seeds {args.seeds} --threads {args.threads}"
               + "".join(f" --set {o}" for o in args.overrides))
    result = {"command": command, "commit": commit_of(__file__), "threads": args.threads, "run": str(args.run), "seconds": seconds,
              "seeds_planned": config.seeds, "seeds_compared": done, "comparison": compare(runs)}
    storage.write_json(args.results / "ensemble_equivalence.json", result)
    storage.write_text(args.results / "ensemble_equivalence.md", markdown(result))
    print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
