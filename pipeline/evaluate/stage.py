"""Stage 4: train the classifier under every condition over several seeds; test on held-out real images only;
measure the synthetic set's fidelity; write metrics.json, runs.csv and report.html."""
from __future__ import annotations

import csv
import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from pipeline import ensemble
from pipeline import sources as outside
from pipeline import storage
from pipeline.config import EvaluateConfig
from pipeline.device import pick_device, prepare_module
from pipeline.errors import AugmentError
from pipeline.metrics import fidelity
from pipeline.classifier import SmallCNN, embed, predict, share_of, train_classifier
from pipeline.evaluate import crossval
from pipeline.evaluate.conditions import (FEATURES, condition_headline, conditions_for, gain_headline, gains,
                                         imbalance_ratio, uses_synthetic)
from pipeline.evaluate.recommend import recommend
from pipeline.evaluate.report import confusion_conditions, render_report
from pipeline.metrics.stats import paired_gain, summarize, verdict, verdict_note
from pipeline.progress import logger, track

SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
NEAREST_REAL = "nearest_real.npy"  # 2 x N: every synthetic image's feature distance to its nearest real training image,
                                   # and that image's index in the training arrays (the report's copy check)


def load_synthetic(synthetic_dir: str | Path, classes: list[str], shape: tuple[int, ...],
                   max_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode the synthetic set listed in its manifest into N x C x H x W uint8 images and class indices; with
    max_per_class, only the first that many of each class (memory stays bounded however many were generated)."""
    folder = Path(synthetic_dir)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise AugmentError(f"'{manifest}' does not exist; run the generate stage first")
    try:
        with open(manifest, newline="") as handle:
            rows, seen = [], {}
            for row in csv.DictReader(handle):
                seen[row["class"]] = seen.get(row["class"], 0) + 1
                if max_per_class is None or seen[row["class"]] <= max_per_class:
                    rows.append(row)
            [row["file"] for row in rows]  # noqa: B018 - every row names its file
    except (KeyError, UnicodeDecodeError, csv.Error) as error:
        raise AugmentError(f"'{manifest}' is damaged (no {error} column, or not text); regenerate") from None
    unknown = sorted({r["class"] for r in rows} - set(classes))
    if unknown:
        raise AugmentError(f"synthetic classes {unknown} are not in the ingested dataset; regenerate after ingest")
    images = np.empty((len(rows), *shape), dtype=np.uint8)
    for i, row in enumerate(rows):
        try:
            with Image.open(storage.inside(folder, row["file"]), formats=["PNG"]) as image:
                pixels = np.asarray(image.convert("L" if shape[0] == 1 else "RGB"))
        except (OSError, ValueError) as error:
            raise AugmentError(f"synthetic image '{folder / row['file']}' cannot be read ({error}); regenerate") from None
        if pixels.shape[:2] != shape[1:]:
            raise AugmentError(f"synthetic image '{row['file']}' is {pixels.shape[:2]}, expected {shape[1:]}; regenerate")
        images[i] = pixels.reshape(pixels.shape[0], pixels.shape[1], -1).transpose(2, 0, 1)
    labels = np.array([classes.index(r["class"]) for r in rows], dtype=np.int64)
    return images, labels


def _scores(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> dict:
    labels = list(range(num_classes))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    support = matrix.sum(axis=1)
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": np.divide(np.diag(matrix), support, out=np.full(num_classes, np.nan), where=support > 0),
        "confusion": matrix,
    }


def load_inputs(config: EvaluateConfig, ingest_dir: str | Path, synthetic_dir: str | Path | None,
                sources_dir: str | Path | None = None) -> tuple:
    """classes, real, val and test (images, labels) pairs, and the synthetic sets by source: 'synthetic' (the tool's
    own generator's, when the run generated any) and every outside source the sources stage read."""
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    real = (arrays["train_images"], arrays["train_labels"])
    test = (arrays["test_images"], arrays["test_labels"])
    val = (arrays["val_images"], arrays["val_labels"]) if "val_images" in arrays else (real[0][:0], real[1][:0])
    sets = {}
    if synthetic_dir is not None and (Path(synthetic_dir) / "manifest.csv").is_file():
        sets["synthetic"] = load_synthetic(synthetic_dir, classes, real[0].shape[1:], config.max_synthetic_per_class)
    if sources_dir is not None:
        sets.update({name: _at_most(images, config.max_synthetic_per_class) for name, images in
                     outside.load(sources_dir, classes).items()})
    if not sets:
        raise AugmentError(f"no synthetic images to evaluate: '{Path(synthetic_dir or '.') / 'manifest.csv'}' does not "
                           "exist (run the generate stage) and no outside source was given (--synthetic NAME=FOLDER)")
    return classes, real, val, test, sets


def _first(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Which rows are among the first `per_class` of their class."""
    keep = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        keep[np.flatnonzero(labels == label)[:per_class]] = True
    return keep


def _at_most(pair: tuple[np.ndarray, np.ndarray], per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of each class (evaluate.max_synthetic_per_class bounds the memory)."""
    keep = _first(pair[1], per_class)
    return pair[0][keep], pair[1][keep]


def load_copies(config: EvaluateConfig, sources_dir: str | Path | None, sets: dict) -> dict[str, np.ndarray]:
    """With evaluate.folds: each outside source's training-copy index (sources.training_copies), aligned with the
    images load_inputs kept; nothing otherwise."""
    if not config.folds or sources_dir is None:
        return {}
    copies = {}
    for name in sets:
        if name == crossval.OWN_SOURCE:
            continue
        index, source_labels = outside.training_copies(sources_dir, name)
        copies[name] = index[_first(source_labels, config.max_synthetic_per_class)]
    return copies


def batched(config: EvaluateConfig, device) -> bool:
    """evaluate.batched: the built-in CNN's conditions of a seed trained as one ensemble (pipeline.ensemble); auto =
    on a GPU, where one small network leaves the device idle. On this project's CPU a step of the built-in CNN is
    bound by arithmetic, not overhead, and grouped convolutions ran slower than separate ones
    (benchmarks/results/ensemble_speed.md), so auto keeps the CPU serial."""
    return config.model == "small" and (config.batched == "on" or (config.batched == "auto" and device.type == "cuda"))


def _seed_records(config: EvaluateConfig, seed: int, inputs: tuple, device, copies: dict | None = None) -> tuple[list[dict], object]:
    """Train and test every condition under one seed; also return seed 0's feature model (else None). With
    evaluate.folds, each candidate's record also holds its cross-validated 0/1 per pool image (cv_correct)."""
    classes, real, val, test, sets = inputs
    conditions = conditions_for(config, real[1], len(classes), tuple(sets))
    if batched(config, device):
        records, feature_model = _seed_records_batched(config, seed, inputs, conditions, device)
    else:
        records, feature_model = _seed_records_serial(config, seed, inputs, conditions, device)
    if config.folds:
        clock = time.perf_counter()
        chosen, _ = crossval.candidates(conditions, crossval.trained_on_data(config))
        pool = (np.concatenate([real[0], val[0]]), np.concatenate([real[1], val[1]]))
        correct = crossval.seed_correct(config, seed, chosen, pool, sets, copies or {}, len(classes), device,
                                        batched(config, device))
        for record in records:
            record["cv_correct"] = correct.get(record["condition"], np.zeros(0, dtype=bool))
            record["cv_seconds"] = (time.perf_counter() - clock) / len(chosen) if record["condition"] in correct else 0.0
    return records, feature_model


def _seed_records_serial(config: EvaluateConfig, seed: int, inputs: tuple, conditions, device) -> tuple[list[dict], object]:
    classes, real, val, test, sets = inputs
    records, feature_model = [], None
    for condition in conditions:
        clock = time.perf_counter()
        synthetic = sets.get(condition.source) if condition.synthetic else None
        model = train_classifier(config, condition.recipe, seed, real, synthetic, len(classes), device)
        scores = _scores(predict(model, test[0], device), test[1], len(classes))
        val_correct = predict(model, val[0], device) == val[1] if len(val[1]) else np.zeros(0, dtype=bool)
        records.append({"seed": seed, "condition": condition.name, "seconds": time.perf_counter() - clock,
                        "val_correct": val_correct, **scores})
        logger.info("seed %d %-18s accuracy %.4f", seed, condition.name, scores["accuracy"])
        if seed == 0 and condition.name == FEATURES:  # the fidelity feature space is always the built-in CNN's
            feature_model = model if config.model == "small" else train_classifier(
                dataclasses.replace(config, model="small"), condition.recipe, seed, real, synthetic, len(classes), device)
    return records, feature_model


def _seed_records_batched(config: EvaluateConfig, seed: int, inputs: tuple, conditions, device) -> tuple[list[dict], object]:
    """_seed_records with every condition of the seed trained at once as one ensemble (each member the condition's
    recipe, the seed's initial weights, its own batches); the records are the same kind."""
    classes, real, val, test, sets = inputs
    clock = time.perf_counter()
    pools = [sets.get(c.source) if c.synthetic else None for c in conditions]
    model = ensemble.train_ensemble(config, [(c.recipe, seed) for c in conditions], real, pools, len(classes), device)
    tested, validated = ensemble.predict(model, test[0], device), ensemble.predict(model, val[0], device)
    seconds = (time.perf_counter() - clock) / len(conditions)  # the ensemble's time, shared out
    records, feature_model = [], None
    for m, condition in enumerate(conditions):
        scores = _scores(tested[m], test[1], len(classes))
        val_correct = validated[m] == val[1] if len(val[1]) else np.zeros(0, dtype=bool)
        records.append({"seed": seed, "condition": condition.name, "seconds": seconds, "val_correct": val_correct, **scores})
        logger.info("seed %d %-18s accuracy %.4f", seed, condition.name, scores["accuracy"])
        if seed == 0 and condition.name == FEATURES:
            template = SmallCNN(real[0].shape[1], len(classes), real[0].shape[-1], config.width)
            feature_model = prepare_module(ensemble.member(model.cpu(), m, template), device)
            model.to(device)
    return records, feature_model


def run(config: EvaluateConfig, ingest_dir: str | Path, synthetic_dir: str | Path | None, gan_dir: str | Path | None,
        out_dir: str | Path, sources_dir: str | Path | None = None) -> dict:
    """Write out_dir/metrics.json (schema in README), runs.csv and report.html; return the metrics."""
    start = time.perf_counter()
    inputs = load_inputs(config, ingest_dir, synthetic_dir, sources_dir)
    copies = _prepare_folds(config, inputs, sources_dir)
    device = pick_device(config.device)
    records, feature_model = [], None
    for seed in track(range(config.seeds), config.seeds, "evaluate: classifier seeds"):
        seed_records, model = _seed_records(config, seed, inputs, device, copies)
        records += seed_records
        feature_model = model if model is not None else feature_model
    return _write(config, records, feature_model, inputs, gan_dir, ingest_dir, synthetic_dir, out_dir, start, sources_dir)


SEEDS_FOLDER = "seeds"  # evaluation/seeds/: one seed's rows when seeds fan out; replaced by the aggregated outputs
ARRAY_FIELDS = {"per_class": float, "confusion": np.int64, "val_correct": bool, "cv_correct": bool}  # numpy fields


def _prepare_folds(config: EvaluateConfig, inputs: tuple, sources_dir) -> dict[str, np.ndarray]:
    """Check that the pool can be split into evaluate.folds folds (before any training); the sources' copy indexes."""
    if not config.folds:
        return {}
    classes, real, val, _, sets = inputs
    crossval.check_pool(np.concatenate([real[1], val[1]]), classes, config.folds)
    crossval.check_sources(config, set(sets))
    return load_copies(config, sources_dir, sets)


def run_seed(config: EvaluateConfig, ingest_dir: str | Path, synthetic_dir: str | Path | None, out_dir: str | Path,
             seed: int, sources_dir: str | Path | None = None) -> Path:
    """One seed's conditions (a unit of fan-out): write out_dir/seeds/<seed>.json (and seed 0's feature model)."""
    inputs = load_inputs(config, ingest_dir, synthetic_dir, sources_dir)
    copies = _prepare_folds(config, inputs, sources_dir)
    records, model = _seed_records(config, seed, inputs, pick_device(config.device), copies)
    folder = Path(out_dir) / SEEDS_FOLDER
    if model is not None:
        storage.save_tensors(folder / "feature_model.safetensors", model.state_dict(), {"condition": FEATURES})
    rows = [{**r, **{k: _to_json(r[k]) for k in ARRAY_FIELDS if k in r}} for r in records]
    return storage.write_json(folder / f"{seed}.json", {"config": dataclasses.asdict(config), "records": rows})


def _to_json(values: np.ndarray) -> list:
    """A numpy array as nested lists; JSON has no NaN (a class absent from the test set), so None stands for it
    (np.array(..., dtype=float) reads it back as NaN)."""
    if values.ndim > 1:
        return [_to_json(row) for row in values]
    return [None if np.isnan(v) else v for v in values.astype(float).tolist()]


def aggregate(config: EvaluateConfig, ingest_dir: str | Path, synthetic_dir: str | Path | None, gan_dir: str | Path | None,
              out_dir: str | Path, sources_dir: str | Path | None = None) -> dict:
    """Combine the seed files run_seed wrote into the same outputs `run` writes; return the metrics."""
    start, folder = time.perf_counter(), Path(out_dir) / SEEDS_FOLDER
    inputs = load_inputs(config, ingest_dir, synthetic_dir, sources_dir)
    records = []
    for seed in range(config.seeds):
        path = folder / f"{seed}.json"
        data = storage.read_json_object(path, ("config", "records")) if path.is_file() else None
        if data is None or data["config"] != dataclasses.asdict(config):
            raise AugmentError(f"'{path}' is missing or from other evaluate settings; run classifier seed {seed} again")
        records += [{**r, **{k: np.array(r[k], dtype=float).astype(kind) for k, kind in ARRAY_FIELDS.items() if k in r}}
                    for r in data["records"]]
    classes, real = inputs[0], inputs[1]
    start -= sum(r["seconds"] + r.get("cv_seconds", 0.0) for r in records)  # the stage's compute includes the seeds' classifier runs
    device = pick_device(config.device)
    feature_model = SmallCNN(real[0].shape[1], len(classes), real[0].shape[-1], config.width)
    storage.load_weights(feature_model, storage.load_tensors(folder / "feature_model.safetensors"), folder / "feature_model.safetensors")
    return _write(config, records, prepare_module(feature_model, device).eval(), inputs, gan_dir, ingest_dir,
                  synthetic_dir, out_dir, start, sources_dir)


def _write(config, records, feature_model, inputs, gan_dir, ingest_dir, synthetic_dir, out_dir, start,
           sources_dir=None) -> dict:
    """Summarise the per-seed records into metrics.json, runs.csv and report.html."""
    classes, real, val, test, sets = inputs
    device, conditions = pick_device(config.device), conditions_for(config, real[1], len(classes), tuple(sets))
    own = sets.get("synthetic", (real[0][:0], real[1][:0]))  # the tool's own generator's images (none without a GAN)
    metrics = {
        "n_test": int(len(test[1])), "n_train_real": int(len(real[1])), "n_val": int(len(val[1])),
        "n_synthetic": int(len(own[1])),
        "seeds": config.seeds, "classes": classes, "classifier_steps": config.steps,
        "n_train_real_per_class": _class_counts(real[1], classes), "n_synthetic_per_class": _class_counts(own[1], classes),
        "config": dataclasses.asdict(config),
        "conditions": {c.name: {**_condition_summary([r for r in records if r["condition"] == c.name], classes),
                                **({"base": c.base, "source": c.source} if c.source != "synthetic" else {})}
                       for c in conditions},
        "imbalance_ratio": _finite(imbalance_ratio(real[1], len(classes))),
        "gain": {name: _gain(records, treated, baseline, classes) for name, (treated, baseline) in gains(conditions).items()},
        "recommendation": _recommendation(records, conditions, config, classes, real[1], val[1]),
    }
    fidelities = {name: _fidelity(feature_model, real, images, classes, device) for name, images in sets.items()}
    metrics["fidelity"] = fidelities["synthetic"][0] if "synthetic" in fidelities else None
    if set(sets) - {"synthetic"}:
        metrics["sources"] = _sources_summary(sources_dir, sets, fidelities, classes)
    nearest = {name: distances for name, (_, distances) in fidelities.items()}
    metrics["seconds"] = round(time.perf_counter() - start, 1)  # the report renders from these metrics: its time is left out
    metrics["evaluated_at"] = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    page = render_report(metrics, real, sets, nearest, gan_dir and Path(gan_dir), Path(ingest_dir),
                         synthetic_dir and Path(synthetic_dir))
    # Everything that can fail is done: only now is the folder (and the seed files it was built from) replaced.
    out = storage.fresh_dir(out_dir)
    storage.write_csv(out / "runs.csv", ["seed", "condition", *SCORES, "seconds"],
                      [[r["seed"], r["condition"], *(round(r[s], 6) for s in SCORES), round(r["seconds"], 2)] for r in records])
    _write_confusions(out / CONFUSION_DIR, metrics)
    for name, distances in nearest.items():  # lets `augment report` re-render without the feature model
        storage.save_array(out / nearest_file(name), distances)
    storage.write_text(out / "report.html", page)
    storage.write_json(out / HEADLINE, headline(metrics))
    storage.write_json(out / "metrics.json", metrics)  # last: its presence means the evaluation finished
    return metrics


CONFUSION_DIR = "confusion"  # one actual,predicted CSV per condition drawn, for DVC's confusion template


def _write_confusions(folder: Path, metrics: dict) -> None:
    """One row per test prediction (summed over seeds: seeds x n_test rows), the layout DVC's confusion template counts."""
    classes = metrics["classes"]
    for name in confusion_conditions(metrics):
        matrix = np.asarray(metrics["conditions"][name]["confusion_matrix"])
        rows = [[classes[a], classes[p]] for a, p in zip(*np.nonzero(matrix)) for _ in range(matrix[a, p])]
        storage.write_csv(folder / f"{name}.csv", ["actual", "predicted"], rows)


HEADLINE = "headline.json"  # the DVC metric: at most 20 flat numbers, readable in `dvc metrics diff` / `dvc exp show`
# Short names (pipeline.evaluate.conditions), so a two-experiment `dvc exp show` fits a 120-column terminal
# (README: Versioning with DVC).


def headline(metrics: dict) -> dict[str, float]:
    """Test accuracy (%) of the conditions with a headline name and of the recommendation (acc.pick), CAS (the
    synthetic-only classifier's accuracy), every gain (points), the 95% CI bounds of the synthetic gains against the
    run's strongest baseline (real+aug; real+aug+resampled on imbalanced data), and the Fréchet distance: 20 numbers
    at most with one candidate share."""
    pct = lambda value: None if value is None else round(100 * value, 2)
    numbers = {key: pct(c["accuracy_mean"]) for name, c in metrics["conditions"].items()
               if (key := condition_headline(name)) is not None}
    result = (metrics.get("recommendation") or {}).get("test_result")
    if result:
        numbers["acc.pick"] = pct(result["mean"])
    strongest = "real+aug+resampled" if "real+aug+resampled" in metrics["conditions"] else "real+aug"
    for name, gain in metrics["gain"].items():
        short, (treated, baseline) = gain_headline(name), name.split("_vs_")
        if short is None:  # an outside source's gain: in metrics.json and the report, not in the DVC metric
            continue
        numbers[f"gain.{short}"] = pct(gain["mean"])
        if baseline == strongest and uses_synthetic(treated):  # the gains the verdict rests on: with their bounds
            low, high = gain["ci95"] if gain.get("ci95") else (None, None)
            numbers[f"gain.{short}.lo"], numbers[f"gain.{short}.hi"] = pct(low), pct(high)
    if metrics.get("fidelity"):
        numbers["fd"] = round(metrics["fidelity"]["frechet_distance"], 3)
    return {key: value for key, value in numbers.items() if value is not None}


def _condition_summary(records: list[dict], classes: list[str]) -> dict:
    summary = {}
    for score in SCORES:
        values = summarize([r[score] for r in records])
        summary.update({f"{score}_mean": values["mean"], f"{score}_std": values["std"], f"{score}_runs": values["runs"]})
    per_class = np.nanmean([r["per_class"] for r in records], axis=0)
    summary["per_class_accuracy_mean"] = dict(zip(classes, per_class.round(6).tolist()))
    summary["worst_class_accuracy_mean"] = float(np.nanmin(per_class))
    summary["confusion_matrix"] = np.sum([r["confusion"] for r in records], axis=0).tolist()  # summed over seeds
    return summary


def _gain(records: list[dict], treated: str, baseline: str, classes: list[str]) -> dict:
    pick = lambda name: sorted((r for r in records if r["condition"] == name), key=lambda r: r["seed"])
    a, b = pick(treated), pick(baseline)
    gain = paired_gain([r["accuracy"] for r in a], [r["accuracy"] for r in b])
    per_class = np.nanmean([x["per_class"] - y["per_class"] for x, y in zip(a, b)], axis=0)
    # A mean gain carried by the big classes is not what a user with a rare class wants: the worst class, paired per seed.
    worst = lambda runs: [float(np.nanmin(r["per_class"])) for r in runs]
    return {**gain, "verdict": verdict(gain), "verdict_note": verdict_note(gain),
            "per_class_gain_mean": dict(zip(classes, per_class.round(6).tolist())),
            "worst_class_gain": paired_gain(worst(a), worst(b)),
            "macro_f1_gain_mean": float(np.mean([x["macro_f1"] - y["macro_f1"] for x, y in zip(a, b)]))}


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else round(value, 4)  # JSON has no infinity


def _class_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    return dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist()))


def _recommendation(records: list[dict], conditions, config: EvaluateConfig, classes: list[str],
                    real_labels: np.ndarray, val_labels: np.ndarray) -> dict:
    """Chosen on validation among the conditions that train on real images (with evaluate.folds: cross-validated
    over the training and validation images, see crossval); then its TEST result, reported only."""
    trained_on = crossval.trained_on_data(config)
    candidates, left_out = crossval.candidates(conditions, trained_on) if config.folds else ([c for c in conditions if c.real], [])
    field, judged = ("cv_correct", np.concatenate([real_labels, val_labels])) if config.folds else ("val_correct", val_labels)
    by_seed = lambda name: sorted((r for r in records if r["condition"] == name), key=lambda r: r["seed"])
    choice = recommend({c.name: np.array([r[field] for r in by_seed(c.name)], dtype=float) for c in candidates},
                       {c.name: share_of(c.recipe, config, real_labels, len(classes)) for c in candidates},
                       {c.name: c.augment for c in candidates}, val_labels=judged,
                       balanced={c.name: c.balanced for c in candidates},
                       worst_class_first=frozenset(c.name for c in candidates if c.when != "always" and not c.synthetic),
                       judged_by=(f"{config.folds}-fold cross-validation over the {len(judged)} training and validation "
                                  "images" if config.folds else None))
    if config.folds:
        choice["cross_validation"] = {
            "folds": config.folds, "n_images": int(len(judged)),
            "seconds": round(sum(r.get("cv_seconds", 0.0) for r in records), 1),
            "left_out": [c.name for c in left_out],
            "why_left_out": (f"their images come from a generator trained on the training images ({_makers(left_out)}), "
                             "so each fold's held-out images were seen by it: they are not candidates (their test results "
                             "are still reported)") if left_out else None}
    if choice["setting"] is not None:
        chosen = by_seed(choice["setting"])
        result = {"setting": choice["setting"], **summarize([r["accuracy"] for r in chosen])}
        baseline = choice["validation"]["best_without_synthetic"]
        if choice["use_synthetic"]:
            result["gain_vs"] = baseline
            result["gain"] = _gain(records, choice["setting"], baseline, classes)
        choice["test_result"] = result
    outside_sources = {c.source for c in conditions if c.synthetic} - trained_on
    smallest = int(np.bincount(np.concatenate([real_labels, val_labels]), minlength=len(classes)).min())
    if (not config.folds and outside_sources and not choice["use_synthetic"] and not choice.get("inconclusive")
            and len(val_labels) and smallest >= 5):
        pool = len(real_labels) + len(val_labels)
        choice["reason"] += (f"; to judge the outside sources by all {pool} real images outside the test split instead of "
                             f"the {len(val_labels)} validation images, set evaluate.folds=5 (--folds 5): cross-validation, "
                             "which trains 5 more classifiers per seed for each candidate")
    return choice


def _makers(conditions) -> str:
    own = ["the tool's own GAN"] if any(c.source == crossval.OWN_SOURCE for c in conditions) else []
    return ", ".join(own + sorted({f"source '{c.source}'" for c in conditions if c.source != crossval.OWN_SOURCE}))


def nearest_file(source: str) -> str:
    """evaluation/nearest_real.npy for the tool's own images, nearest_real_<source>.npy for an outside source's."""
    return NEAREST_REAL if source == "synthetic" else f"nearest_real_{source}.npy"


def _sources_summary(sources_dir, sets: dict, fidelities: dict, classes: list[str]) -> dict:
    """Per outside source: what the sources stage read (counts, excluded copies of held-out images, missing classes)
    and its fidelity and copy check, as for the tool's own images."""
    read = storage.read_json_object(Path(sources_dir) / outside.SUMMARY, ("sources",))["sources"] if sources_dir else {}
    return {name: {**read.get(name, {}), "n_evaluated": int(len(images[1])),
                   "n_evaluated_per_class": _class_counts(images[1], classes), "fidelity": fidelities[name][0]}
            for name, images in sets.items() if name != "synthetic"}


def _fidelity(model, real, synthetic, classes, device) -> tuple[dict, np.ndarray]:
    """Fidelity of the synthetic set against the real TRAINING images (never the test set); also returns, for every
    synthetic image, its feature distance to its nearest real training image and that image's index (2 x N: the
    report's histogram and its copy pairs)."""
    rng = np.random.default_rng(0)
    # Random subsets: the arrays are ordered by class, so a prefix would leave whole classes out.
    pick = lambda n: np.sort(rng.permutation(n)[:fidelity.MAX_SAMPLES])
    fake, keep = pick(len(synthetic[1])), pick(len(real[1]))
    fake_x, fake_y = synthetic[0][fake], synthetic[1][fake]
    real_x, real_y = real[0][keep], real[1][keep]
    report = fidelity.fidelity_report(embed(model, real_x, device), real_y, embed(model, fake_x, device), fake_y, classes)
    report["feature_space"] = f"penultimate layer of the classifier trained on the real training split ({FEATURES}, seed 0)"
    # Copies: every synthetic image against every real training image, in the same features.
    report["nearest_real"] = fidelity.nearest_real(embed(model, real[0], device), embed(model, synthetic[0], device))
    distances, nearest = report["nearest_real"].pop("distances"), report["nearest_real"].pop("nearest")
    return report, np.stack([distances, nearest]).astype(np.float64)
