"""Measure the GPU path in one command: GAN training images/s (28 px gray, 64 px colour; fp32 and bf16; compile off
and on), classifier steps/s (seeds one after another, two at once, and eight as one ensemble), generation images/s
(with and without writing PNGs), peak memory, and one default run on the embedded digits and on the 64 px sample
photos with seconds per stage; the same micro-benchmarks on the CPU for the ratio. ~5 minutes on one GPU.

It needs only torch, torchvision, numpy, scipy, scikit-learn, pillow, safetensors and pyyaml, run from the source
tree: no install step, no Prefect, no DVC (a lent GPU machine has no package index), any recent torch:

    PYTHONPATH=. python3 benchmarks/gpu_check.py                 # the machine's GPU: benchmarks/results/gpu.{json,md}
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu   # a minute on a CPU (a test)
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --out benchmarks/results/gpu_check_cpu   # CPU reference

Every figure comes from the project's own code: the GAN step of pipeline.gan.step (what the trainer runs), the
evaluate stage's classifier (pipeline.classifier.train_classifier, pipeline.ensemble.train_ensemble),
pipeline.generate.run, and the stages run as `augment stage` runs them (pipeline.stages.run_stage). Random pixels
stand in for images where speed does not depend on content.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline import config as config_module
from pipeline import device as device_module
from pipeline import classifier, demo, ensemble, generate, storage
from pipeline.stages import STAGES, run_stage
from pipeline.gan.networks import default_width
from pipeline.generators import build_generator
from pipeline.plan import time_gan_steps

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"28px gray": (28, 1), "64px rgb": (64, 3)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors on a CUDA device since the last reset (None elsewhere: see the process RSS)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def environment(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(), "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": _cpu_name(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                    bf16=torch.cuda.is_bf16_supported())
    else:
        info.update(name=info["cpu"] if device.type == "cpu" else str(device), bf16=True)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gan_rate(device: torch.device, image_size: int, channels: int, precision: str, compile_: bool,
             steps: int, warmup: int, batch_size: int = 64) -> dict:
    """Images/s through the real GAN training step at the default train settings (timed after `warmup` steps, which
    include torch.compile's compilation when on)."""
    config = replace(config_module.TrainConfig(), precision=precision, compile=compile_, batch_size=batch_size)
    reset_peak(device)
    warmup_seconds, seconds_per_step, losses = time_gan_steps(config, image_size, channels, device, steps, warmup)
    if not all(np.isfinite(losses)):
        raise RuntimeError(f"GAN step produced non-finite losses {losses} ({image_size}px, {precision}, compile={compile_})")
    return {"images_per_second": round(batch_size / seconds_per_step, 1), "seconds_per_step": round(seconds_per_step, 5),
            "warmup_seconds": round(warmup_seconds, 2), "peak_mib": peak_mib(device)}


def classifier_rate(device: torch.device, image_size: int, channels: int, steps: int) -> dict:
    """Steps/s of the evaluate stage's classifier (default settings, real+aug condition), one seed, and two seeds
    trained at the same time in two threads (on CUDA each thread on its own stream)."""
    config = replace(config_module.EvaluateConfig(), steps=steps)
    rng = np.random.default_rng(0)
    real = (rng.integers(0, 256, (400, channels, image_size, image_size), dtype=np.uint8), np.arange(400) % 10)

    def train(seed: int) -> None:
        if device.type == "cuda":
            with torch.cuda.stream(torch.cuda.Stream(device)):
                classifier.train_classifier(config, classifier.REAL_AUG, seed, real, None, 10, device)
            synchronize(device)
        else:
            classifier.train_classifier(config, classifier.REAL_AUG, seed, real, None, 10, device)

    classifier.train_classifier(replace(config, steps=3), classifier.REAL_AUG, 0, real, None, 10, device)  # builds the kernels once
    synchronize(device)
    reset_peak(device)
    clock = time.perf_counter()
    train(0)
    train(1)
    sequential = time.perf_counter() - clock
    threads = [threading.Thread(target=train, args=(seed,)) for seed in (2, 3)]
    clock = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent = time.perf_counter() - clock
    members = [(classifier.REAL_AUG, seed) for seed in range(ENSEMBLE_MEMBERS)]
    ensemble.train_ensemble(replace(config, steps=3), members, real, [None] * len(members), 10, device)  # kernels
    synchronize(device)
    clock = time.perf_counter()
    ensemble.train_ensemble(config, members, real, [None] * len(members), 10, device)
    synchronize(device)
    batched = time.perf_counter() - clock
    return {"steps_per_second": round(2 * steps / sequential, 1), "two_seeds_at_once_steps_per_second": round(2 * steps / concurrent, 1),
            "two_at_once_speedup": round(sequential / concurrent, 2),
            f"ensemble_of_{ENSEMBLE_MEMBERS}_member_steps_per_second": round(ENSEMBLE_MEMBERS * steps / batched, 1),
            "ensemble_speedup": round((ENSEMBLE_MEMBERS * steps / batched) / (2 * steps / sequential), 2),
            "peak_mib": peak_mib(device)}


ENSEMBLE_MEMBERS = 8  # one seed's conditions on imbalanced data (evaluate.batched trains them as one module)


def generate_rate(device: torch.device, image_size: int, channels: int, images: int, batch_sizes: tuple[int, ...]) -> dict:
    """Generator forward images/s at several batch sizes (on the device, pixels back on the host), and
    pipeline.generate.run images/s, which also writes every image as a PNG (in a thread pool beside the device)."""
    spec = {"z_dim": 64, "width": default_width(image_size), "classes": [str(c) for c in range(10)], "channels": channels,
            "image_size": image_size}
    torch.manual_seed(0)
    generator = device_module.prepare_module(build_generator(spec).eval(), device)
    forward = {}
    with torch.no_grad():
        for batch in batch_sizes:
            z, labels = torch.randn(batch, 64, device=device), torch.arange(batch, device=device) % 10
            generator(z, labels).cpu()
            synchronize(device)
            rounds = max(1, images // batch)
            clock = time.perf_counter()
            for _ in range(rounds):
                generator(z, labels).cpu()
            forward[str(batch)] = round(rounds * batch / (time.perf_counter() - clock), 1)
    with tempfile.TemporaryDirectory() as folder:
        gan_dir = Path(folder) / "gan"
        storage.save_tensors(gan_dir / "generator_ema.safetensors", build_generator(spec).state_dict(), {"format": "augment-generator-v1"})
        storage.write_json(gan_dir / "generator.json", spec)
        config = replace(config_module.GenerateConfig(), per_class=max(1, images // 10), filter="none", device=device.type,
                         batch_size=device_module.default_generate_batch(device))
        clock = time.perf_counter()
        summary = generate.run(config, gan_dir, Path(folder) / "synthetic")
        written = round(summary["n_images"] / (time.perf_counter() - clock), 1)
    return {"forward_images_per_second": forward, "generate_run_images_per_second": written,
            "generate_batch_size": config.batch_size}


class Budget:
    """Seconds left of the check's time budget: parts that would not fit are recorded as skipped, not run."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + (seconds if seconds > 0 else float("inf"))

    def left(self) -> float:
        return self.end - time.perf_counter()

    def fits(self, estimate: float) -> bool:
        return self.left() >= estimate


def gan_variants(device: torch.device, quick: bool, compiled: bool) -> list[tuple[str, str]]:
    """(shape, precision) pairs to time, compiled or not. Quick compiles once (the branch runs, the figure is not the
    point); bf16 only where the device has it."""
    precisions = ("fp32", "bf16") if device.type != "cuda" or torch.cuda.is_bf16_supported() else ("fp32",)
    pairs = [(shape, precision) for shape in SHAPES for precision in precisions]
    return [("28px gray", "fp32")] if compiled and quick else pairs


def micro_gan(device: torch.device, quick: bool, budget: Budget, compiled: bool, figures: dict) -> None:
    """GAN step figures into figures['gan'] (compile on: each estimated at a minute of compilation)."""
    steps, warmup = (4, 2) if quick else ((60, 10) if device.type == "cpu" else (200, 30))
    for shape, precision in gan_variants(device, quick, compiled):
        key = f"{shape} {precision} compile={'on' if compiled else 'off'}"
        if not budget.fits(60 if compiled else 5):
            figures["gan"][key] = {"skipped": "time budget"}
            continue
        print(f"[{device.type}] GAN step {key} ...", flush=True)
        size, channels = SHAPES[shape]
        try:
            figures["gan"][key] = gan_rate(device, size, channels, precision, compiled, steps, warmup + (3 if compiled else 0))
        except Exception as error:  # a compile failure is a finding, not the end of the check
            figures["gan"][key] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        print(f"    {figures['gan'][key]}", flush=True)
    if not compiled and not quick:
        for shape, (size, channels) in SHAPES.items():
            for batch in (128, 256):  # the measurement a train.batch_size rule for GPUs needs
                key = f"{shape} fp32 batch={batch}"
                figures["gan"][key] = gan_rate(device, size, channels, "fp32", False, max(2, steps // 2), warmup, batch) \
                    if budget.fits(5) else {"skipped": "time budget"}
                print(f"[{device.type}] GAN step {key}: {figures['gan'][key]}", flush=True)


def micro(device: torch.device, quick: bool, budget: Budget) -> dict:
    """GAN steps (compile off), the classifier and generation on one device."""
    figures: dict = {"gan": {}, "classifier": {}, "generate": {}}
    micro_gan(device, quick, budget, False, figures)
    for shape, (size, channels) in SHAPES.items():
        classifier_steps = 6 if quick else (100 if device.type == "cpu" else 300)
        figures["classifier"][shape] = classifier_rate(device, size, channels, classifier_steps)
        print(f"[{device.type}] classifier {shape}: {figures['classifier'][shape]}", flush=True)
        images = 200 if quick else (2000 if device.type == "cpu" else 10000)
        figures["generate"][shape] = generate_rate(device, size, channels, images, (256,) if quick else (256, 1024, 4096))
        print(f"[{device.type}] generate {shape}: {figures['generate'][shape]}", flush=True)
    return figures


def pipeline_run(name: str, dataset: Path, out: Path, device: str, extra: list[str], timeout: float) -> dict:
    """One default run (its default settings unless `extra` overrides them) through the pipeline's own stages in this
    process, as `augment stage` runs them: no Prefect, no DVC, nothing installed (the lent GPU machine has neither).
    Wall seconds and seconds per stage; a stage that would start past the time budget is skipped."""
    overrides = [f"ingest.dataset={dataset}", f"train.device={device}", f"generate.device={device}", f"evaluate.device={device}",
                 *extra]
    config = device_module.resolve(config_module.load(None, overrides))
    print(f"[run] {name}: {' '.join(overrides)}", flush=True)
    clock = time.perf_counter()
    try:
        for stage in STAGES:
            if time.perf_counter() - clock > timeout:
                return {"error": f"stopped at the time budget after {timeout:.0f} s", "wall_seconds": round(timeout, 1)}
            run_stage(stage, config, out)
    except Exception as error:  # a failure is a finding of the check, not its end
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                "wall_seconds": round(time.perf_counter() - clock, 1)}
    wall = round(time.perf_counter() - clock, 1)
    stages = {"ingest": storage.read_json(out / "ingest" / "stats.json")["seconds"],
              "train": storage.read_json(out / "gan" / "summary.json")["seconds"],
              "generate": storage.read_json(out / "synthetic" / "summary.json")["seconds"],
              "evaluate": storage.read_json(out / "evaluation" / "metrics.json")["seconds"]}
    metrics = storage.read_json(out / "evaluation" / "metrics.json")
    return {"overrides": overrides, "wall_seconds": wall, "stage_seconds": stages,
            "gan_images_per_second": storage.read_json(out / "gan" / "summary.json")["images_per_second"],
            "accuracy": {name: round(100 * value["accuracy_mean"], 2) for name, value in metrics["conditions"].items()},
            "batched_evaluation": metrics["config"].get("batched"),
            "resolved": {"generate.batch_size": config.generate.batch_size, "train.precision": config.train.precision}}


def runs(device: torch.device, quick: bool, work: Path, budget: Budget) -> dict:
    """A default run on the embedded digits (8 px upscaled to 28) and on the 64 px sample photos."""
    demo.export_digits(work / "digits")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sample_photos.py"), str(work / "photos")], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    small = ["train.steps=4", "train.sample_every=2", "evaluate.seeds=1", "evaluate.steps=4", "generate.filter=none",
             "train.track_quality=false"] if quick else []
    per_class = "generate.per_class=20" if quick else "generate.per_class=1000"
    digits = pipeline_run("digits", work / "digits", work / "run-digits", device.type, [per_class, *small],
                          budget.left() * 0.4)  # the photo run takes longer
    photos = pipeline_run("photos", work / "photos", work / "run-photos", device.type,
                          [per_class, "ingest.image_size=64", *small], budget.left() * 0.8)
    return {"digits (default run)": digits, "photos 64px (default run)": photos}


def ratios(target: dict, cpu: dict) -> dict:
    """target / cpu for every figure both measured."""
    out = {}
    for section in ("gan", "classifier", "generate"):
        for key, value in target.get(section, {}).items():
            other = cpu.get(section, {}).get(key, {})
            for field in ("images_per_second", "steps_per_second", "generate_run_images_per_second"):
                if isinstance(value.get(field), (int, float)) and isinstance(other.get(field), (int, float)) and other[field]:
                    out[f"{section} {key} {field}"] = round(value[field] / other[field], 2)
    return out


def run_speedups(runs_here: dict, runs_reference: dict) -> dict:
    """Reference seconds / seconds here, per run and stage (the reference: the same default runs on a CPU)."""
    out = {}
    for name, run in runs_here.items():
        other = runs_reference.get(name, {})
        if "stage_seconds" in run and "stage_seconds" in other:
            out[name] = {stage: round(other["stage_seconds"][stage] / seconds, 2)
                         for stage, seconds in run["stage_seconds"].items() if seconds > 0}
            out[name]["wall"] = round(other["wall_seconds"] / run["wall_seconds"], 2)
    return out


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# GPU check: {env['name']}", "", f"Command: `{result['command']}`  ", f"Date: {result['date']}, "
             f"{result['seconds']:.0f} s in all. torch {env['torch']}, CUDA {env['cuda']}, {env['cpu_cores']} CPU cores ({env['cpu']}).", ""]
    for device_name, figures in result["micro"].items():
        lines += [f"## {device_name}", "", "| GAN training step | images/s | s/step | warm-up s | peak MiB |", "|---|---|---|---|---|"]
        for key, value in figures["gan"].items():
            if "error" in value or "skipped" in value:
                lines.append(f"| {key} | {'failed: ' + value['error'] if 'error' in value else 'skipped: ' + value['skipped']} | | | |")
            else:
                lines.append(f"| {key} | {value['images_per_second']} | {value['seconds_per_step']} | {value['warmup_seconds']} | {value['peak_mib'] or '-'} |")
        lines += ["", f"| classifier (real+aug) | steps/s | two seeds at once, steps/s | speed-up | ensemble of "
                  f"{ENSEMBLE_MEMBERS}, member steps/s | ensemble speed-up | peak MiB |", "|---|---|---|---|---|---|---|"]
        for key, value in figures["classifier"].items():
            ensemble_rate = value.get(f"ensemble_of_{ENSEMBLE_MEMBERS}_member_steps_per_second", "-")
            lines.append(f"| {key} | {value['steps_per_second']} | {value['two_seeds_at_once_steps_per_second']} | "
                         f"{value['two_at_once_speedup']} | {ensemble_rate} | {value.get('ensemble_speedup', '-')} | "
                         f"{value['peak_mib'] or '-'} |")
        lines += ["", "| generation | forward images/s by batch size | generate.run images/s (with PNGs) |", "|---|---|---|"]
        for key, value in figures["generate"].items():
            forward = ", ".join(f"{b}: {r}" for b, r in value["forward_images_per_second"].items())
            lines.append(f"| {key} | {forward} | {value['generate_run_images_per_second']} (batch {value['generate_batch_size']}) |")
        if "process_peak_rss_mib" in figures:
            lines += ["", f"Process peak RSS (all parts): {figures['process_peak_rss_mib']} MiB."]
        lines.append("")
    if result.get("ratios"):
        lines += ["## Ratio to the CPU", "", "| figure | ratio |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in result["ratios"].items()] + [""]
    if result.get("runs"):
        lines += ["## `augment run`", "", "| run | wall s | ingest | train | generate | evaluate | GAN images/s |", "|---|---|---|---|---|---|---|"]
        for key, value in result["runs"].items():
            if "error" in value:
                lines.append(f"| {key} | failed: {value['error']} | | | | | |")
                continue
            s = value["stage_seconds"]
            lines.append(f"| {key} | {value['wall_seconds']} | {s['ingest']} | {s['train']} | {s['generate']} | {s['evaluate']} | "
                         f"{value['gan_images_per_second']} |")
        lines.append("")
        lines += [f"- {key}: `{value.get('command', '')}`; accuracy {value.get('accuracy', {})}" for key, value in result["runs"].items()]
        lines.append("")
    if result.get("run_speedup_over_cpu_reference"):
        lines += ["Speed-up over the same runs on the 2-core CPU reference (benchmarks/results/gpu_check_cpu.md):", ""]
        lines += [f"- {key}: {value}" for key, value in result["run_speedup_over_cpu_reference"].items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cuda | mps | cpu")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (CI): checks the code path, not the speed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu", help="writes OUT.json and OUT.md")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU micro-benchmarks (the ratio)")
    parser.add_argument("--no-runs", action="store_true", help="skip the two `augment run`s")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: one per core)")
    parser.add_argument("--budget", type=float, default=300, help="seconds; parts that would not fit are skipped (0: no limit)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device_module.set_threads(args.threads)
    device = device_module.pick_device(args.device)
    result = {"command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
              "environment": environment(device), "micro": {}}
    print(json.dumps(result["environment"]), flush=True)
    budget = Budget(args.budget)
    # Most telling first: the device's step figures, then the two runs, then what compile adds, then the CPU ratio.
    figures = result["micro"][device.type] = micro(device, args.quick, budget)
    if not args.no_runs:
        work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        try:
            result["runs"] = runs(device, args.quick, work, budget)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    micro_gan(device, args.quick, budget, True, figures)
    if device.type != "cpu" and not args.no_cpu:
        cpu = torch.device("cpu")
        result["micro"]["cpu"] = micro(cpu, args.quick, budget)
        result["ratios"] = ratios(figures, result["micro"]["cpu"])
    reference = ROOT / "benchmarks" / "results" / "gpu_check_cpu.json"  # this project's 2-core CPU, full default runs
    if device.type != "cpu" and reference.is_file() and result.get("runs"):
        result["run_speedup_over_cpu_reference"] = run_speedups(result["runs"], storage.read_json(reference).get("runs", {}))
    figures["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    storage.write_json(args.out.with_suffix(".json"), result)
    with storage.atomic_path(args.out.with_suffix(".md")) as tmp:
        Path(tmp).write_text(markdown(result))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
