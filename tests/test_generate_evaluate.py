"""Generate (seeded per image, ImageFolder-compatible) and evaluate (classifier, paired statistics) on digits."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torchvision
from scipy import stats as scipy_stats

import torch
from PIL import Image

from conftest import tiny_config
from pipeline import filtering, generate, ingest, storage
from pipeline.errors import AugmentError
from pipeline.evaluate import stage as evaluate
from pipeline.metrics import fidelity
from pipeline.config import CLASSICAL_POLICIES
from pipeline.classifier import REAL_AUG, Recipe, classical_augment, policy_augment, predict, train_classifier
from pipeline.evaluate.conditions import CONDITIONS
from pipeline.metrics.stats import paired_gain, summarize, verdict, verdict_note
from pipeline.device import pick_device
from pipeline.gan import train
from flows.tables import result_rows


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
                       {"checkpoint": storage.sha256_file(out / "gan" / "generator_ema.safetensors"), "seed": config.generate.seed,
                        "filter": config.generate.filter, "oversample": config.generate.oversample})
    (tmp_path / "syn" / "manifest.csv").unlink()
    for name in ("3/000004.png", "7/000000.png"):
        (tmp_path / "syn" / name).unlink()
    kept = tmp_path / "syn" / "0" / "000000.png"
    before = kept.stat().st_mtime_ns
    generate.run(config.generate, out / "gan", tmp_path / "syn")
    assert _pixels(tmp_path / "syn") == complete
    assert kept.stat().st_mtime_ns == before, "images already written must not be rewritten"


@pytest.mark.slow  # > 20 s: left out of `make test-fast`
def test_teacher_filter_keeps_the_best_scored_candidates(trained, tmp_path):
    out, config = trained
    chosen = dataclasses.replace(config.generate, filter="teacher", oversample=3.0)
    summary = generate.run(chosen, out / "gan", tmp_path / "filtered", out / "ingest")
    rows = list(csv.DictReader(open(tmp_path / "filtered" / "manifest.csv")))
    assert summary["n_images"] == len(rows) == 10 * chosen.per_class and summary["candidates_per_class"] == 30
    for digit in map(str, range(10)):
        kept = [r for r in rows if r["class"] == digit]
        scores = [float(r["teacher_score"]) for r in kept]
        assert len(kept) == chosen.per_class and scores == sorted(scores, reverse=True)
        assert all(0 <= int(r["seed"]) - generate.sample_seed(chosen, int(digit), 0) < 30 for r in kept)
    # the unfiltered set is the first per_class candidates; the filter's picks must score at least as well on average
    plain = generate.run(config.generate, out / "gan", tmp_path / "plain")
    teacher = filtering.train_teacher(out / "ingest", chosen.seed, torch.device("cpu"))
    mean_score = lambda folder: float(np.mean([torch.softmax(teacher(torch.from_numpy(
        np.asarray(Image.open(folder / r["file"]))[None, None].copy()).float() / 127.5 - 1), 1)[0, int(r["class"])].item()
        for r in csv.DictReader(open(folder / "manifest.csv"))]))
    assert plain["filter"] == "none" and mean_score(tmp_path / "filtered") > mean_score(tmp_path / "plain")
    with pytest.raises(AugmentError, match="needs the ingested training images"):
        generate.run(chosen, out / "gan", tmp_path / "no-ingest")


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
    tight = paired_gain([0.901, 0.902, 0.903, 0.904, 0.905], [0.900, 0.900, 0.900, 0.900, 0.900])
    assert "too few seeds" not in verdict_note(tight) and 0 < tight["min_detectable_gain"] < 0.01
    assert "too few seeds" in verdict_note(paired_gain([0.95, 0.90, 0.93], [0.91, 0.93, 0.90]))
    assert summarize([0.5, 0.7])["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_classifier_learns_real_digits(digits_dir, tmp_path):
    config = tiny_config(digits_dir, "evaluate.steps=150")
    ingest.run(config.ingest, tmp_path / "ingest")
    arrays = storage.load_arrays(tmp_path / "ingest")
    real = (arrays["train_images"], arrays["train_labels"])
    for name, recipe in (("real", Recipe()), ("real+aug", REAL_AUG)):
        model = train_classifier(config.evaluate, recipe, 0, real, None, 10, pick_device("cpu"))
        accuracy = float(np.mean(predict(model, arrays["test_images"], pick_device("cpu")) == arrays["test_labels"]))
        assert accuracy > 0.6, f"{name}: a CNN on 160 real digits should beat chance (10%) by far, got {accuracy:.2f}"


def test_classical_augmentation_moves_pixels_but_keeps_shape():
    x = torch.zeros(4, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0
    y = classical_augment(x, "affine,flip", torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert 0.3 < y.sum() / x.sum() < 2.0, "an affine warp keeps roughly the same amount of ink"


def test_augment_probability_leaves_the_other_images_exactly_as_they_are():
    x = torch.rand(400, 1, 12, 12)
    y = classical_augment(x, "affine", torch.Generator().manual_seed(0), probability=0.5)
    unchanged = (x - y).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert 0.4 < unchanged.float().mean() < 0.6, f"about half should be left alone, got {unchanged.float().mean():.2f}"
    everything = classical_augment(x, "affine", torch.Generator().manual_seed(0), probability=1.0)
    assert ((x - everything).abs().amax(dim=(1, 2, 3)) > 1e-3).all(), "probability 1 transforms every image"
    elastic = classical_augment(x, "affine,elastic", torch.Generator().manual_seed(0), probability=0.5)
    unchanged = (x - elastic).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert 0.4 < unchanged.float().mean() < 0.6, "the displacement field is also zero for the images left alone"


@pytest.mark.parametrize("policy", CLASSICAL_POLICIES)
def test_torchvision_policies_are_paired_per_image_and_leave_global_random_state_alone(policy):
    images = torch.randint(0, 256, (64, 3, 24, 24), dtype=torch.uint8)
    other = torch.randint(0, 256, (64, 3, 24, 24), dtype=torch.uint8)
    before = torch.random.get_rng_state()
    out = policy_augment(images, policy, torch.Generator().manual_seed(5), probability=0.5)
    assert torch.equal(torch.random.get_rng_state(), before), "the policy must not consume torch's global generator"
    assert out.shape == images.shape and out.dtype == torch.uint8
    same = (out == images).flatten(1).all(1)
    assert 0.25 < same.float().mean() < 0.75, f"about half left exactly as they are, got {same.float().mean():.2f}"
    again = policy_augment(images, policy, torch.Generator().manual_seed(5), probability=0.5)
    assert torch.equal(out, again), "same generator seed, same augmented batch"
    # Paired: slot i gets the same draws whatever the image. Put image i of `other` into slot 3 of the batch;
    # what slot 3 does to it equals what the policy does to that image alone with slot 3's seed.
    mixed = images.clone()
    mixed[3] = other[3]
    out_mixed = policy_augment(mixed, policy, torch.Generator().manual_seed(5), probability=0.5)
    assert torch.equal(out_mixed[torch.arange(64) != 3], out[torch.arange(64) != 3]), "other slots are untouched by slot 3's image"
    assert same[3] == (out_mixed[3] == other[3]).all(), "slot 3 is augmented or not regardless of its content"
    if policy == "photo":  # a geometric policy moves pixels of every augmented image
        assert not same.all()


def test_a_torchvision_policy_trains_a_classifier_on_gray_digits(digits_dir, tmp_path):
    config = tiny_config(digits_dir, "evaluate.steps=150", "evaluate.augment=trivialaugment")
    ingest.run(config.ingest, tmp_path / "ingest")
    arrays = storage.load_arrays(tmp_path / "ingest")
    real = (arrays["train_images"], arrays["train_labels"])
    model = train_classifier(config.evaluate, REAL_AUG, 0, real, None, 10, pick_device("cpu"))
    accuracy = float(np.mean(predict(model, arrays["test_images"], pick_device("cpu")) == arrays["test_labels"]))
    assert accuracy > 0.3, f"150 steps with TrivialAugment on digits should beat chance (10%), got {accuracy:.2f}"


def test_elastic_displacement_bends_strokes_that_an_affine_map_keeps_straight():
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, :, 13:15] = 1.0                                                    # one vertical stroke through the middle
    bent = classical_augment(x, "elastic", torch.Generator().manual_seed(0))  # no affine part: only the field
    columns = lambda images: (images[:, 0] > 0).float().argmax(dim=2)         # first inked column of every row
    spread = columns(bent)[:, 4:24].float().std(dim=1)                         # a straight shifted stroke has spread 0
    assert spread.mean() > 0.4, f"the stroke should wander from row to row, column spread {spread.mean():.2f}"
    assert 0.5 < (bent > 0).sum() / (x > 0).sum() < 1.5, "the field moves ink, it does not add or erase much"


def test_fidelity_measures_separate_good_from_bad_samples():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + 3.0
    collapsed = np.repeat(rng.normal(size=(1, 8)), 300, axis=0) + rng.normal(scale=0.01, size=(300, 8))
    good, bad, narrow = (fidelity.manifold_scores(real, f) for f in (same, shifted, collapsed))
    assert fidelity.frechet_distance(real, same) < 1.0 < fidelity.frechet_distance(real, shifted)
    assert good["precision"] > 0.8 and good["recall"] > 0.8 and good["coverage"] > 0.8
    assert bad["precision"] < 0.1 and bad["coverage"] < 0.1
    assert narrow["recall"] < 0.1, "a collapsed generator reproduces little of the real variety"
    features = rng.normal(size=(50, 16))
    fake = np.concatenate([features[[7, 3, 9]] + 1e-3, rng.normal(size=(20, 16)) + 4.0])  # 3 copies, 20 novel
    copies = fidelity.nearest_real(features, fake)
    assert copies["checked"] == 23 and copies["suspected_copies"] == 3
    assert copies["nearest"][:3].tolist() == [7, 3, 9], "each copy is paired with the real image it copies"
    assert (copies["distances"][3:] > copies["copy_threshold"]).all()


def test_evaluate_writes_metrics_runs_and_report(trained, tmp_path):
    out, config = trained
    generate.run(config.generate, out / "gan", out / "synthetic")
    metrics = evaluate.run(config.evaluate, out / "ingest", out / "synthetic", out / "gan", tmp_path / "evaluation")
    assert storage.read_json(tmp_path / "evaluation" / "metrics.json") == metrics
    assert metrics["n_test"] == 40 and metrics["seeds"] == 2 and metrics["n_synthetic"] == 100
    assert set(metrics["conditions"]) == {"real", "real+aug", "real+synthetic", "real+aug+synthetic", "synthetic",
                                          "real+aug+synthetic@0.25"}
    for name, condition in metrics["conditions"].items():
        for score in ("accuracy", "balanced_accuracy", "macro_f1"):
            runs = condition[f"{score}_runs"]
            assert len(runs) == 2 and all(0 <= a <= 1 for a in runs), (name, score)
            assert condition[f"{score}_mean"] == pytest.approx(np.mean(runs))
        assert np.sum(condition["confusion_matrix"]) == 2 * 40
        assert condition["worst_class_accuracy_mean"] <= min(condition["per_class_accuracy_mean"].values()) + 1e-9
    runs = metrics["conditions"]
    assert set(metrics["gain"]) == {"real+synthetic_vs_real", "real+aug+synthetic_vs_real+aug"}, \
        "balanced classes: no re-sampling conditions, so no gains against them"
    for name, gain in metrics["gain"].items():
        treated, baseline = name.split("_vs_")
        expected = np.subtract(runs[treated]["accuracy_runs"], runs[baseline]["accuracy_runs"]).mean()
        assert gain["mean"] == pytest.approx(expected) and gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
        assert gain["verdict"] in ("significant gain", "significant loss", "no significant difference")
        assert "with 2 seeds" in gain["verdict_note"], "2 seeds can never be trusted to resolve 1 point"
    fid = metrics["fidelity"]
    assert fid["frechet_distance"] >= 0 and 0 <= fid["precision"] <= 1 and 0 <= fid["coverage"] <= 1
    assert set(fid["per_class"]) == {str(d) for d in range(10)}
    rows = list(csv.DictReader(open(tmp_path / "evaluation" / "runs.csv")))
    assert len(rows) == 2 * 6
    choice = metrics["recommendation"]
    assert metrics["n_val"] == 30 and choice["validation"]["n_images"] == 30
    assert choice["setting"] in runs and runs[choice["setting"]]["accuracy_runs"] == choice["test_result"]["runs"]
    validation = choice["validation"]["accuracy"]
    assert set(validation) == set(runs) - {"synthetic"}, "every condition that trains on real images is a candidate"
    baseline = choice["validation"]["best_without_synthetic"]
    assert validation[baseline] == max(validation["real"], validation["real+aug"])
    assert choice["use_synthetic"] == (choice["validation"]["gain"]["verdict"] == "significant gain")
    page = (tmp_path / "evaluation" / "report.html").read_text()
    # Identity first, then the one verdict box, then the comparisons.
    assert page.index("class=identity") < page.index('class="verdict') < page.index("<h2>Comparisons") < page.index("<h2>Conditions")
    assert page.count('class="verdict') == 1 and "time per stage" in page and "<b>split</b>" in page
    for part in ("<h2>Confusion matrices", "<figcaption>step ", "<tr><th>0</th><td><img"):  # grids with class names
        assert part in page, part
    assert f"all {metrics['n_synthetic']} images were checked" in page and page.count("class='pair") == 8
    for name in ("real+aug", "real+aug+synthetic", choice["setting"]):  # DVC's confusion template reads these
        predictions = list(csv.DictReader(open(tmp_path / "evaluation" / "confusion" / f"{name}.csv")))
        matrix = np.array(runs[name]["confusion_matrix"])
        assert len(predictions) == 2 * 40 == matrix.sum()
        assert sum(r["actual"] == r["predicted"] for r in predictions) == np.trace(matrix)
    assert page.count("data:image/png;base64,") >= 5 and "http://" not in page and "https://" not in page
    table = result_rows(metrics)
    assert table[0][0].startswith("recommendation: ") and table[1] == ["why", "", choice["reason"]]
    assert table[2][0] == "real+synthetic vs real" and "detects gains above" in table[2][2]
    assert table[4][0] == "real"


def test_a_failed_aggregation_keeps_the_seed_files_it_needs(trained, tmp_path, monkeypatch):
    """The fanned-out path (one task per seed, then aggregate): a failure while summarising (here the report) must
    leave the seed files in place, so the retry finishes instead of asking for every classifier again."""
    out, config = trained
    generate.run(config.generate, out / "gan", out / "synthetic")
    folder = tmp_path / "evaluation"
    for seed in range(config.evaluate.seeds):
        evaluate.run_seed(config.evaluate, out / "ingest", out / "synthetic", folder, seed)
    seeds = sorted(p.name for p in (folder / "seeds").iterdir())

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(evaluate, "render_report", broken)
    with pytest.raises(OSError):
        evaluate.aggregate(config.evaluate, out / "ingest", out / "synthetic", out / "gan", folder)
    assert sorted(p.name for p in (folder / "seeds").iterdir()) == seeds and not (folder / "metrics.json").exists()
    monkeypatch.undo()
    metrics = evaluate.aggregate(config.evaluate, out / "ingest", out / "synthetic", out / "gan", folder)
    assert storage.read_json(folder / "metrics.json") == metrics and (folder / "report.html").is_file()


@pytest.mark.slow  # > 20 s: left out of `make test-fast`
def test_an_untrained_generator_cannot_earn_a_significant_gain(digits_dir, tmp_path):
    """The verdict logic cannot be fooled: noise from a 1-step generator must not look like help."""
    config = tiny_config(digits_dir, "train.steps=1", "evaluate.seeds=4", "evaluate.steps=120", "ingest.image_size=16")
    ingest.run(config.ingest, tmp_path / "ingest")
    train.run(config.train, tmp_path / "ingest", tmp_path / "gan")
    generate.run(config.generate, tmp_path / "gan", tmp_path / "synthetic")
    metrics = evaluate.run(config.evaluate, tmp_path / "ingest", tmp_path / "synthetic", tmp_path / "gan", tmp_path / "evaluation")
    for name, gain in metrics["gain"].items():
        assert gain["verdict"] in ("significant loss", "no significant difference"), (name, gain)
    assert not metrics["recommendation"]["use_synthetic"], "noise must never be recommended"
    assert metrics["conditions"]["synthetic"]["accuracy_mean"] < 0.5, "noise cannot teach digits"


@pytest.mark.parametrize("model", [pytest.param("resnet18", marks=pytest.mark.slow), "helpers.models:tiny_mlp"])
def test_evaluate_trains_your_own_classifier_under_the_same_paired_protocol(trained, tmp_path, model):
    from helpers import models

    out, config = trained
    generate.run(config.generate, out / "gan", out / "synthetic")
    evaluation = dataclasses.replace(config.evaluate, model=model, steps=8, candidate_shares="")
    models.CALLS.clear()
    metrics = evaluate.run(evaluation, out / "ingest", out / "synthetic", out / "gan", tmp_path / "evaluation")
    assert metrics["config"]["model"] == model
    fixed = [c for c in CONDITIONS if c.when == "always"]
    assert set(metrics["conditions"]) == {c.name for c in fixed}
    assert all(len(c["accuracy_runs"]) == 2 for c in metrics["conditions"].values())
    if ":" in model:  # called once per condition and seed, with the ingested shape
        assert models.CALLS == [(1, 10, 16)] * (2 * len(fixed))
    assert metrics["fidelity"]["feature_space"].startswith("penultimate layer")  # still the built-in CNN's features


def test_a_model_that_cannot_be_built_is_a_clear_error(digits_dir):
    from pipeline.classifier import build_model

    with pytest.raises(AugmentError, match="not 'small', 'module:function' or a torchvision"):
        build_model("resnet7", 1, 10, 16, 32)
    with pytest.raises(AugmentError, match="cannot import nothing from helpers.models"):
        build_model("helpers.models:nothing", 1, 10, 16, 32)
    with pytest.raises(AugmentError, match="returned str, not a torch.nn.Module"):
        build_model("helpers.models:not_a_model", 1, 10, 16, 32)
    assert isinstance(build_model("mobilenet_v3_small", 3, 4, 32, 32)(torch.zeros(2, 3, 32, 32)), torch.Tensor)
    with pytest.raises(AugmentError, match="evaluate.model must be"):
        tiny_config(digits_dir, "evaluate.model=a:b:c")
