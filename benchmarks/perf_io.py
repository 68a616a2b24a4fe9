"""I/O-side measurements for benchmarks/performance.py: the benchmark splits, `augment run` as a child process (wall
time, peak RSS), and generation vs the PNG encode bound."""
from __future__ import annotations

import io
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SOURCE = SHARED / "data" / "mnist10k"


def make_split(work: Path, per_class: int, test_total: int) -> Path:
    """../shared/bench/make_split.py's split (seed 0), made once per size and reused by later runs."""
    out = work / f"split_k{per_class}_t{test_total}"
    if (out / ".complete").is_file():
        return out
    if not SOURCE.is_dir():
        sys.exit(f"performance: {SOURCE} is missing; the benchmark needs ../shared beside the project")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_split.py"), str(SOURCE), str(out), "--per-class",
                    str(per_class), "--test-total", str(test_total), "--seed", "0"], check=True, capture_output=True)
    (out / ".complete").touch()
    return out


def child_env(threads: int, work: Path) -> dict:
    """The environment of an `augment` child: threads chosen deliberately, an offline Prefect home of its own."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PREFECT_HOME=str(work / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="60",
               DVC_NO_ANALYTICS="1")
    env.pop("PREFECT_API_URL", None)  # always the temporary local server, as a user's first run gets
    return env


def run_augment(arguments: list[str], work: Path, log_path: Path, threads: int) -> dict:
    """Run `augment ...` in `work` (no params.yaml there: built-in defaults): wall time, where it went, and peak RSS.
    The peak comes from wait4 on this one child (earlier children of the benchmark do not leak into it); a sampler
    of the child's own VmRSS (every 0.25 s) tells in which stage the peak falls."""
    command = [str(Path(sys.executable).with_name("augment")), *arguments]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before, clock, started = os.getloadavg(), time.perf_counter(), time.time()
    samples, stop = [], threading.Event()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, cwd=work, env=child_env(threads, work), stdout=log, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=_sample_rss, args=(child.pid, samples, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        stop.set()
        sampler.join()
    wall = time.perf_counter() - clock
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"`{shlex.join(command)}` exited with {child.returncode}; see {log_path}")
    marks = log_marks(log_path, started)
    return {"command": shlex.join(["augment", *arguments]), "wall_seconds": round(wall, 1),
            "phases": phases(marks, started, started + wall), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "sampled_peak_rss_mib_by_stage": stage_peaks(marks, samples),
            "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()]}


def _sample_rss(pid: int, samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            return
        if found:
            samples.append((time.time(), int(found.group(1)) / 1024))
        stop.wait(0.25)


MARKS = {"prefect_server_start": r"Starting temporary server", "flow_start": r"Beginning flow run",
         "flow_end": r"Flow run .* Finished in state", "task": r"Task run '(\w+)-\w+' - Finished in state"}


def log_marks(log_path: Path, started: float) -> dict:
    """Epoch times of the log's landmarks (its stamps are HH:MM:SS.mmm local time): Prefect server start, flow start
    and end, and the end of every task ("task:ingest", ...)."""
    day = time.localtime(started)
    midnight = started - (day.tm_hour * 3600 + day.tm_min * 60 + day.tm_sec + started % 1)
    marks = {}
    for line in log_path.read_text(errors="replace").splitlines():
        stamp = re.match(r"(\d\d):(\d\d):(\d\d\.\d+) \| \w+ +\| (.*)", line)
        if not stamp:
            continue
        at = midnight + int(stamp.group(1)) * 3600 + int(stamp.group(2)) * 60 + float(stamp.group(3))
        at += 86400 if at < started - 60 else 0  # the run went past midnight
        for name, pattern in MARKS.items():
            found = re.search(pattern, stamp.group(4))
            if found:
                marks[f"task:{found.group(1)}" if name == "task" else name] = at
    return marks


def phases(marks: dict, started: float, ended: float) -> dict:
    """Where the wall time went: start-up (imports, input checks), Prefect's temporary server start, the flow,
    shutdown. Empty when the log lacks a landmark."""
    if not {"prefect_server_start", "flow_start", "flow_end"} <= set(marks):
        return {}
    return {"startup_seconds": round(marks["prefect_server_start"] - started, 1),
            "prefect_server_start_seconds": round(marks["flow_start"] - marks["prefect_server_start"], 1),
            "flow_seconds": round(marks["flow_end"] - marks["flow_start"], 1),
            "shutdown_seconds": round(ended - marks["flow_end"], 1)}


def stage_peaks(marks: dict, samples: list) -> dict:
    """The highest sampled RSS before the flow and within each task (a task spans from the previous mark to its end)."""
    edges = sorted((at, name) for name, at in marks.items() if name == "flow_start" or name.startswith("task:"))
    peaks, previous = {}, 0.0
    for at, name in edges:
        inside = [rss for t, rss in samples if previous < t <= at]
        if inside:
            peaks["before_flow" if name == "flow_start" else name[5:]] = round(max(inside), 1)
        previous = at
    return peaks


def png_compress_level() -> int:
    """The compress level generation writes PNGs with (pipeline.storage.write_png's default, so the bound follows it)."""
    import inspect

    from pipeline import storage

    return inspect.signature(storage.write_png).parameters["compress_level"].default


_PIXELS: np.ndarray | None = None  # set before the pool forks, so the children inherit the arrays without copies
_LEVEL = 1
_FOLDER: Path | None = None


def _encode(bounds: tuple[int, int]) -> int:
    total = 0
    for pixels in _PIXELS[bounds[0]:bounds[1]]:
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG", compress_level=_LEVEL)
        total += buffer.tell()
    return total


def _encode_and_write(bounds: tuple[int, int]) -> int:
    from pipeline.storage import write_png  # the pipeline's own writer: encode, temp file, rename

    for index in range(*bounds):
        write_png(_FOLDER / f"{index:06d}.png", _PIXELS[index])
    return bounds[1] - bounds[0]


def pool_rate(pixels: np.ndarray, level: int, processes: int, write_to: Path | None = None) -> dict:
    """Images/s of `processes` forked workers each encoding (and with write_to, also writing) an equal share."""
    global _PIXELS, _LEVEL, _FOLDER
    _PIXELS, _LEVEL, _FOLDER = pixels, level, write_to
    edges = np.linspace(0, len(pixels), processes + 1).astype(int)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(abs, range(processes))  # workers started before the clock
        clock = time.perf_counter()
        results = pool.map(_encode_and_write if write_to else _encode, list(zip(edges[:-1], edges[1:])), chunksize=1)
        seconds = time.perf_counter() - clock
    figures = {"images_per_second": round(len(pixels) / seconds, 1), "seconds": round(seconds, 3), "processes": processes}
    if not write_to:
        figures["mean_png_bytes"] = round(sum(results) / len(pixels), 1)
    return figures


def generated_pixels(gan_dir: Path, per_class: int, batch_size: int) -> tuple[np.ndarray, dict]:
    """The uint8 images generate.run writes (same seeds, same batches), kept in memory; noise and forward timed."""
    import torch

    from pipeline import generate, generators
    from pipeline.config import GenerateConfig
    from pipeline.generators import to_uint8

    config = GenerateConfig(per_class=per_class, batch_size=batch_size, device="cpu", filter="none")
    generator, spec, _ = generators.load_generator(gan_dir, torch.device("cpu"))
    jobs = [(c, i) for c in range(len(spec["classes"])) for i in range(per_class)]
    parts, noise_seconds, forward_seconds = [], 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start:start + batch_size]
            clock = time.perf_counter()
            z = generate.noise_for([generate.sample_seed(config, c, i) for c, i in batch], spec["z_dim"])
            noise_seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            parts.append(to_uint8(generator(z, torch.tensor([c for c, _ in batch]))))
            forward_seconds += time.perf_counter() - clock
    n = len(jobs)
    return np.concatenate(parts), {"noise_images_per_second": round(n / noise_seconds, 1),
                                   "forward_images_per_second": round(n / forward_seconds, 1)}


def generate_vs_bound(gan_dir: Path, out_dir: Path, per_class: int, processes: int) -> dict:
    """generate.run's images/s, the encode bound, and the parts in between (generator alone, encode + file writes)."""
    from pipeline import generate
    from pipeline.config import GenerateConfig

    config = GenerateConfig(per_class=per_class, device="cpu", filter="none")  # generation + writing alone
    summary = generate.run(config, gan_dir, out_dir)
    ours = summary["n_images"] / summary["seconds"]
    shutil.rmtree(out_dir, ignore_errors=True)
    pixels, generator_figures = generated_pixels(gan_dir, per_class, config.batch_size)
    level = png_compress_level()
    bound = pool_rate(pixels, level, processes)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as folder:
        written = pool_rate(pixels, level, processes, write_to=Path(folder))
    return {"ours_images_per_second": round(ours, 1), "n_images": summary["n_images"], "ours_seconds": summary["seconds"],
            "encode_bound": bound, "encode_and_write_files": written, "compress_level": level, **generator_figures}
