"""Benchmark: per_class training fanned out over Dask — 1 worker x 1 thread vs N workers x 1 thread, same work.
Writes benchmarks/results/dask_scaling.json and .md with the exact command, wall times and the load average.

    python benchmarks/scale_dask.py --dataset /tmp/split20/train --set train.steps=100
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    """A real Prefect server, so Dask workers report to it instead of each starting a temporary one."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(180):
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"true":
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("prefect server did not start")


def measure(out: Path, config, workers: int) -> dict:
    """Wall time of one flow that trains every class's generator on a fresh LocalCluster of `workers` workers."""
    from prefect import flow

    from flows.augment import train_class_task
    from flows.runners import task_runner
    from pipeline.gan import per_class

    runner, threads = task_runner("dask", dask_workers=workers)

    @flow(name=f"bench-per-class-{workers}-workers", task_runner=runner)
    def train_all() -> list[dict]:
        names = per_class.class_names(out / "ingest")
        futures = [train_class_task.submit(config.train, str(out), name, threads) for name in names]
        return [f.result() for f in futures]

    load_before, clock = os.getloadavg(), time.perf_counter()
    summaries = train_all()
    wall = time.perf_counter() - clock
    return {"workers": workers, "threads_per_worker": threads, "wall_seconds": round(wall, 1),
            "task_seconds_sum": round(sum(s["seconds"] for s in summaries), 1), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="ImageFolder to train per-class generators on.")
    parser.add_argument("--workers", type=int, default=2, help="Workers of the parallel run (compared with 1).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override (repeatable).")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/augment-bench-dask"))
    args = parser.parse_args()
    from pipeline import config as config_module
    from pipeline import ingest, storage

    fixed = ["train.mode=per_class", "train.track_quality=false", "train.sample_every=100000", "train.checkpoint_every=100000"]
    config = config_module.load(None, [f"ingest.dataset={args.dataset}", *fixed, *args.overrides])
    storage.fresh_dir(args.scratch)
    server, url = start_server(args.scratch / "prefect-home")
    os.environ.update({"PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OMP_NUM_THREADS": "1"})
    try:
        runs = []
        for workers in (1, args.workers):  # separate folders: a finished class would otherwise just be resumed
            ingest.run(config.ingest, args.scratch / f"run-{workers}" / "ingest")
            runs.append(measure(args.scratch / f"run-{workers}", config, workers))
    finally:
        server.terminate()
        server.wait(timeout=30)
    speedup = runs[0]["wall_seconds"] / runs[1]["wall_seconds"]
    command = "python benchmarks/scale_dask.py " + " ".join(sys.argv[1:])
    result = {"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "classes": len(storage.load_arrays(args.scratch / "run-1" / "ingest")["classes"]), "train": vars(config.train),
              "runs": runs, "speedup": round(speedup, 2)}
    folder = ROOT / "benchmarks" / "results"
    storage.write_json(folder / "dask_scaling.json", result)
    lines = [f"# per_class training on Dask: 1 vs {args.workers} workers (1 thread each)", "", f"`{command}`", "",
             f"{result['date']}, {result['machine']}, {result['classes']} classes, train.steps={config.train.steps}, "
             f"batch {config.train.batch_size}, width {config.train.width}", "",
             "| workers | wall s | sum of task s | load avg before | load avg after |", "|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['wall_seconds']} | {r['task_seconds_sum']} | "
              f"{', '.join(f'{v:.2f}' for v in r['loadavg_before'])} | {', '.join(f'{v:.2f}' for v in r['loadavg_after'])} |"
              for r in runs]
    lines += ["", f"**Speed-up: {speedup:.2f}x** (wall time incl. starting the LocalCluster)."]
    storage.write_text(folder / "dask_scaling.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
