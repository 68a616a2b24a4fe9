"""Issue #8's levers measured on this CPU against today's code path, in one process, variants interleaved round by
round so drift hits them alike: the training step (channels_last, bf16 autocast, the other thread count, optionally
torch.compile), the generator's forward pass (channels_last, bf16), and PNG writing (4 threads as generate.py does,
vs 2 processes, vs serial). Prints figures; writes benchmarks/results/levers[-quick].{json,md}.

    python benchmarks/perf_levers.py --threads 2 [--compile] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_rounds(variants: dict, rounds: int) -> dict:
    """Call every variant once per round (in turn); median images/s of each."""
    rates = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            rates[name].append(measure())
    return {name: round(statistics.median(values), 1) for name, values in rates.items()}


def training_levers(threads: int, steps: int, rounds: int, compile_too: bool) -> dict:
    import torch

    import perf_train

    config = perf_train.bench_config(steps)
    makers = {"baseline fp32": {}, "channels_last": {"channels_last": True}, "bf16 autocast": {"precision": "bf16"},
              "bf16 + channels_last": {"precision": "bf16", "channels_last": True}}
    steppers = {name: perf_train.Step(config, 10, 1, 28, **options) for name, options in makers.items()}
    compile_seconds = None
    if compile_too:
        compiled = perf_train.Step(config, 10, 1, 28)
        compiled.step.generator_forward, compiled.step.discriminator_forward = torch.compile(compiled.generator), torch.compile(compiled.discriminator)
        steppers["torch.compile"] = compiled
    real = torch.rand(config.batch_size, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, 10, (config.batch_size,))
    for name, step in steppers.items():  # warm-up: spectral-norm init, allocator, compilation
        clock = time.perf_counter()
        for _ in range(3):
            step(real, labels)
        if name == "torch.compile":
            compile_seconds = round(time.perf_counter() - clock, 1)

    def rate(step, use_threads=threads):
        def measure():
            torch.set_num_threads(use_threads)
            clock = time.perf_counter()
            for _ in range(steps):
                step(real, labels)
            seconds = time.perf_counter() - clock
            torch.set_num_threads(threads)
            return steps * config.batch_size / seconds
        return measure

    variants = {name: rate(step) for name, step in steppers.items()}
    other = 1 if threads > 1 else 2
    variants[f"baseline at {other} thread(s)"] = rate(steppers["baseline fp32"], other)
    return {"images_per_second": timed_rounds(variants, rounds), "steps_per_measure": steps, "rounds": rounds,
            "compile_seconds": compile_seconds}


def generator_levers(gan_dir: Path | None, images: int, rounds: int) -> tuple[dict, object]:
    import torch

    from pipeline.gan.networks import Generator
    from pipeline.generators import to_uint8

    generator = Generator(64, 10, 1, 28, 128).eval()
    if gan_dir and (gan_dir / "generator_ema.safetensors").is_file():
        from pipeline import storage
        generator.load_state_dict(storage.load_tensors(gan_dir / "generator_ema.safetensors"))
    last = Generator(64, 10, 1, 28, 128).eval()
    last.load_state_dict(generator.state_dict())
    last.to(memory_format=torch.channels_last)
    z, labels = torch.randn(images, 64), torch.arange(images) % 10
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)

    def rate(net, context=contextlib.nullcontext):
        def measure():
            clock = time.perf_counter()
            with torch.no_grad(), context():
                for start in range(0, images, 256):  # generate.py's batch
                    to_uint8(net(z[start:start + 256], labels[start:start + 256]))
            return images / (time.perf_counter() - clock)
        return measure

    figures = timed_rounds({"fp32": rate(generator), "channels_last": rate(last), "bf16 autocast": rate(generator, bf16)}, rounds)
    with torch.no_grad():
        pixels = to_uint8(generator(z, labels))
    return {"images_per_second": figures, "trained_weights": bool(gan_dir)}, pixels


def writing_levers(pixels, rounds: int) -> dict:
    import perf_io
    from pipeline.storage import write_png

    def threads_4():
        with tempfile.TemporaryDirectory(dir="/tmp") as folder, ThreadPoolExecutor(4) as pool:
            clock = time.perf_counter()
            list(pool.map(lambda i: write_png(Path(folder) / f"{i:06d}.png", pixels[i]), range(len(pixels))))
            return len(pixels) / (time.perf_counter() - clock)

    def serial():
        with tempfile.TemporaryDirectory(dir="/tmp") as folder:
            clock = time.perf_counter()
            for i in range(len(pixels)):
                write_png(Path(folder) / f"{i:06d}.png", pixels[i])
            return len(pixels) / (time.perf_counter() - clock)

    def processes_2():
        with tempfile.TemporaryDirectory(dir="/tmp") as folder:
            return perf_io.pool_rate(pixels, 1, 2, write_to=Path(folder))["images_per_second"]

    return {"images_per_second": timed_rounds({"4 threads (generate.py)": threads_4, "2 processes": processes_2,
                                              "serial": serial}, rounds), "images": len(pixels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation on 2 cores)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gan-dir", type=Path, default=Path("/tmp/augment-perf/p1/gan"), help="trained generator, if any")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    from pipeline.device import set_threads

    set_threads(args.threads)
    steps, rounds, images = (10, 2, 1000) if args.quick else (30, 5, 5000)
    load_before, clock = os.getloadavg(), time.perf_counter()
    results = {"command": shlex.join(["python", "benchmarks/perf_levers.py", *sys.argv[1:]]), "threads": args.threads}
    results["training_step"] = training_levers(args.threads, steps, rounds, args.compile)
    print("training step:", json.dumps(results["training_step"]), flush=True)
    results["generator_forward"], pixels = generator_levers(args.gan_dir if args.gan_dir.is_dir() else None, images, rounds)
    print("generator forward:", json.dumps(results["generator_forward"]), flush=True)
    results["png_writing"] = writing_levers(pixels, rounds)
    print("PNG writing:", json.dumps(results["png_writing"]), flush=True)
    results.update(loadavg_before=[round(v, 2) for v in load_before], loadavg_after=[round(v, 2) for v in os.getloadavg()],
                   seconds=round(time.perf_counter() - clock, 1))
    stem = args.results / ("levers-quick" if args.quick else "levers")
    args.results.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"`{results['command']}` ({args.threads} thread(s); load average {results['loadavg_before'][0]:.2f} → "
             f"{results['loadavg_after'][0]:.2f}; images/s, median over {rounds} interleaved rounds)", "",
             "| part | variant | images/s | vs first |", "|---|---|---|---|"]
    for part in ("training_step", "generator_forward", "png_writing"):
        figures = results[part]["images_per_second"]
        first = next(iter(figures.values()))
        lines += [f"| {part} | {name} | {value:.0f} | {value / first:.2f}× |" for name, value in figures.items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
