"""The evaluate stage's classifiers, serial against batched (one ensemble of every condition of a seed,
pipeline.ensemble), on this machine, at 28 px gray and 64 px colour: wall time and peak memory of one seed's
conditions (the default ones on balanced data: 6 classifiers), each mode in its own process, modes alternated.

    python benchmarks/ensemble_speed.py --threads 2 --steps 100 --rounds 2

Pixels are random (the speed of a step does not depend on them). Writes benchmarks/results/ensemble_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(mode: str, size: int, channels: int, steps: int, threads: int) -> dict:
    """Run one seed's conditions in this process; wall seconds and the process's peak resident memory."""
    import dataclasses

    import numpy as np
    import torch

    from pipeline.config import EvaluateConfig
    from pipeline.evaluate import stage

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)
    labels = lambda n: np.arange(n) % 10
    real, val, test = (images(200), labels(200)), (images(40), labels(40)), (images(500), labels(500))
    inputs = (list("0123456789"), real, val, test, {"synthetic": (images(2000), labels(2000))})
    config = dataclasses.replace(EvaluateConfig(), steps=steps, batched="on" if mode == "batched" else "off")
    clock = time.perf_counter()
    records, _ = stage._seed_records(config, 0, inputs, torch.device("cpu"))
    return {"seconds": time.perf_counter() - clock, "classifiers": len(records),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("MODE", "SIZE", "CHANNELS"), help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), int(args.one[2]), args.steps, args.threads)))
        return
    rows = []
    for size, channels in ((28, 1), (64, 3)):
        runs = {"serial": [], "batched": []}
        for _ in range(args.rounds):
            for mode in runs:  # alternated, so drift on a shared machine hits both
                out = subprocess.run([sys.executable, __file__, "--one", mode, str(size), str(channels), "--steps",
                                      str(args.steps), "--threads", str(args.threads)], capture_output=True, text=True,
                                     check=True, cwd=ROOT)
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        median = {mode: statistics.median(r["seconds"] for r in values) for mode, values in runs.items()}
        memory = {mode: max(r["peak_rss_mb"] for r in values) for mode, values in runs.items()}
        rows.append({"size": size, "channels": channels, "classifiers": runs["serial"][0]["classifiers"], "runs": runs,
                     "seconds": median, "peak_rss_mb": memory, "time_ratio": median["batched"] / median["serial"],
                     "memory_ratio": memory["batched"] / memory["serial"]})
        print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    command = "python benchmarks/ensemble_speed.py " + " ".join(sys.argv[1:])
    result = {"command": command, "commit": commit, "machine": f"{platform.machine()}, {args.threads} torch threads",
              "steps": args.steps, "rows": rows}
    lines = ["# The evaluate stage's classifiers: serial against one ensemble", "", f"Command: `{command}` (commit {commit}, "
             f"{result['machine']}; one seed's default conditions, {args.steps} steps each, random pixels, each mode in "
             "its own process, modes alternated, median of the rounds).", "",
             "| images | classifiers | serial s | batched s | batched / serial time | serial peak MB | batched peak MB | memory ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['size']} px, {row['channels']} channel(s) | {row['classifiers']} | {row['seconds']['serial']:.1f} | "
                     f"{row['seconds']['batched']:.1f} | {row['time_ratio']:.2f} | {row['peak_rss_mb']['serial']:.0f} | "
                     f"{row['peak_rss_mb']['batched']:.0f} | {row['memory_ratio']:.2f} |")
    sys.path.insert(0, str(ROOT))
    from pipeline import storage

    storage.write_json(args.results / "ensemble_speed.json", result)
    storage.write_text(args.results / "ensemble_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
