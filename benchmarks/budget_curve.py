"""Is the generator held back by its training budget? (issue #35, item 1)

One dataset and one generator width a call: trains ONE GAN with every default but `train.width`, snapshots it at
2k, 4k, 8k and 16k steps (each longer snapshot is the same run resumed from its checkpoint: `train.steps` is one of
the settings a resume ignores, and there is no learning-rate schedule, so the 4k snapshot is the 2k run continued),
and for every snapshot runs the default generate stage and the evaluate stage with --seeds classifier seeds. Writes
<results>/budget_<dataset>_w<width>.{json,md} after every snapshot, so partial results survive.

    python benchmarks/budget_curve.py --dataset k20 --width 128      # 20 per class, balanced; 1x (the 28-px default)
    python benchmarks/budget_curve.py --dataset steps --width 128    # imbalanced `steps` profile (5/10/20/40/80)
    python benchmarks/budget_curve.py --dataset k20 --width 256      # 2x generator (and discriminator, which follows it)
    python benchmarks/budget_curve.py --dataset steps --width 256
    python benchmarks/budget_curve.py --tabulate                     # budget_curve.{md,png} from every budget_*.json

Defaults: --snapshots 2000,4000,8000,16000 --seeds 3 --threads 1 --work /tmp/budget-<dataset>-w<width>.
A smoke run (results kept out of benchmarks/results):

    python benchmarks/budget_curve.py --dataset k20 --width 128 --snapshots 20,40 --seeds 2 \\
        --set evaluate.steps=20 --set generate.per_class=20 --work /tmp/budget-smoke --results /tmp/budget-smoke-results

Datasets. k20: ../shared/bench/make_split.py SRC OUT --per-class 20 --test-total 5000 --seed 0 (160 train + 40
validation real images after ingest's validation fifth, 5000 test images). steps: benchmarks/imbalanced_split.py's
`steps` profile, split seed 0 (100 test images per class); the evaluate stage then adds real+aug+resampled and
real+aug+topup by itself (rebalance auto).

Every synthetic candidate (a condition that trains on real images and on synthetic ones: real+synthetic,
real+aug+synthetic, real+aug+synthetic@0.25, real+aug+topup) is compared, paired over the classifier seeds, with the
STRONGEST baseline without synthetic images: real+aug on k20, real+aug+resampled on steps.

Resumable: run the same command again and it skips every finished snapshot (and every finished stage of an
unfinished one); the scratch folder holds the split, ingest/, gan/ (the run being continued) and snapshots/.
"""
from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from provenance import commit_of  # benchmarks/ beside this file

ROOT = Path(__file__).resolve().parents[1]      # the project (or a frozen copy of its pipeline/ and benchmarks/)
SHARED = ROOT.parent / "shared"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SNAPSHOTS = "2000,4000,8000,16000"
BASELINE = {"k20": "real+aug", "steps": "real+aug+resampled"}  # the strongest condition without synthetic images
EXPORTED = ("generator.json", "generator_ema.safetensors", "quality.csv", "losses.csv", "summary.json")
SCORES = ("accuracy", "balanced_accuracy")


# ----------------------------------------------------------------------------------------------------- helpers

def user_command(args: argparse.Namespace) -> str:
    """The command as a user would type it from the project root (scratch and results paths left out)."""
    parts = ["python benchmarks/budget_curve.py", f"--dataset {args.dataset}", f"--width {args.width}"]
    if args.snapshots != DEFAULT_SNAPSHOTS:
        parts.append(f"--snapshots {args.snapshots}")
    parts += [f"--seeds {args.seeds}", f"--threads {args.threads}"] + [f"--set {o}" for o in args.overrides]
    return " ".join(parts)


def make_split(args: argparse.Namespace, folder: Path) -> dict[str, int]:
    """Write the dataset's train/ and test/ into folder (hard links); return the training images per class."""
    if args.dataset == "k20":
        if not (folder / "train").is_dir():
            subprocess.run([sys.executable, str(args.make_split), str(args.mnist), str(folder), "--per-class", "20",
                            "--test-total", "5000", "--seed", "0"], check=True)
    else:
        from imbalanced_split import PROFILES, write_split  # benchmarks/ beside this file
        write_split(args.mnist, folder, seed=0, counts_per_class=PROFILES["steps"])  # skips files already linked
    return {d.name: sum(1 for _ in d.iterdir()) for d in sorted((folder / "train").iterdir()) if d.is_dir()}


def quality_rows(path: Path, upto: int) -> list[dict]:
    """gan/quality.csv's rows (the EMA generator's fidelity at every sample grid) up to step `upto`."""
    from pipeline import storage
    from pipeline.gan.quality import COLUMNS
    return [dict(zip(COLUMNS, row)) for row in storage.read_csv_rows(path) if row[0] <= upto]


def checkpoint_step(gan: Path) -> int | None:
    from pipeline import storage
    from pipeline.gan import checkpoint
    path = gan / checkpoint.CHECKPOINT
    return int(storage.read_metadata(path)["step"]) if path.is_file() else None


def gain_row(conditions: dict, treated: str, baseline: str) -> dict:
    """treated - baseline, paired over the classifier seeds (the *_runs lists are in seed order)."""
    from pipeline.metrics.stats import paired_gain, verdict
    row = {"treated": treated, "baseline": baseline}
    for score in SCORES:
        gain = paired_gain(conditions[treated][f"{score}_runs"], conditions[baseline][f"{score}_runs"])
        row[score] = {"mean": gain["mean"], "ci95": gain["ci95"], "runs": gain["runs"], "verdict": verdict(gain)}
    row["worst_class"] = conditions[treated]["worst_class_accuracy_mean"] - conditions[baseline]["worst_class_accuracy_mean"]
    return row


def snapshot_record(step: int, snap: Path, metrics: dict, baseline: str, seconds: dict, train_seconds: float) -> dict:
    """Everything the results keep of one snapshot."""
    rows = quality_rows(snap / "gan" / "quality.csv", step)
    best = snap / "gan" / "generator_best.step"
    kept_step = int(best.read_text()) if best.is_file() else None
    kept = next((r for r in rows if r["step"] == kept_step), None)
    fid = metrics["fidelity"]
    conditions = metrics["conditions"]
    candidates = [n for n in conditions if ("synthetic" in n or "topup" in n) and n != "synthetic"]  # also train on real
    rec = metrics["recommendation"]
    return {
        "step": step,
        "train_quality_last": rows[-1] if rows else None,        # last measurement at or before the snapshot's step
        "kept_step": kept_step,                                   # keep=best: the grid with the lowest training-time FD
        "train_quality_kept": kept,
        "fidelity": {k: fid[k] for k in ("frechet_distance", "precision", "recall", "density", "coverage")}
                    | {"suspected_copies": fid["nearest_real"]["suspected_copies"], "checked": fid["nearest_real"]["checked"],
                       "per_class_frechet_distance": {c: v["frechet_distance"] for c, v in fid["per_class"].items()}},
        "cas": conditions["synthetic"]["accuracy_mean"] if "synthetic" in conditions else None,
        "conditions": {name: {"accuracy_mean": v["accuracy_mean"], "accuracy_runs": v["accuracy_runs"],
                              "balanced_accuracy_mean": v["balanced_accuracy_mean"], "balanced_accuracy_runs": v["balanced_accuracy_runs"],
                              "worst_class_accuracy_mean": v["worst_class_accuracy_mean"],
                              "per_class_accuracy_mean": v["per_class_accuracy_mean"]} for name, v in conditions.items()},
        "baseline": baseline,
        "gains": [gain_row(conditions, name, baseline) for name in candidates],
        "recommendation": {"setting": rec.get("setting"), "use_synthetic": rec.get("use_synthetic"), "reason": rec.get("reason"),
                           "test_accuracy": (rec.get("test_result") or {}).get("mean")},
        "n_synthetic": metrics["n_synthetic"],
        "seconds": seconds,                    # wall seconds of this snapshot's stages (train: the steps since the last one)
        "gan_train_seconds": train_seconds,    # train.run's own seconds for those steps (gan/summary.json)
    }


# ----------------------------------------------------------------------------------------------------- report

def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def gain_text(g: dict, score: str = "accuracy") -> str:
    s = g[score]
    ci = "" if s["ci95"] is None else f" [{100 * s['ci95'][0]:+.2f}, {100 * s['ci95'][1]:+.2f}]"
    return f"{100 * s['mean']:+.2f}{ci}"


def fd_text(q: dict | None) -> str:
    return "n/a" if not q else f"{q['frechet_distance']:.3f}"


def markdown(result: dict) -> str:
    snaps = result["snapshots"]
    names = [g["treated"] for g in snaps[0]["gains"]] if snaps else []
    lines = [f"# Generator training budget: `{result['dataset']}`, width {result['width']} ({result['width'] // 128}x at 28 px)", "",
             f"Command: `{result['command']}`  ", f"Commit {result['commit']}, torch threads {result['threads']} (interop 1), "
             f"classifier seeds {result['seeds']}; every other setting the default. Training images per class after ingest's "
             f"validation fifth: {result['train_counts']}. Status: **{result['status']}** "
             f"({len(snaps)} of {len(result['snapshot_steps'])} snapshots). Stage seconds so far: {result['seconds_total']} (this process's wall: {result.get('wall_seconds_this_process')}).", "",
             "One GAN, resumed from its checkpoint at each longer budget (no LR schedule). train FD: the training-time "
             "probe (gan/quality.csv, 50 samples/class vs the training images) of the generator keep=best exported, "
             "with its step; eval FD, precision, recall: the evaluate stage's fidelity (classifier features, training "
             "images). CAS: accuracy of `synthetic`. Gains: accuracy points vs the strongest baseline "
             f"(**{result['baseline']}**), paired over seeds, [95% CI].", "",
             "| step | train FD kept (@step) | train FD last | eval FD | precision | recall | CAS % | "
             f"{result['baseline']} acc % | " + " | ".join(f"{n} gain" for n in names) + " | recommendation |",
             "|" + "---|" * (9 + len(names))]
    for s in snaps:
        fid = s["fidelity"]
        gains = {g["treated"]: gain_text(g) for g in s["gains"]}
        rec = s["recommendation"]
        lines.append(f"| {s['step']} | {fd_text(s['train_quality_kept'])} (@{s['kept_step']}) | {fd_text(s['train_quality_last'])} | "
                     f"{fid['frechet_distance']:.3f} | {fid['precision']:.3f} | {fid['recall']:.3f} | {pct(s['cas'])} | "
                     f"{pct(s['conditions'][s['baseline']]['accuracy_mean'])} | " + " | ".join(gains.get(n, "n/a") for n in names)
                     + f" | {rec['setting']} ({pct(rec['test_accuracy'])}) |")
    if snaps:
        lines += ["", "Balanced-accuracy gains vs the same baseline (points [95% CI]):", "",
                  "| step | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
        for s in snaps:
            gains = {g["treated"]: gain_text(g, "balanced_accuracy") for g in s["gains"]}
            lines.append(f"| {s['step']} | " + " | ".join(gains.get(n, "n/a") for n in names) + " |")
        conds = list(snaps[0]["conditions"])
        lines += ["", "Every condition, accuracy % / balanced accuracy % / worst class % (means over seeds):", "",
                  "| step | " + " | ".join(conds) + " |", "|" + "---|" * (1 + len(conds))]
        for s in snaps:
            c = s["conditions"]
            lines.append(f"| {s['step']} | " + " | ".join(f"{pct(c[n]['accuracy_mean'])} / {pct(c[n]['balanced_accuracy_mean'])} / "
                                                          f"{100 * c[n]['worst_class_accuracy_mean']:.1f}" for n in conds) + " |")
        lines += ["", "| step | density | coverage | suspected copies | train precision / recall (kept) | seconds (train / generate / evaluate) |",
                  "|---|---|---|---|---|---|"]
        for s in snaps:
            fid, q, sec = s["fidelity"], s["train_quality_kept"], s["seconds"]
            pr = "n/a" if not q else f"{q['precision']:.3f} / {q['recall']:.3f}"
            lines.append(f"| {s['step']} | {fid['density']:.3f} | {fid['coverage']:.3f} | {fid['suspected_copies']} of {fid['checked']} | "
                         f"{pr} | {sec.get('train', 0):.0f} / {sec.get('generate', 0):.0f} / {sec.get('evaluate', 0):.0f} |")
        lines += ["", "Recommendations (chosen on validation only): " + "; ".join(
            f"{s['step']}: {s['recommendation']['setting']} (use synthetic: {s['recommendation']['use_synthetic']})" for s in snaps) + "."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------- study

def study(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from pipeline import config as config_module
    from pipeline import generate, ingest, storage
    from pipeline.evaluate import stage as evaluate_stage
    from pipeline.gan import train
    import pipeline
    print(f"pipeline from {Path(pipeline.__file__).parent}, torch threads {torch.get_num_threads()}", flush=True)

    clock = time.perf_counter()
    steps = sorted(int(s) for s in args.snapshots.split(","))
    work = args.work or Path(f"/tmp/budget-{args.dataset}-w{args.width}")
    work.mkdir(parents=True, exist_ok=True)
    split_counts = make_split(args, work / "data")
    overrides = [f"ingest.dataset={work / 'data'}", f"train.width={args.width}", f"evaluate.seeds={args.seeds}", *args.overrides]
    config = config_module.load(None, overrides)
    ingest_dir, gan = work / "ingest", work / "gan"
    if not (ingest_dir / "stats.json").is_file():
        ingest.run(config.ingest, ingest_dir)
    stats = storage.read_json(ingest_dir / "stats.json")
    stem = f"budget_{args.dataset}_w{args.width}"
    result = {"command": user_command(args), "commit": commit_of(__file__), "dataset": args.dataset, "width": args.width,
              "snapshot_steps": steps, "seeds": args.seeds, "threads": args.threads, "baseline": BASELINE[args.dataset],
              "split_counts": split_counts, "train_counts": {c: v["train"] for c, v in stats["per_class"].items()},
              "config": config.to_dict(), "snapshots": [], "status": "running", "seconds_total": 0.0}

    def save() -> None:
        # compute seconds: every snapshot's stages (also those a resumed study did earlier); wall: this process
        result["seconds_total"] = round(sum(sum(s["seconds"].values()) for s in result["snapshots"]), 1)
        result["wall_seconds_this_process"] = round(time.perf_counter() - clock, 1)
        storage.write_json(args.results / f"{stem}.json", result)
        storage.write_text(args.results / f"{stem}.md", markdown(result))

    for step in steps:
        snap = work / "snapshots" / f"step_{step:06d}"
        record_path = snap / "record.json"
        if record_path.is_file():                         # finished earlier: keep its record
            result["snapshots"].append(storage.read_json(record_path))
            print(f"snapshot {step}: done earlier, skipped", flush=True)
            continue
        seconds_path = snap / "seconds.json"
        seconds = storage.read_json(seconds_path) if seconds_path.is_file() else {}
        stage_config = config_module.apply_overrides(config, [f"train.steps={step}"])
        # 1. train (or continue) to `step`, then copy the exported generator: later runs overwrite gan/.
        if not (snap / "gan" / "summary.json").is_file():
            at = checkpoint_step(gan)
            if at is not None and at > step:
                raise SystemExit(f"{gan} is already at step {at} > {step} and snapshot {step} is missing: train.run would "
                                 f"start over; delete {work} (or its gan/) to redo the study")
            start = time.perf_counter()
            summary = train.run(stage_config.train, ingest_dir, gan)
            seconds["train"] = round(time.perf_counter() - start, 1)
            seconds["gan_train_seconds"] = summary["seconds"]
            (snap / "gan").mkdir(parents=True, exist_ok=True)
            best = gan / train.BEST
            if best.is_file():                            # which grid keep=best exported (its step)
                storage.write_text(snap / "gan" / "generator_best.step", storage.read_metadata(best).get("step", "") + "\n")
            storage.write_json(seconds_path, seconds)
            for name in EXPORTED:                         # summary.json last: its presence marks a complete copy
                shutil.copy2(gan / name, snap / "gan" / name)
            print(f"snapshot {step}: trained in {seconds['train']} s", flush=True)
        # 2. generate with the defaults (per_class 1000, teacher filter) from the snapshot's generator.
        if not (snap / "synthetic" / "manifest.csv").is_file():
            start = time.perf_counter()
            generate.run(stage_config.generate, snap / "gan", snap / "synthetic", ingest_dir)
            seconds["generate"] = round(time.perf_counter() - start, 1)
            storage.write_json(seconds_path, seconds)
            print(f"snapshot {step}: generated in {seconds['generate']} s", flush=True)
        # 3. evaluate (metrics.json is written last: its presence means the stage finished).
        if (snap / "evaluation" / "metrics.json").is_file():
            metrics = storage.read_json(snap / "evaluation" / "metrics.json")
        else:
            start = time.perf_counter()
            metrics = evaluate_stage.run(stage_config.evaluate, ingest_dir, snap / "synthetic", snap / "gan", snap / "evaluation")
            seconds["evaluate"] = round(time.perf_counter() - start, 1)
            storage.write_json(seconds_path, seconds)
            print(f"snapshot {step}: evaluated in {seconds['evaluate']} s", flush=True)
        train_seconds = seconds.pop("gan_train_seconds", None)
        record = snapshot_record(step, snap, metrics, BASELINE[args.dataset], seconds, train_seconds)
        storage.write_json(record_path, record)
        result["snapshots"].append(record)
        save()                                            # partial results survive a killed study
        print(f"snapshot {step}: eval FD {record['fidelity']['frechet_distance']:.3f}, CAS {pct(record['cas'])}, "
              f"{record['baseline']} {pct(record['conditions'][record['baseline']]['accuracy_mean'])}, gains "
              + ", ".join(f"{g['treated']} {gain_text(g)}" for g in record["gains"]), flush=True)
    result["status"] = "complete"
    save()
    print(markdown(result))


# ----------------------------------------------------------------------------------------------------- tabulate

def tabulate(results: Path) -> None:
    """budget_curve.md (one table per dataset, widths side by side) and budget_curve.png from every budget_*.json."""
    from pipeline import storage
    runs = {}
    for path in sorted(results.glob("budget_*_w*.json")):
        match = re.fullmatch(r"budget_(\w+)_w(\d+)\.json", path.name)
        if match:
            runs[(match[1], int(match[2]))] = storage.read_json(path)
    if not runs:
        raise SystemExit(f"no budget_<dataset>_w<width>.json in {results}")
    best_gain = lambda s: max(s["gains"], key=lambda g: g["accuracy"]["mean"]) if s["gains"] else None
    lines = ["# Generator training budget (issue #35, item 1)", "",
             "One GAN per dataset and width, every default but `train.width` (128 = 1x, the 28-px default; 256 = 2x, the "
             "discriminator follows), resumed from its checkpoint at each longer budget. FD: train = the training-time probe "
             "of the kept (keep=best) generator, eval = the evaluate stage's. Best gain: the synthetic candidate with the "
             "highest mean accuracy gain over the strongest baseline, paired over the classifier seeds [95% CI].", ""]
    for dataset in sorted({d for d, _ in runs}):
        widths = sorted(w for d, w in runs if d == dataset)
        first = runs[(dataset, widths[0])]
        steps = sorted({s["step"] for w in widths for s in runs[(dataset, w)]["snapshots"]})
        lines += [f"## `{dataset}` (baseline {first['baseline']})", ""]
        lines += [f"- w{w}: `{runs[(dataset, w)]['command']}`, commit {runs[(dataset, w)]['commit']}, "
                  f"{runs[(dataset, w)]['status']}, {runs[(dataset, w)]['seconds_total'] / 3600:.1f} h" for w in widths]
        header = ["step"] + [f"{col} w{w}" for w in widths for col in ("train FD", "eval FD", "CAS %", "baseline %", "best gain", "rec.")]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for step in steps:
            cells = [str(step)]
            for w in widths:
                s = next((x for x in runs[(dataset, w)]["snapshots"] if x["step"] == step), None)
                if s is None:
                    cells += ["–"] * 6
                    continue
                g = best_gain(s)
                cells += [fd_text(s["train_quality_kept"]), f"{s['fidelity']['frechet_distance']:.3f}", pct(s["cas"]),
                          pct(s["conditions"][s["baseline"]]["accuracy_mean"]),
                          "n/a" if g is None else f"{g['treated']} {gain_text(g)}", str(s["recommendation"]["setting"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    storage.write_text(results / "budget_curve.md", "\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = sorted({d for d, _ in runs})
    figure, axes = plt.subplots(len(datasets), 3, figsize=(15, 4 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        for (d, w), run in sorted(runs.items()):
            if d != dataset or not run["snapshots"]:
                continue
            snaps = run["snapshots"]
            x = [s["step"] for s in snaps]
            axes[row, 0].plot(x, [s["train_quality_kept"]["frechet_distance"] if s["train_quality_kept"] else float("nan") for s in snaps],
                              "o-", label=f"w{w}")
            axes[row, 1].plot(x, [s["fidelity"]["frechet_distance"] for s in snaps], "o-", label=f"w{w}")
            gains = [best_gain(s) for s in snaps]
            mean = [100 * g["accuracy"]["mean"] for g in gains]
            low = [100 * (g["accuracy"]["mean"] - g["accuracy"]["ci95"][0]) if g["accuracy"]["ci95"] else 0 for g in gains]
            high = [100 * (g["accuracy"]["ci95"][1] - g["accuracy"]["mean"]) if g["accuracy"]["ci95"] else 0 for g in gains]
            axes[row, 2].errorbar(x, mean, yerr=[low, high], fmt="o-", capsize=3, label=f"w{w}")
        baseline = next(r["baseline"] for (d, _), r in runs.items() if d == dataset)
        ticks = sorted({s["step"] for (d, _), r in runs.items() if d == dataset for s in r["snapshots"]})
        for col, title in enumerate(("train-time FD (kept G)", "evaluate-stage FD",
                                     f"best synth. gain vs {baseline} (pts)")):
            ax = axes[row, col]
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("GAN steps")
            ax.set_title(f"{dataset}: {title}")
            ax.legend()
            ax.grid(alpha=0.3)
        axes[row, 2].axhline(0, color="black", linewidth=0.8)
    figure.tight_layout()
    with storage.atomic_path(results / "budget_curve.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    print(f"wrote {results / 'budget_curve.md'} and {results / 'budget_curve.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BASELINE), help="k20: 20 per class, balanced; steps: the imbalanced profile")
    parser.add_argument("--width", type=int, help="train.width: 128 = 1x (the 28-px default), 256 = 2x")
    parser.add_argument("--snapshots", default=DEFAULT_SNAPSHOTS, help="GAN steps to snapshot at (comma-separated)")
    parser.add_argument("--seeds", type=int, default=3, help="evaluate.seeds: classifier seeds per condition")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leaves the second core to others)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (repeatable)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default /tmp/budget-<dataset>-w<width>)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where budget_*.{json,md} go (default benchmarks/results)")
    parser.add_argument("--mnist", type=Path, default=SHARED / "data" / "mnist10k")
    parser.add_argument("--make-split", type=Path, default=SHARED / "bench" / "make_split.py")
    parser.add_argument("--tabulate", action="store_true", help="only combine every budget_*.json in --results")
    args = parser.parse_args()
    # the stages' progress (GAN steps every 10%, classifier seeds, resumes) as timestamped lines in the log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    sys.path.insert(0, str(ROOT))  # `pipeline` from the project (or frozen copy) this file belongs to
    if args.tabulate:
        tabulate(args.results)
        return
    if args.dataset is None or args.width is None:
        parser.error("--dataset and --width are required (or --tabulate)")
    study(args)


if __name__ == "__main__":
    main()
