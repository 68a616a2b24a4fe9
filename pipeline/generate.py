"""Stage 3: write synthetic PNGs per class from the EMA generator, one seed per image: per_class each, or (balance)
enough to top every class up to a common total."""
from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor  # Pillow and file I/O release the GIL
from pathlib import Path

import torch

from pipeline import filtering, storage
from pipeline.config import GenerateConfig
from pipeline.device import default_generate_batch, pick_device
from pipeline.errors import AugmentError
from pipeline.generators import load_generator, read_spec, to_uint8
from pipeline.progress import logger, track

CLASS_SEED_STRIDE = 1_000_000_000  # seeds of class c are seed + c * stride + i: unique while per_class < stride
STATE_FILE = ".generating.json"      # present only while a generate run is unfinished; lets a re-run resume


def sample_seed(config: GenerateConfig, class_index: int, image_index: int) -> int:
    return config.seed + class_index * CLASS_SEED_STRIDE + image_index


def noise_for(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One latent per seed, independent of how seeds are batched."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def _sized(config: GenerateConfig, device: torch.device) -> GenerateConfig:
    """batch_size 0: the device's default (pipeline.device.GENERATE_BATCH)."""
    return config if config.batch_size else dataclasses.replace(config, batch_size=default_generate_batch(device))


def _candidates(config: GenerateConfig, count: int) -> int:
    return max(count, int(round(count * config.oversample)))


def _seeds(config: GenerateConfig, generator, spec: dict, ingest_dir, device, counts: list[int],
           out: Path) -> tuple[dict[int, list[int]], dict | None]:
    """Each class's seeds in writing order: the first counts[c] seeds, or (filter=teacher) the counts[c] best of
    counts[c] * oversample candidates, with their teacher scores."""
    classes = range(len(spec["classes"]))
    if config.filter == "none":
        return {c: [sample_seed(config, c, i) for i in range(counts[c])] for c in classes}, None
    if ingest_dir is None:
        raise AugmentError("generate.filter=teacher needs the ingested training images (run the ingest stage first)")
    teacher = filtering.train_teacher(ingest_dir, config.seed, device, cache=out / filtering.CACHE)
    candidates = {c: [sample_seed(config, c, i) for i in range(_candidates(config, counts[c]))] for c in classes}
    return filtering.select_seeds(generator, teacher, candidates, {c: counts[c] for c in classes}, noise_for,
                                  spec["z_dim"], config.batch_size, device)


def estimated_bytes(per_class: int, num_classes: int, image_size: int, channels: int) -> int:
    """A generous upper bound on the synthetic set's size: PNG at compress level 1 rarely beats raw pixels on
    small images, plus file-system overhead per file (one 4 KiB block on most file systems)."""
    return per_class * num_classes * (image_size * image_size * channels + 4096)


def check_disk_space(folder: str | Path, needed: int) -> None:
    """Fail before writing anything when the file system under folder cannot hold `needed` bytes."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise AugmentError(f"the synthetic images need about {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free "
                           f"under '{probe}'; lower --per-class or choose another --out")


def plan_counts(config: GenerateConfig, real_counts: dict[str, int]) -> list[dict]:
    """How many images each class gets and why (one row per class, in class order). Balance off: per_class each.
    Balance on: a target total per class, per_class or (0) the largest class's real count; class c gets
    max(0, target - real_c), so a rare class gets the most and a class already at the target gets none."""
    if not config.balance:
        return [{"class": c, "real_train": n, "generated": config.per_class, "reason": "generate.per_class (balance off)"}
                for c, n in real_counts.items()]
    largest = max(real_counts.values())
    target = config.per_class or largest
    why = f"the largest class's real count {largest}" if config.per_class == 0 else f"generate.per_class {target}"
    rows = [{"class": c, "real_train": n, "generated": max(0, target - n),
             "reason": f"balance: topped up to {target} ({why})" if n < target else f"balance: {n} real >= target {target}"}
            for c, n in real_counts.items()]
    if not any(r["generated"] for r in rows):
        raise AugmentError(f"balance target {target} is not above any class's real training count (largest {largest}); "
                           "nothing to generate: raise --per-class or drop --balance")
    return rows


def _real_counts(ingest_dir: Path | None, classes: list[str]) -> dict[str, int | None]:
    """Real training images per class from ingest/stats.json (None when unknown, e.g. a generator from elsewhere)."""
    stats_path = ingest_dir / "stats.json" if ingest_dir is not None else None
    if stats_path is None or not stats_path.is_file():
        return {c: None for c in classes}
    per_class = storage.read_json_object(stats_path, ("per_class",))["per_class"]
    if not isinstance(per_class, dict) or set(per_class) != set(classes):
        raise AugmentError(f"'{stats_path}' lists other classes than the generator; re-run ingest and train")
    return {c: int(per_class[c]["train"]) for c in classes}


def _remove_unlisted(out: Path, expected: set[Path]) -> None:
    """An interrupted run with other per-class counts may have left images (and folders) this plan does not list."""
    for stale in [p for p in out.glob("*/*.png") if p not in expected]:
        stale.unlink()
    for folder in [p for p in out.iterdir() if p.is_dir() and not any(p.iterdir())]:
        folder.rmdir()


def run(config: GenerateConfig, gan_dir: str | Path, out_dir: str | Path, ingest_dir: str | Path | None = None) -> dict:
    """Write out_dir/<class>/<i>.png, out_dir/manifest.csv (one row per image) and out_dir/per_class.csv (per class:
    real training count, generated count, reason); return the counts. Balance needs ingest_dir's stats.json."""
    start = time.perf_counter()
    device = pick_device(config.device)
    config = _sized(config, device)
    generator, spec, checkpoint = load_generator(Path(gan_dir), device)
    out, classes = Path(out_dir), spec["classes"]
    real_counts = _real_counts(Path(ingest_dir) if ingest_dir is not None else None, classes)
    if config.balance and None in real_counts.values():
        raise AugmentError("generate.balance needs the ingest stage's stats.json (real images per class); run ingest first")
    plan = plan_counts(config, real_counts)
    counts = [row["generated"] for row in plan]
    check_disk_space(out, estimated_bytes(max(counts), len(classes), spec["image_size"], spec["channels"]))
    state = {"checkpoint": checkpoint, "seed": config.seed, "filter": config.filter, "oversample": config.oversample}
    resuming = (out / STATE_FILE).is_file() and storage.read_json(out / STATE_FILE) == state
    if resuming:
        storage.refuse_links(out)
        storage.remove_stale_temp_files(out)
    else:
        teacher = storage.read_plain_bytes(out / filtering.CACHE)  # kept across the fresh start: it depends on the
        storage.fresh_dir(out)                                       # training images and seed, not on the images made
        if teacher is not None:
            with storage.atomic_path(out / filtering.CACHE) as tmp:
                tmp.write_bytes(teacher)
        storage.write_json(out / STATE_FILE, state)
    seeds, scores = _seeds(config, generator, spec, ingest_dir, device, counts, out)
    jobs = [(c, i) for c in range(len(classes)) for i in range(counts[c])]
    names = {(c, i): out / classes[c] / f"{i:06d}.png" for c, i in jobs}
    todo = [job for job in jobs if not (resuming and names[job].is_file())]
    if resuming:
        logger.info("resuming generation: %d of %d images already written", len(jobs) - len(todo), len(jobs))
        _remove_unlisted(out, set(names.values()))
    for name, count in zip(classes, counts):
        if count:  # no empty folders: torchvision's ImageFolder refuses a class folder without images
            storage.real_dir(out / name, mark=False)  # ImageFolder class folders: the stage folder holds the marker
    batches = [todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool, torch.no_grad():
        pending = []
        for batch in track(batches, len(batches), "generate: batches"):
            z = noise_for([seeds[c][i] for c, i in batch], spec["z_dim"]).to(device)
            labels = torch.tensor([c for c, _ in batch], device=device)
            pixels = to_uint8(generator(z, labels))
            pending += [pool.submit(storage.write_png, names[job], p) for job, p in zip(batch, pixels)]
            while len(pending) > 2 * config.batch_size or (pending and pending[0].done()):
                pending.pop(0).result()  # bounds memory and re-raises a failed write
        for future in pending:
            future.result()
    storage.sync_to_disk()
    rows = [[f"{classes[c]}/{names[(c, i)].name}", classes[c], seeds[c][i], checkpoint, scores[c][i] if scores else ""]
            for c, i in jobs]
    storage.write_csv(out / "manifest.csv", ["file", "class", "seed", "checkpoint_sha256", "teacher_score"], rows)
    storage.write_csv(out / "per_class.csv", ["class", "real_train", "generated", "reason"],
                      [[r["class"], "" if r["real_train"] is None else r["real_train"], r["generated"], r["reason"]] for r in plan])
    (out / STATE_FILE).unlink()
    summary = {"per_class": config.per_class, "balance": config.balance, "classes": classes, "n_images": len(jobs),
               "generated": {r["class"]: r["generated"] for r in plan}, "checkpoint_sha256": checkpoint,
               "filter": config.filter, "seconds": round(time.perf_counter() - start, 2)}
    if scores:
        summary["candidates_per_class"] = ({classes[c]: _candidates(config, n) for c, n in enumerate(counts)} if config.balance
                                           else _candidates(config, config.per_class))
        summary["min_teacher_score"] = {classes[c]: min(v) for c, v in scores.items() if v}
    storage.write_json(out / "summary.json", summary)
    return summary


PARTS = ".parts"  # out_dir/.parts/<class>.csv: one class's manifest rows while classes are generated apart


def run_class(config: GenerateConfig, gan_dir: str | Path, out_dir: str | Path, name: str) -> dict:
    """One class's images (a unit of fan-out): out_dir/<name>/<i>.png, the same files `run` writes for that class,
    and its manifest rows in out_dir/.parts/<name>.csv for merge_classes."""
    device = pick_device(config.device)
    config = _sized(config, device)
    generator, spec, checkpoint = load_generator(Path(gan_dir), device)
    if name not in spec["classes"]:
        raise AugmentError(f"class '{name}' is not one the generator in '{gan_dir}' was trained on")
    index, out, start_time = spec["classes"].index(name), Path(out_dir), time.perf_counter()
    folder = storage.fresh_subdir(out, name)
    seeds = [sample_seed(config, index, i) for i in range(config.per_class)]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool, torch.no_grad():
        for start in range(0, len(seeds), config.batch_size):
            batch = seeds[start:start + config.batch_size]
            labels = torch.full((len(batch),), index, device=device)
            pixels = to_uint8(generator(noise_for(batch, spec["z_dim"]).to(device), labels))
            list(pool.map(storage.write_png, [folder / f"{start + i:06d}.png" for i in range(len(batch))], pixels))
    storage.sync_to_disk()
    rows = [[f"{name}/{i:06d}.png", name, seed, checkpoint] for i, seed in enumerate(seeds)]
    storage.write_csv(out / PARTS / f"{name}.csv", ["file", "class", "seed", "checkpoint_sha256"], rows)
    summary = {"class": name, "n_images": len(rows), "seconds": round(time.perf_counter() - start_time, 2)}
    storage.write_json(out / PARTS / f"{name}.json", summary)
    return summary


def merge_classes(config: GenerateConfig, gan_dir: str | Path, out_dir: str | Path, ingest_dir: str | Path | None = None) -> dict:
    """Join the classes run_class wrote into manifest.csv (what evaluate reads); drop anything else in out_dir."""
    spec = read_spec(Path(gan_dir) / "generator.json").to_dict()
    checkpoint = storage.sha256_file(Path(gan_dir) / "generator_ema.safetensors")
    out, rows, seconds = Path(out_dir), [], 0.0
    for index, name in enumerate(spec["classes"]):
        part = out / PARTS / f"{name}.csv"
        if not part.is_file():
            raise AugmentError(f"class '{name}' has no generated images in '{out}'; generate it first")
        with open(part, newline="") as handle:
            part_rows = list(csv.reader(handle))[1:]
        expected = [str(sample_seed(config, index, i)) for i in range(config.per_class)]
        if [r[2] for r in part_rows] != expected or any(r[3] != checkpoint for r in part_rows):
            raise AugmentError(f"'{part}' is from another generate run or generator; generate class '{name}' again")
        rows += part_rows
        seconds += storage.read_json_object(out / PARTS / f"{name}.json", ("seconds",))["seconds"]
    for stale in out.iterdir():  # an earlier run's classes, state file and the parts themselves
        if stale.name not in spec["classes"] and stale.name != storage.STAGE_MARKER:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    storage.write_csv(out / "manifest.csv", ["file", "class", "seed", "checkpoint_sha256"], rows)
    plan = plan_counts(config, _real_counts(Path(ingest_dir) if ingest_dir is not None else None, spec["classes"]))
    storage.write_csv(out / "per_class.csv", ["class", "real_train", "generated", "reason"],
                      [[r["class"], "" if r["real_train"] is None else r["real_train"], r["generated"], r["reason"]] for r in plan])
    summary = {"per_class": config.per_class, "classes": spec["classes"], "n_images": len(rows),
               "checkpoint_sha256": checkpoint, "seconds": round(seconds, 2)}  # summed over the classes' tasks
    storage.write_json(out / "summary.json", summary)
    return summary
