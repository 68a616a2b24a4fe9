"""Issue #8's performance rows P1–P7 in one command: prints each figure, writes benchmarks/results/results.{json,md}.

    python benchmarks/performance.py                        # every row; ~25 min on a quiet 2-core machine
    python benchmarks/performance.py --quick                # every row shrunk (~10 min busy): results-quick.{json,md}
    python benchmarks/performance.py --only P1,P7           # some rows, merged into the existing results file
    python benchmarks/performance.py --skip P5              # P3 from the default run an earlier P5 left in --work
    python benchmarks/performance.py --reuse-run DIR --reuse-wall-seconds S   # P3/P5 from any default run's folder

Every target is a ratio measured within one run (absolute times drift on this machine); each row records the load
average before and after it. CPU threads are set deliberately (--threads, default one per core) in this process and
in every `augment` child (OMP_NUM_THREADS). Scratch data lives under --work (default /tmp/augment-perf).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path

import perf_io
import perf_train
import torch
from perf_report import markdown, merge_results, row_command
from synthetic_value import stage_seconds
from pipeline.device import set_threads

ROOT = Path(__file__).resolve().parent.parent
ROW_IDS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")
SIZES = {  # per mode: steps and counts of every row (full = the conditions)
    "full": {"train_steps": 200, "generate_per_class": 1000, "rss_per_class": (5000, 50000), "scale_steps": 150,
             "matmul_side": 2048, "matmul_rounds": 5, "matmul_steps": 20, "default_run": []},
    "quick": {"train_steps": 100, "generate_per_class": 100, "rss_per_class": (200, 2000), "scale_steps": 60,
              "matmul_side": 1024, "matmul_rounds": 3, "matmul_steps": 5,
              "default_run": ["--per-class", "20", "--set", "train.steps=30", "--set", "train.track_quality=false", "--set", "train.keep=last",
                              "--set", "train.sample_every=30", "--set", "train.checkpoint_every=30",
                              "--set", "evaluate.seeds=1", "--set", "evaluate.steps=30"]},
}
# P4: what grows with --per-class is generation's bookkeeping and files, not the networks; a narrow generator
# (train.width=32) keeps 500k images to minutes, and its smaller baseline only makes the ratio stricter.
# The teacher filter is off here: it scores 3x the images (hours at 50,000 per class on this CPU) and holds only one
# float per candidate, so it does not change what P4 measures (whether anything holds all images).
TINY_TRAINING = [x for key in ("train.width=32", "train.steps=20", "train.track_quality=false", "train.keep=last",
                                "train.sample_every=20", "train.checkpoint_every=20", "generate.filter=none",
                                "evaluate.seeds=1", "evaluate.steps=20") for x in ("--set", key)]
SCALES = (20, 80, 320)  # P6: train images per class at 1x, 4x, 16x; the test part grows with it (as many per class)
PER_CLASS_LOW_DATA = 20  # P3/P4/P5: ../shared/bench's low-data split (20 per class, 5000 test images)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shrink every row (checks the script; not the targets)")
    parser.add_argument("--only", default=",".join(ROW_IDS), help="comma-separated rows to run, e.g. P1,P7")
    parser.add_argument("--skip", default="", help="comma-separated rows to leave out, e.g. P5")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads everywhere")
    parser.add_argument("--work", type=Path, default=Path("/tmp/augment-perf"), help="scratch folder (splits, runs)")
    parser.add_argument("--reuse-run", type=Path, help="output folder of an earlier default `augment run` for P3/P5")
    parser.add_argument("--reuse-wall-seconds", type=float, help="its wall time, when it was not run by this script")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    args.rows = [r for r in ROW_IDS if r in args.only.upper().split(",") and r not in args.skip.upper().split(",")]
    args.mode = "quick" if args.quick else "full"
    if args.reuse_run:  # fail before any row runs
        if not (args.reuse_run / "config.json").is_file() or not (args.reuse_run / "evaluation" / "metrics.json").is_file():
            parser.error(f"--reuse-run {args.reuse_run} is not the output folder of a finished `augment run`")
        if args.reuse_wall_seconds is None and not (args.reuse_run / "benchmark_wall.json").is_file():
            parser.error(f"{args.reuse_run} was not run by this script (no benchmark_wall.json): "
                         "add --reuse-wall-seconds with its wall time")
    return args


class Context:
    """What rows share, each made once: splits, ingested arrays, our training run, the default `augment run`."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.sizes, self.work, self.memo = args, SIZES[args.mode], args.work, {}
        self.cores = len(os.sched_getaffinity(0))

    def once(self, key: str, make):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def split(self, per_class: int, test_total: int) -> Path:
        return self.once(f"split{per_class}/{test_total}", lambda: perf_io.make_split(self.work, per_class, test_total))

    def ingest(self, split: Path, name: str) -> tuple[Path, dict]:
        def make():
            from pipeline import ingest
            from pipeline.config import IngestConfig

            out = self.work / name
            return out, ingest.run(IngestConfig(dataset=str(split)), out)
        return self.once(f"ingest:{name}", make)

    def training_set(self) -> tuple[Path, Path, dict]:
        """P1/P2/P7's data: the 16x split (3,200 training files, so an epoch of the reference loop is 50 batches)."""
        split = self.split(SCALES[-1], SCALES[-1] * 10)
        ingest_dir, stats = self.ingest(split, "ingest_p1")
        return split, ingest_dir, stats

    def ours(self) -> dict:
        """train.run at the benchmark's threads; its gan/ folder is P2's generator."""
        return self.once("ours", lambda: perf_train.ours(self.training_set()[1], self.work / "p1" / "gan",
                                                          self.sizes["train_steps"]))

    def default_run(self) -> dict:
        return self.once("default_run", self._default_run)

    def _default_run(self) -> dict:
        earlier = self.work / "p5" / "run"  # left by an earlier P5 of this script
        if not self.args.reuse_run and "P5" not in self.args.rows:  # --skip P5: P3 reuses that run, never makes one
            if not (earlier / "benchmark_wall.json").is_file() or (non_default_keys(earlier) and not self.args.quick):
                raise RuntimeError(f"P3 needs a default run: none in {earlier}; run P5 too or pass --reuse-run DIR")
            self.args.reuse_run = earlier
        if self.args.reuse_run:
            run_dir = self.args.reuse_run.resolve()
            if self.args.reuse_wall_seconds is not None:
                record = {"wall_seconds": self.args.reuse_wall_seconds, "command": "(wall time given with --reuse-wall-seconds)"}
            else:
                record = json.loads((run_dir / "benchmark_wall.json").read_text())
            record["reused"] = str(run_dir)
        else:
            split, run_dir = self.split(PER_CLASS_LOW_DATA, 5000), earlier
            shutil.rmtree(run_dir, ignore_errors=True)
            arguments = ["run", "--no-dvc", "--dataset", str(split), "--out", str(run_dir), *self.sizes["default_run"]]
            record = perf_io.run_augment(arguments, self.work, self.work / "logs" / "p5.log", self.args.threads)
            (run_dir / "benchmark_wall.json").write_text(json.dumps(record, indent=2) + "\n")
        record["stage_seconds"] = stage_seconds(run_dir)
        record["non_default_keys"] = non_default_keys(run_dir)
        return record


def non_default_keys(run_dir: Path) -> list[str]:
    """Config keys of a run that differ from the built-in defaults (the dataset aside). The defaults are resolved for
    this machine's device, as the run's config.json records them (generate.batch_size 0 = by device)."""
    from pipeline.config import Config
    from pipeline.device import resolve

    used = json.loads((run_dir / "config.json").read_text())
    defaults = resolve(Config()).to_dict()
    return [f"{s}.{k}" for s in defaults for k in defaults[s] if (s, k) != ("ingest", "dataset") and used[s][k] != defaults[s][k]]


def p1(ctx: Context) -> dict:
    split, ingest_dir, stats = ctx.training_set()
    ours = ctx.ours()
    references = [perf_train.reference(split / "train", ctx.sizes["train_steps"], workers, stats["channels"],
                                       stats["image_size"]) for workers in (0, 2)]
    best = max(references, key=lambda r: r["images_per_second"])
    ratio = ours["images_per_second"] / best["images_per_second"]
    # The opt-in lever, reported beside the default (the row's verdict is the default's): train.precision=bf16.
    bf16 = perf_train.ours(ingest_dir, ctx.work / "p1" / "gan_bf16", ctx.sizes["train_steps"], precision="bf16")
    bf16_ratio = bf16["images_per_second"] / best["images_per_second"]
    return {"value": round(ratio, 2), "met": ratio >= 1.5,
            "figure": f"{ratio:.2f}× (ours {ours['images_per_second']:.0f} vs reference {best['images_per_second']:.0f} "
                      f"images/s, num_workers={best['num_workers']}); with train.precision=bf16 {bf16_ratio:.2f}× "
                      f"({bf16['images_per_second']:.0f} images/s)",
            "details": {"ours": ours, "ours_bf16": bf16, "bf16_ratio": round(bf16_ratio, 2),
                        "reference_workers_0": references[0], "reference_workers_2": references[1]}}


def p2(ctx: Context) -> dict:
    ctx.ours()
    figures = perf_io.generate_vs_bound(ctx.work / "p1" / "gan", ctx.work / "p2" / "synthetic",
                                        ctx.sizes["generate_per_class"], ctx.cores)
    ratio = figures["ours_images_per_second"] / figures["encode_bound"]["images_per_second"]
    return {"value": round(ratio, 2), "met": ratio >= 0.8, "details": figures,
            "figure": f"{ratio:.2f} of the bound (ours {figures['ours_images_per_second']:.0f} vs encode "
                      f"{figures['encode_bound']['images_per_second']:.0f} images/s)"}


def p3(ctx: Context) -> dict:
    run = ctx.default_run()
    total = sum(v for v in run["stage_seconds"].values() if v is not None)
    ratio = run["wall_seconds"] / total
    phases = run.get("phases") or {}
    where = (f"; start-up {phases['startup_seconds']:.0f} s, Prefect server {phases['prefect_server_start_seconds']:.0f} s, "
             f"flow {phases['flow_seconds']:.0f} s, shutdown {phases['shutdown_seconds']:.0f} s") if phases else ""
    details = {key: run.get(key) for key in ("wall_seconds", "stage_seconds", "phases", "reused")}  # the rest: P5
    return {"value": round(ratio, 3), "met": ratio <= 1.10, "details": details,
            "figure": f"{ratio:.3f} (wall {run['wall_seconds']:.0f} s vs stages {total:.0f} s{where})"}


def p4(ctx: Context) -> dict:
    split = ctx.split(PER_CLASS_LOW_DATA, 5000)
    runs = {}
    for per_class in ctx.sizes["rss_per_class"]:
        run_dir = ctx.work / "p4" / f"run{per_class}"
        shutil.rmtree(run_dir, ignore_errors=True)
        arguments = ["run", "--no-dvc", "--dataset", str(split), "--out", str(run_dir), "--per-class", str(per_class),
                     *TINY_TRAINING]
        runs[per_class] = perf_io.run_augment(arguments, ctx.work, ctx.work / "logs" / f"p4_{per_class}.log", ctx.args.threads)
        runs[per_class]["stage_seconds"] = stage_seconds(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)  # up to 500k files: do not leave them in /tmp
    small, large = ctx.sizes["rss_per_class"]
    ratio = runs[large]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
    extra_images = (large - small) * 10
    per_image = (runs[large]["peak_rss_mib"] - runs[small]["peak_rss_mib"]) * 2 ** 20 / extra_images
    by_stage = runs[large]["sampled_peak_rss_mib_by_stage"]
    where = f"; highest in {max(by_stage, key=by_stage.get)}" if by_stage else ""
    return {"value": round(ratio, 3), "met": ratio <= 1.15,
            "figure": f"{ratio:.3f}× ({runs[large]['peak_rss_mib']:.0f} vs {runs[small]['peak_rss_mib']:.0f} MiB{where}; "
                      f"{per_image:.0f} B per extra image)",
            "details": {"bytes_per_extra_image": round(per_image), **{f"per_class_{k}": v for k, v in runs.items()}}}


def p5(ctx: Context) -> dict:
    run = ctx.default_run()
    minutes = run["wall_seconds"] / 60
    comparable = not ctx.args.quick and not run["non_default_keys"]
    return {"value": round(minutes, 2), "met": minutes <= 15 if comparable else None, "details": run,
            "figure": f"{minutes:.1f} min" + ("" if comparable else f" (not a default run: {run['non_default_keys']})")}


def p6(ctx: Context) -> dict:
    from pipeline import ingest
    from pipeline.config import IngestConfig

    points, batch = [], perf_train.bench_config(1).batch_size
    for per_class in SCALES:
        split = ctx.split(per_class, per_class * 10)
        ingest_dir = ctx.work / "p6" / f"ingest_k{per_class}"
        runs = [ingest.run(IngestConfig(dataset=str(split)), ingest_dir) for _ in range(3)]  # ~1 s each: best of 3
        stats = min(runs, key=lambda r: r["seconds"])
        trained = perf_train.ours(ingest_dir, ctx.work / "p6" / f"gan_k{per_class}", ctx.sizes["scale_steps"])
        images = stats["n_train"] + stats["n_val"] + stats["n_test"]
        points.append({"images": images, "ingest_seconds": stats["seconds"], "train_images": stats["n_train"],
                       "step_seconds": round(batch / trained["images_per_second"], 4), "train_run_seconds": trained["run_seconds"]})
    keys, sizes = ("ingest_seconds", "step_seconds"), [p["images"] for p in points]
    slopes = {key: round(log_slope(sizes, [p[key] for p in points]), 3) for key in keys}
    last = {key: round(log_slope(sizes[-2:], [p[key] for p in points[-2:]]), 3) for key in keys}  # 4x -> 16x
    met = all(v <= 1.1 for v in [*slopes.values(), *last.values()])
    return {"value": slopes, "met": met, "details": {"points": points, "log_log_slopes": slopes, "slopes_4x_to_16x": last},
            "figure": f"log-log slope: ingest {slopes['ingest_seconds']:.2f} (4×→16× {last['ingest_seconds']:.2f}), "
                      f"training step {slopes['step_seconds']:.2f} (4×→16× {last['step_seconds']:.2f}); 1 = linear"}


def p7(ctx: Context) -> dict:
    _, _, stats = ctx.training_set()
    config = perf_train.bench_config(1)
    shape = (len(stats["classes"]), stats["channels"], stats["image_size"])
    counted = perf_train.step_flops(config, *shape)
    timed = perf_train.step_vs_matmul(config, *shape, ctx.sizes["matmul_side"], ctx.sizes["matmul_rounds"],
                                      ctx.sizes["matmul_steps"])
    achieved = counted["flops_per_step"] / timed["step_seconds"]
    ratio = achieved / timed["matmul_flops_per_second"]
    details = {"achieved_flops_per_second": round(achieved), "step": counted, "timing": timed}
    if "ours" in ctx.memo:  # the same FLOPs at train.run's own rate (P1), for comparison
        details["achieved_at_train_run_rate"] = round(counted["flops_per_step"] * ctx.memo["ours"]["images_per_second"]
                                                      / config.batch_size)
    return {"value": round(ratio, 3), "met": ratio >= 0.5, "details": details,
            "figure": f"{ratio:.2f} of matmul ({achieved / 1e9:.1f} vs {timed['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s; "
                      f"{counted['flops_per_step'] / 1e9:.1f} GFLOP per step)"}


def log_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x: 1 is linear growth, below 1 better than linear."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


ROWS = {  # id: (what, target, function)
    "P1": ("GAN training throughput vs an ImageFolder + DataLoader reference loop (same nets, batch)", "≥ 1.5×", p1),
    "P2": ("generate + write PNG throughput vs the Pillow encode bound on every core", "≥ 0.8", p2),
    "P3": ("`augment run` wall time / sum of the four stages' seconds (default low-data run)", "≤ 1.10", p3),
    "P4": ("peak RSS of `augment run` at the larger vs the smaller --per-class", "≤ 1.15×", p4),
    "P5": ("default `augment run` on the 20-per-class split, end to end on CPU", "≤ 15 min", p5),
    "P6": ("ingest and one training step at 1×, 4×, 16× the images: log-log slope", "≤ 1.1 (linear or better)", p6),
    "P7": ("achieved FLOP/s of the training step / dense fp32 torch.mm FLOP/s, same threads", "report; aim ≥ 0.5", p7),
}


def main() -> None:
    args = parse_args()
    set_threads(args.threads)  # this process; `augment` children get OMP_NUM_THREADS (perf_io.child_env)
    args.work.mkdir(parents=True, exist_ok=True)
    ctx, rows, failed = Context(args), {}, []
    for row_id in args.rows:
        what, target, function = ROWS[row_id]
        print(f"{row_id}: {what} ...", flush=True)
        load_before, clock = os.getloadavg(), time.perf_counter()
        try:
            result = function(ctx)
        except Exception as error:  # one failed row must not lose the others' figures
            traceback.print_exc()
            result, failed = {"value": None, "met": None, "figure": f"failed: {error}", "details": {}}, failed + [row_id]
        rows[row_id] = {"id": row_id, "what": what, "target": target, **result, "command": row_command(row_id, args),
                        "loadavg_before": [round(v, 2) for v in load_before],
                        "loadavg_after": [round(v, 2) for v in os.getloadavg()], "seconds": round(time.perf_counter() - clock, 1)}
        print(f"{row_id}: {result['figure']}  target {target}  met: {result['met']}  ({rows[row_id]['seconds']:.0f} s)", flush=True)
    run_info = {"command": shlex.join(["python", "benchmarks/performance.py", *sys.argv[1:]]), "mode": args.mode,
                "threads": args.threads, "cores": ctx.cores, "torch": torch.__version__, "python": platform.python_version(),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results = merge_results(args.results, args.mode, run_info, rows)
    print(markdown(results))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
