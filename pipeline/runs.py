"""Work on a finished run folder (it holds config.json and the stage folders): more synthetic images from its
generator, its report re-rendered, and the recommended training set exported as an ImageFolder."""
from __future__ import annotations

import csv
import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline import config as config_module
from pipeline import generate, storage
from pipeline.errors import AugmentError
from pipeline.evaluate import stage as evaluate_stage
from pipeline.classifier import pools, topup_indices
from pipeline.evaluate.conditions import conditions_for
from pipeline.evaluate.report import write_report
from pipeline import runfolder

STALE = "stale.json"  # evaluation/stale.json: the synthetic set changed after this evaluation; re-evaluate


def load_config(run_dir: str | Path) -> config_module.Config:
    """The config a run recorded (config.json), validated."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise AugmentError(f"'{run_dir}' is not a run folder: it has no config.json (the folder `augment run --out` wrote)")
    return config_module.from_dict(storage.read_json(path))  # every value checked, as for params.yaml


def stale_reason(run_dir: str | Path) -> str | None:
    path = storage.stage_dirs(run_dir)["evaluation"] / STALE
    return str(storage.read_json_object(path, ("reason",))["reason"]) if path.is_file() else None


def regenerate(run_dir: str | Path, per_class: int) -> dict:
    """Generate per_class images per class again from the run's trained generator (no retraining; an interrupted
    call resumes), record the new count in config.json, and mark the evaluation stale until it is re-run."""
    config = load_config(run_dir)
    config = dataclasses.replace(config, generate=dataclasses.replace(config.generate, per_class=per_class))
    config_module.validate(config)
    with runfolder.open_run(run_dir, {"dataset": config.ingest.dataset}):
        return _regenerate(run_dir, config, per_class)


def _regenerate(run_dir: str | Path, config: config_module.Config, per_class: int) -> dict:
    dirs = storage.stage_dirs(run_dir)
    evaluated = (dirs["evaluation"] / "metrics.json").is_file()
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    if evaluated:  # first: an interrupted regeneration has already changed the images the evaluation describes
        storage.write_json(dirs["evaluation"] / STALE, {"per_class": per_class, "reason": f"regeneration with "
                           f"generate.per_class={per_class} started {when} and did not finish (run it again)"})
    summary = generate.run(config.generate, dirs["gan"], dirs["synthetic"], dirs["ingest"])
    storage.write_json(Path(run_dir) / "config.json", config.to_dict())
    if evaluated:
        storage.write_json(dirs["evaluation"] / STALE, {"per_class": per_class, "reason": f"the synthetic set was "
                           f"regenerated with generate.per_class={per_class} on {when}, after this evaluation"})
    return summary


def render_report(run_dir: str | Path) -> tuple[Path, dict]:
    """Re-render evaluation/report.html from the run's metrics and arrays; return its path and the metrics."""
    config = load_config(run_dir)
    with runfolder.open_run(run_dir, {}):  # a writer: report.html is replaced
        return _render_report(run_dir, config)


def _render_report(run_dir: str | Path, config: config_module.Config) -> tuple[Path, dict]:
    dirs = storage.stage_dirs(run_dir)
    metrics = _metrics(dirs["evaluation"])
    classes, real, _, _, sets = evaluate_stage.load_inputs(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["sources"])
    nearest = {}
    for name, images in sets.items():
        distances_path = dirs["evaluation"] / evaluate_stage.nearest_file(name)
        if not distances_path.is_file():
            raise AugmentError(f"'{distances_path}' is missing (an evaluation from an older version); re-run the evaluate stage")
        nearest[name] = storage.load_array(distances_path)
        if nearest[name].ndim != 2:
            raise AugmentError(f"'{distances_path}' is from an older version (no nearest-image indices); re-run the evaluate stage")
        if nearest[name].shape[1] != len(images[1]):
            nearest[name] = None  # regenerated since the evaluation (the report says stale): no copy pairs to show
    gan = dirs["gan"] if dirs["gan"].is_dir() else None
    path = write_report(dirs["evaluation"] / "report.html", metrics, real, sets, nearest, gan, dirs["ingest"],
                        dirs["synthetic"], stale=stale_reason(run_dir))
    return path, metrics


def _metrics(evaluation_dir: Path) -> dict:
    path = evaluation_dir / "metrics.json"
    if not path.is_file():
        raise AugmentError(f"'{path}' does not exist: the run has not finished its evaluate stage")
    return storage.read_json_object(path, ("conditions", "recommendation", "gain", "classes"))


EXPORT_COLUMNS = ["file", "class", "source", "origin", "seed", "weight"]


def export_training_set(run_dir: str | Path, out_dir: str | Path, setting: str | None = None) -> dict:
    """Write the recommended training set as out_dir/<class>/*.png: the real training images as ingested (the
    validation and test images are left out) and the synthetic images the recommended setting trains on, with
    out_dir/manifest.csv (file, class, source real|synthetic, origin file or generator seed, sampling weight).
    Drawing images with probability `weight` (torch's WeightedRandomSampler) reproduces the recommended batch mix:
    the synthetic share of every batch, or the class-balanced re-sampling / top-up. `setting` exports another
    evaluated condition that trains on real images instead of the recommended one."""
    config, out = load_config(run_dir), Path(out_dir)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise AugmentError(f"'{out}' exists and is not an empty folder (or is a link); export into a new folder")
    inputs = {"dataset": _dataset_path(config, run_dir), "run folder": run_dir}
    with runfolder.open_run(run_dir, {"dataset": inputs["dataset"]}):  # nothing may change the run while it is read
        for what, folder in inputs.items():  # never into (or around) the user's dataset or the run itself
            runfolder.check_output_location(folder, out, what)
        return _export(config, run_dir, out, setting)


def _dataset_path(config: config_module.Config, run_dir: str | Path) -> Path:
    """The run's dataset: config.json holds its absolute path; an older run's relative one is taken as relative to
    the folder the run folder sits in (where `augment run` was started, for the default runs/<name>), or failing
    that to the current folder."""
    dataset = Path(config.ingest.dataset)
    if dataset.is_absolute():
        return dataset
    beside = Path(run_dir).resolve().parent.parent / dataset
    return beside if beside.exists() else dataset.resolve()


def _export(config: config_module.Config, run_dir: str | Path, out: Path, setting: str | None) -> dict:
    dirs = storage.stage_dirs(run_dir)
    metrics = _metrics(dirs["evaluation"])
    reason = stale_reason(run_dir)
    if reason:
        raise AugmentError(f"the evaluation of '{run_dir}' is stale ({reason}); re-run it before exporting its recommendation")
    setting = setting or metrics["recommendation"].get("setting")
    if setting is None:
        raise AugmentError(f"'{run_dir}' has no recommendation ({metrics['recommendation'].get('reason')}); nothing to export")
    classes, real, _, _, sets = evaluate_stage.load_inputs(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["sources"])
    conditions = {c.name: c for c in conditions_for(config.evaluate, real[1], len(classes), tuple(sets))}
    exportable = [name for name, c in conditions.items() if c.real and name in metrics["conditions"]]
    if setting not in exportable:
        raise AugmentError(f"'{setting}' is not a setting this run evaluated on real images; choose one of {', '.join(exportable)}")
    recipe, source = conditions[setting].recipe, conditions[setting].source
    synthetic = sets.get(source) if recipe.synthetic else None
    real_files = [row["file"] for row in _csv(dirs["ingest"] / "manifest.csv", ("file", "split")) if row["split"] == "train"]
    if not recipe.synthetic:
        synthetic_rows = []
    elif source == "synthetic":
        synthetic_rows = _synthetic_rows(dirs["synthetic"], classes, config.evaluate.max_synthetic_per_class)
    else:
        synthetic_rows = _source_rows(dirs["sources"] / source, source, config.evaluate.max_synthetic_per_class)
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = storage.fresh_dir(out.parent / f".{out.name}.partial")  # renamed into place when complete
    for pool_x, pool_y, slots, _, weights, origin in _weighted_pools(config, recipe, real, synthetic, len(classes)):
        share = slots / config.evaluate.batch_size
        probability = (weights / weights.sum()).numpy() if weights is not None else np.full(len(pool_y), 1.0 / len(pool_y))
        for i, (pixels, label) in enumerate(zip(pool_x.numpy(), pool_y.numpy())):
            kind, row = ("real", origin[i]) if origin[i] < len(real_files) else ("synthetic", origin[i] - len(real_files))
            if kind == "real":  # a real training image, as ingested
                where, seed, name = real_files[row], "", f"real_{row:06d}.png"
                storage.write_png(staging / classes[label] / name, pixels.transpose(1, 2, 0), compress_level=None)
            elif source == "synthetic":  # the run's own synthetic image: copied as it was generated
                (where, seed), name = synthetic_rows[row], f"synthetic_{Path(synthetic_rows[row][0]).stem}.png"
                storage.real_dir(staging / classes[label])
                shutil.copyfile(storage.inside(dirs["synthetic"], where), staging / classes[label] / name)
            else:  # an outside source's image, as the sources stage read it (square, sized, the dataset's channels)
                where, seed, name = synthetic_rows[row], "", f"{source}_{row:06d}.png"
                storage.write_png(staging / classes[label] / name, pixels.transpose(1, 2, 0), compress_level=None)
            rows.append([f"{classes[label]}/{name}", classes[label], kind, where, seed, f"{share * probability[i]:.9g}"])
    storage.write_csv(staging / "manifest.csv", EXPORT_COLUMNS, rows)
    summary = {"run": str(run_dir), "setting": setting, "recommended": setting == metrics["recommendation"].get("setting"),
               "classical_augmentation": recipe.augment,
               "classical_policy": config.evaluate.augment if recipe.augment else None,
               "synthetic_share": round(sum(float(r[5]) for r in rows if r[2] == "synthetic"), 6),
               "n_real": sum(r[2] == "real" for r in rows), "n_synthetic": sum(r[2] == "synthetic" for r in rows),
               "reason": metrics["recommendation"]["reason"]}
    storage.write_json(staging / "summary.json", summary)
    for marker in staging.rglob(storage.STAGE_MARKER):  # the export is the user's folder, not a stage folder of the tool's
        marker.unlink()
    storage.sync_to_disk()
    if out.exists():
        out.rmdir()  # empty (checked above)
    staging.rename(out)
    return summary


def _weighted_pools(config, recipe, real, synthetic, num_classes):
    """The classifier's pools for this condition (pipeline.classifier.pools), each with the row of every
    pool image in [real rows..., synthetic rows...] so it can be traced to its file."""
    offset = len(real[1])
    if recipe.topup:
        origin = np.concatenate([np.arange(offset), offset + topup_indices(real[1], synthetic[1], num_classes)])
        return [(*pool, origin) for pool in pools(config.evaluate, recipe, 0, real, synthetic, num_classes)]
    result = []
    for k, pool in enumerate(pools(config.evaluate, recipe, 0, real, synthetic, num_classes)):
        origin = np.arange(offset) if k == 0 else offset + np.arange(len(synthetic[1]))
        if pool[2]:  # a pool with no batch slots (synthetic share 0) is not part of the training set
            result.append((*pool, origin))
    return result


def _source_rows(folder: Path, source: str, max_per_class: int) -> list[str]:
    """'<source>:<file>' of an outside source's images in the order the evaluation reads them (the kept files,
    the first max_per_class of each class)."""
    rows, seen = [], {}
    for row in _csv(folder / "manifest.csv", ("file", "class", "status")):
        if row["status"] == "kept":
            seen[row["class"]] = seen.get(row["class"], 0) + 1
            if seen[row["class"]] <= max_per_class:
                rows.append(f"{source}:{row['file']}")
    return rows


def _synthetic_rows(synthetic_dir: Path, classes: list[str], max_per_class: int) -> list[tuple[str, str]]:
    """(file, seed) of the synthetic images in the order load_synthetic reads them."""
    rows, seen = [], {}
    for row in _csv(synthetic_dir / "manifest.csv", ("file", "class", "seed")):
        seen[row["class"]] = seen.get(row["class"], 0) + 1
        if seen[row["class"]] <= max_per_class:
            rows.append((row["file"], row["seed"]))
    return rows


def _csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """A manifest's rows; a missing file or column is a one-line error naming it."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise AugmentError(f"'{path}' is missing; re-run the stage that writes it") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise AugmentError(f"'{path}' is damaged ({error}); re-run the stage that writes it") from None
    if rows and any(column not in rows[0] for column in columns):
        raise AugmentError(f"'{path}' is damaged: it lacks the columns {list(columns)}; re-run the stage that writes it")
    return rows
