"""Stage 4: train the classifier on real vs real + synthetic over several seeds; test on held-out real images."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import storage
from pipeline.config import EvaluateConfig
from pipeline.device import pick_device
from pipeline.errors import AugmentError
from pipeline.evaluate.classifier import train_and_test
from pipeline.evaluate.stats import paired_gain, summarize, verdict
from pipeline.progress import logger, track

CONDITIONS = ("real", "real+synthetic")
GAINS = {"real+synthetic_vs_real": ("real+synthetic", "real")}


def load_synthetic(synthetic_dir: str | Path, classes: list[str], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decode the synthetic set listed in its manifest into N x C x H x W uint8 images and class indices."""
    folder = Path(synthetic_dir)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise AugmentError(f"'{manifest}' does not exist; run the generate stage first")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    unknown = sorted({r["class"] for r in rows} - set(classes))
    if unknown:
        raise AugmentError(f"synthetic classes {unknown} are not in the ingested dataset; regenerate after ingest")
    images = np.empty((len(rows), *shape), dtype=np.uint8)
    for i, row in enumerate(rows):
        with Image.open(folder / row["file"]) as image:
            pixels = np.asarray(image.convert("L" if shape[0] == 1 else "RGB"))
        if pixels.shape[:2] != shape[1:]:
            raise AugmentError(f"synthetic image '{row['file']}' is {pixels.shape[:2]}, expected {shape[1:]}; regenerate")
        images[i] = pixels.reshape(pixels.shape[0], pixels.shape[1], -1).transpose(2, 0, 1)
    labels = np.array([classes.index(r["class"]) for r in rows], dtype=np.int64)
    return images, labels


def _accuracies(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> tuple[float, list[float]]:
    per_class = [float(np.mean(predicted[truth == c] == c)) if np.any(truth == c) else float("nan") for c in range(num_classes)]
    return float(np.mean(predicted == truth)), per_class


def run(config: EvaluateConfig, ingest_dir: str | Path, synthetic_dir: str | Path, out_dir: str | Path) -> dict:
    """Write out_dir/metrics.json (schema in README) and return it."""
    arrays = storage.load_arrays(ingest_dir)
    classes = [str(c) for c in arrays["classes"]]
    real = (arrays["train_images"], arrays["train_labels"])
    test = (arrays["test_images"], arrays["test_labels"])
    synthetic = load_synthetic(synthetic_dir, classes, real[0].shape[1:])
    device = pick_device(config.device)
    runs: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    per_class: dict[str, list[list[float]]] = {name: [] for name in CONDITIONS}
    jobs = [(seed, name) for seed in range(config.seeds) for name in CONDITIONS]
    start = time.perf_counter()
    for seed, name in track(jobs, len(jobs), "evaluate: classifier runs"):
        predicted = train_and_test(config, seed, real, test, len(classes), device,
                                   synthetic if name == "real+synthetic" else None)
        accuracy, class_accuracy = _accuracies(predicted, test[1], len(classes))
        runs[name].append(accuracy)
        per_class[name].append(class_accuracy)
        logger.info("seed %d %-15s accuracy %.4f", seed, name, accuracy)
    metrics = {
        "n_test": int(len(test[1])), "n_train_real": int(len(real[1])), "n_synthetic": int(len(synthetic[1])),
        "seeds": config.seeds, "classes": classes, "classifier_steps": config.steps,
        "seconds": round(time.perf_counter() - start, 1), "conditions": {}, "gain": {},
    }
    for name in CONDITIONS:
        summary = summarize(runs[name])
        metrics["conditions"][name] = {
            "accuracy_mean": summary["mean"], "accuracy_std": summary["std"], "accuracy_runs": summary["runs"],
            "per_class_accuracy_mean": dict(zip(classes, np.nanmean(per_class[name], axis=0).round(6).tolist())),
        }
    for gain_name, (treated, baseline) in GAINS.items():
        gain = paired_gain(runs[treated], runs[baseline])
        metrics["gain"][gain_name] = {**gain, "verdict": verdict(gain)}
    storage.fresh_dir(out_dir)
    storage.write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def result_rows(metrics: dict) -> list[list[str]]:
    """Rows of the human result table: condition, accuracy mean ± std (percent), runs."""
    rows = []
    for name, values in metrics["conditions"].items():
        runs = ", ".join(f"{100 * v:.1f}" for v in values["accuracy_runs"])
        rows.append([name, f"{100 * values['accuracy_mean']:.2f} ± {100 * values['accuracy_std']:.2f}", runs])
    for name, gain in metrics["gain"].items():
        interval = "n/a" if gain["ci95"] is None else f"[{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
        rows.append([f"gain {name}", f"{100 * gain['mean']:+.2f}", f"95% CI {interval}: {gain['verdict']}"])
    return rows
