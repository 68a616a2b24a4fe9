"""Issue #33's acceptance, measured: outside synthetic sources next to the 20-per-class MNIST split, in one
evaluation (what `augment evaluate --dataset SPLIT --synthetic ...` runs: ingest, sources, evaluate, every default
but the seeds):

  * extra:  300 more REAL MNIST images per class, outside the split, posing as synthetic (a source that helps),
  * wrong:  the same 300 per class filed under the wrong class (class c's folder holds digit c+1): must not be picked,
  * noise:  uniform noise images, 300 per class: must not be picked,
  * ours:   the tool's own default generator's images from an earlier run (--ours FOLDER), as a third kind.

    python benchmarks/outside_sources.py --seeds 5 --threads 1 --ours /tmp/budget-k20-w128/snapshots/step_002000/synthetic

Writes benchmarks/results/outside_sources.{json,md}: each source's test gain over real+aug (paired, 95% CI), what the
sources stage excluded, fidelity, and the recommendation (chosen on the 40 validation images only).
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import config as config_module
from pipeline import storage
from pipeline.stages import WITHOUT_GAN, run_stage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_sources(mnist: Path, work: Path, per_class: int, skip: int) -> dict[str, Path]:
    """extra, wrong and noise folders (ImageFolders of the ten digit classes)."""
    classes = sorted(d.name for d in mnist.iterdir() if d.is_dir())
    rng = np.random.default_rng(0)
    folders = {name: work / name for name in ("extra", "wrong", "noise")}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    for index, name in enumerate(classes):
        files = sorted(p for p in (mnist / name).iterdir() if p.is_file())
        random.Random(f"0:{name}").shuffle(files)  # make_split.py's order: train first, then test, then unused
        wrong_class = classes[(index - 1) % len(classes)]  # digit c goes into the folder of c - 1: every image mislabelled
        for target in (folders["extra"] / name, folders["wrong"] / wrong_class, folders["noise"] / name):
            target.mkdir(parents=True, exist_ok=True)
        for path in files[skip:skip + per_class]:
            shutil.copy(path, folders["extra"] / name / path.name)
            shutil.copy(path, folders["wrong"] / wrong_class / path.name)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folders["noise"] / name / f"{i:04d}.png")
    return folders


def summarize(metrics: dict) -> dict:
    sources = list(metrics.get("sources", {}))
    gains = {name: gain for name, gain in metrics["gain"].items() if name.endswith("_vs_real+aug")}
    return {"conditions": {n: {"accuracy": c["accuracy_mean"], "worst_class": c["worst_class_accuracy_mean"]}
                           for n, c in metrics["conditions"].items()},
            "gains_vs_real_aug": {n: {"mean": g["mean"], "ci95": g["ci95"], "verdict": g["verdict"]} for n, g in gains.items()},
            "sources": {n: {k: metrics["sources"][n].get(k) for k in ("n_images", "n_excluded", "n_quarantined", "missing_classes")}
                        | {"frechet_distance": metrics["sources"][n]["fidelity"]["frechet_distance"],
                           "precision": metrics["sources"][n]["fidelity"]["precision"],
                           "suspected_copies": metrics["sources"][n]["fidelity"]["nearest_real"]["suspected_copies"]}
                        for n in sources},
            "recommendation": {k: metrics["recommendation"].get(k) for k in ("setting", "use_synthetic", "inconclusive", "reason")}
                              | {"test": (metrics["recommendation"].get("test_result") or {}).get("mean")}}


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = ["# Outside synthetic sources on the 20-per-class MNIST split", "", f"Command: `{result['command']}`  ",
             f"{result['seeds']} paired seeds, every other setting the default; commit {result['commit']}; "
             f"{result['seconds']:.0f} s.", "", "| source | images kept | excluded (copies of val/test) | Fréchet distance | precision | "
             "suspected copies of training images |", "|---|---|---|---|---|---|"]
    for name, v in s["sources"].items():
        lines.append(f"| {name} | {v['n_images']} | {v['n_excluded']} | {v['frechet_distance']:.3f} | {v['precision']:.3f} | "
                     f"{v['suspected_copies']} |")
    lines += ["", "| condition vs real+aug | gain (points) | 95% CI | verdict |", "|---|---|---|---|"]
    for name, g in s["gains_vs_real_aug"].items():
        ci = "n/a" if g["ci95"] is None else f"[{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]"
        lines.append(f"| {name.split('_vs_')[0]} | {100 * g['mean']:+.2f} | {ci} | {g['verdict']} |")
    rec = s["recommendation"]
    lines += ["", f"Recommendation (validation only): **{rec['setting']}** (use synthetic: {rec['use_synthetic']}; "
              f"inconclusive: {rec['inconclusive']}), test accuracy {100 * (rec['test'] or 0):.2f}. {rec['reason']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=SHARED / "data" / "mnist10k")
    parser.add_argument("--work", type=Path, default=Path("/tmp/outside-sources"))
    parser.add_argument("--ours", type=Path, help="the synthetic/ folder of an earlier default run on the same split")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    split = args.work / "split"
    if not split.is_dir():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_split.py"), str(args.mnist), str(split), "--per-class",
                        "20", "--test-total", "5000", "--seed", "0"], check=True)
    folders = make_sources(args.mnist, args.work, args.per_class, 20 + 500)
    if args.ours:
        folders["ours"] = args.ours
    sources = ", ".join(f"{name}={folder}" for name, folder in folders.items())
    config = config_module.load(None, [f"ingest.dataset={split}", f"evaluate.seeds={args.seeds}",
                                       f"evaluate.sources={sources}", *args.overrides])
    out = args.work / "run"
    shutil.rmtree(out, ignore_errors=True)
    for stage in WITHOUT_GAN:
        metrics = run_stage(stage, config, out)
        print(f"{stage} done at {time.perf_counter() - clock:.0f} s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"command": "python benchmarks/outside_sources.py " + " ".join(sys.argv[1:]), "commit": commit,
              "seeds": args.seeds, "seconds": time.perf_counter() - clock, "summary": summarize(metrics),
              "accuracy_runs": {n: c["accuracy_runs"] for n, c in metrics["conditions"].items()},
              "validation": metrics["recommendation"].get("validation")}
    storage.write_json(args.results / "outside_sources.json", result)
    storage.write_text(args.results / "outside_sources.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
