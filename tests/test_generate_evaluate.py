"""Generate (seeded per image, ImageFolder-compatible) and evaluate (classifier, paired statistics) on digits."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torchvision
from scipy import stats as scipy_stats

from conftest import tiny_config
from pipeline import generate, ingest, storage
from pipeline.evaluate import stage as evaluate
from pipeline.evaluate.classifier import train_and_test
from pipeline.evaluate.stats import paired_gain, summarize, verdict
from pipeline.device import pick_device
from pipeline.gan import train


@pytest.fixture(scope="module")
def trained(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = tiny_config(digits_dir)
    ingest.run(config.ingest, out / "ingest")
    train.run(config.train, out / "ingest", out / "gan")
    return out, config


def _pixels(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_generate_writes_per_class_images_independent_of_batch_size(trained, tmp_path):
    out, config = trained
    small = dataclasses.replace(config.generate, batch_size=3)
    result = generate.run(small, out / "gan", tmp_path / "a")
    generate.run(dataclasses.replace(config.generate, batch_size=64), out / "gan", tmp_path / "b")
    assert result["n_images"] == 100
    assert _pixels(tmp_path / "a") == _pixels(tmp_path / "b")
    dataset = torchvision.datasets.ImageFolder(str(tmp_path / "a"))
    assert dataset.classes == [str(d) for d in range(10)] and len(dataset) == 100
    assert not (tmp_path / "a" / generate.STATE_FILE).exists()
    rows = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    assert len(rows) == 100 and len({r["seed"] for r in rows}) == 100
    assert {r["checkpoint_sha256"] for r in rows} == {storage.sha256_file(out / "gan" / "generator_ema.safetensors")}
    other_seed = dataclasses.replace(config.generate, seed=7)
    generate.run(other_seed, out / "gan", tmp_path / "c")
    assert _pixels(tmp_path / "c") != _pixels(tmp_path / "a")


def test_interrupted_generation_completes_only_missing_images(trained, tmp_path):
    out, config = trained
    generate.run(config.generate, out / "gan", tmp_path / "syn")
    complete = _pixels(tmp_path / "syn")
    # Simulate an interruption: the state file is back, the manifest and some images are missing.
    storage.write_json(tmp_path / "syn" / generate.STATE_FILE,
                       {"checkpoint": storage.sha256_file(out / "gan" / "generator_ema.safetensors"), "seed": config.generate.seed})
    (tmp_path / "syn" / "manifest.csv").unlink()
    for name in ("3/000004.png", "7/000000.png"):
        (tmp_path / "syn" / name).unlink()
    kept = tmp_path / "syn" / "0" / "000000.png"
    before = kept.stat().st_mtime_ns
    generate.run(config.generate, out / "gan", tmp_path / "syn")
    assert _pixels(tmp_path / "syn") == complete
    assert kept.stat().st_mtime_ns == before, "images already written must not be rewritten"


def test_stats_match_a_paired_t_interval():
    treated, baseline = [0.91, 0.93, 0.92, 0.95], [0.90, 0.90, 0.91, 0.92]
    gain = paired_gain(treated, baseline)
    diffs = np.subtract(treated, baseline)
    low, high = scipy_stats.ttest_rel(treated, baseline).confidence_interval(0.95)
    assert gain["mean"] == pytest.approx(diffs.mean())
    assert gain["ci95"] == pytest.approx([low, high])
    assert verdict(gain) == "significant gain"
    assert verdict(paired_gain(baseline, treated)) == "significant loss"
    assert verdict(paired_gain([0.9, 0.8], [0.85, 0.85])) == "no significant difference"
    assert verdict(paired_gain([0.9], [0.8])) == "too few seeds to tell"
    assert summarize([0.5, 0.7])["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_classifier_learns_real_digits(digits_dir, tmp_path):
    config = tiny_config(digits_dir, "evaluate.steps=150")
    ingest.run(config.ingest, tmp_path / "ingest")
    arrays = storage.load_arrays(tmp_path / "ingest")
    predicted = train_and_test(config.evaluate, 0, (arrays["train_images"], arrays["train_labels"]),
                               (arrays["test_images"], arrays["test_labels"]), 10, pick_device("cpu"))
    accuracy = float(np.mean(predicted == arrays["test_labels"]))
    assert accuracy > 0.6, f"a CNN on 160 real digits should beat chance (10%) by far, got {accuracy:.2f}"


def test_evaluate_writes_metrics_schema(trained, tmp_path):
    out, config = trained
    generate.run(config.generate, out / "gan", out / "synthetic")
    metrics = evaluate.run(config.evaluate, out / "ingest", out / "synthetic", tmp_path / "evaluation")
    assert storage.read_json(tmp_path / "evaluation" / "metrics.json") == metrics
    assert metrics["n_test"] == 40 and metrics["seeds"] == 2 and metrics["n_synthetic"] == 100
    for name in ("real", "real+synthetic"):
        condition = metrics["conditions"][name]
        assert len(condition["accuracy_runs"]) == 2 and all(0 <= a <= 1 for a in condition["accuracy_runs"])
        assert condition["accuracy_mean"] == pytest.approx(np.mean(condition["accuracy_runs"]))
    gain = metrics["gain"]["real+synthetic_vs_real"]
    runs = metrics["conditions"]
    expected = np.subtract(runs["real+synthetic"]["accuracy_runs"], runs["real"]["accuracy_runs"]).mean()
    assert gain["mean"] == pytest.approx(expected) and len(gain["ci95"]) == 2
    assert gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
    rows = evaluate.result_rows(metrics)
    assert rows[0][0] == "real" and rows[-1][0] == "gain real+synthetic_vs_real"
