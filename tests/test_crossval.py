"""The cross-validated recommendation (evaluate.folds, issue #33): every real image outside the test split judges,
paired over seeds and folds; the tool's own GAN is left out; an outside source's copies of a fold's held-out
images never train that fold's classifiers; the test images never enter."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pipeline import storage
from pipeline.config import EvaluateConfig
from pipeline.demo import export_digits
from pipeline.errors import AugmentError
from pipeline.evaluate import crossval
from pipeline.evaluate.conditions import conditions_for
from pipeline.stages import WITHOUT_GAN, run_stage


def test_folds_are_class_stratified_level_and_fixed():
    labels = np.repeat(np.arange(4), [10, 7, 5, 3])
    fold = crossval.assign_folds(labels, 5)
    assert np.array_equal(fold, crossval.assign_folds(labels, 5))  # never depends on anything but the labels
    for c in range(4):
        counts = np.bincount(fold[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1  # each class spread over the folds as evenly as it can be
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1  # and the folds level in size
    with pytest.raises(AugmentError, match=r"needs at least 5 real images per class .*too few in: d \(3\)"):
        crossval.check_pool(labels, ["a", "b", "c", "d"], 5)
    crossval.check_pool(labels, ["a", "b", "c", "d"], 3)


def test_a_source_image_copying_a_held_out_image_is_left_out_of_that_fold_only():
    images = (np.arange(6)[:, None], np.zeros(6, dtype=np.int64))
    copies = np.array([-1, 3, 4, -1, 0, 3])  # images 1 and 5 copy pool image 3, image 4 copies pool image 0
    held_out = np.zeros(8, dtype=bool)
    held_out[[3, 6]] = True
    kept, _ = crossval.fold_pool(images, copies, held_out)
    assert kept[:, 0].tolist() == [0, 2, 3, 4]
    held_out[:] = False
    held_out[0] = True
    assert crossval.fold_pool(images, copies, held_out)[0][:, 0].tolist() == [0, 1, 2, 3, 5]
    assert crossval.fold_pool(images, None, held_out) is images  # the tool's own images have no copy index


def test_the_tools_own_gan_is_never_a_cross_validated_candidate():
    conditions = conditions_for(EvaluateConfig(), np.repeat(np.arange(3), 5), 3, ("synthetic", "extra"))
    chosen, left_out = crossval.candidates(conditions)
    names = {c.name for c in chosen}
    assert {"real", "real+aug", "real+extra", "real+aug+extra", "real+aug+extra@0.25"} == names
    assert {c.name for c in left_out} == {"real+synthetic", "real+aug+synthetic", "real+aug+synthetic@0.25"}


def test_evaluate_cross_validates_over_training_and_validation_images_never_the_test(digits_dir, tmp_path):
    more = export_digits(tmp_path / "more" / "digits", per_class=40)
    extra = tmp_path / "extra"
    for c in range(10):  # real digits the dataset does not hold
        (extra / str(c)).mkdir(parents=True)
        for path in sorted((more / str(c)).iterdir())[20:30]:
            shutil.copy(path, extra / str(c) / path.name)
    config = tiny_config(digits_dir, f"evaluate.sources=extra={extra}", "evaluate.folds=3", "evaluate.candidate_shares=")
    run = tmp_path / "run"
    storage.write_json(run / "config.json", config.to_dict())
    run_stage("ingest", config, run)
    train = [r["file"] for r in csv.DictReader(open(run / "ingest" / "manifest.csv")) if r["split"] == "train"]
    for name in train[:4]:  # the source also holds four of the TRAINING images under new names
        shutil.copy(digits_dir / name, extra / Path(name).parent / f"copy-{Path(name).name}")
    for name in WITHOUT_GAN[1:]:
        metrics = run_stage(name, config, run)
    arrays = storage.load_arrays(run / "ingest")
    source = storage.load_arrays(run / "sources" / "extra")
    # Each planted copy is indexed to the very training image it copies (the pool's first rows are the training images).
    pool_images = np.concatenate([arrays["train_images"], arrays["val_images"]])
    copied = np.flatnonzero(source["copies"] >= 0)
    assert len(copied) >= 4
    exact = [i for i in copied if np.array_equal(source["images"][i], pool_images[source["copies"][i]])]
    assert len(exact) >= 4
    cv = metrics["recommendation"]["cross_validation"]
    n_pool = len(arrays["train_labels"]) + len(arrays["val_labels"])
    assert cv["folds"] == 3 and cv["n_images"] == n_pool and cv["left_out"] == [] and cv["seconds"] > 0
    assert "3-fold cross-validation over the" in metrics["recommendation"]["reason"]
    assert metrics["recommendation"]["validation"]["n_images"] == n_pool
    # the candidates are judged on every pool image, seed by seed; the test images only report
    assert set(metrics["recommendation"]["validation"]["accuracy"]) == {"real", "real+aug", "real+extra", "real+aug+extra"}
    assert metrics["n_test"] == len(arrays["test_labels"]) > 0
    with pytest.raises(AugmentError, match="evaluate.folds=20 needs at least 20 real images per class"):
        run_stage("evaluate", tiny_config(digits_dir, f"evaluate.sources=extra={extra}", "evaluate.folds=20"), run)
    assert (run / "evaluation" / "metrics.json").is_file()  # refused before anything was replaced


def test_folds_is_zero_or_two_to_twenty():
    for bad in ("1", "21", "-1"):
        with pytest.raises(AugmentError, match="evaluate.folds"):
            tiny_config(".", f"evaluate.folds={bad}")


def test_generators_trained_on_the_data_are_reported_but_not_cross_validated(finished_run, tmp_path):
    """The tool's own GAN, and an outside source named in evaluate.trained_on_data, saw the training images that the
    folds hold out: their conditions are trained and tested, never candidates. Without any other source, or with a
    name that is not a source, the evaluation is refused before it trains."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    dataset = storage.read_json_object(run / "config.json", ("ingest",))["ingest"]["dataset"]
    more = export_digits(tmp_path / "more" / "digits", per_class=30)
    extra = tmp_path / "extra"
    for c in range(10):
        shutil.copytree(more / str(c), extra / str(c), ignore=lambda folder, names: sorted(names)[:20])
    shutil.copytree(finished_run / "synthetic", tmp_path / "tuned")  # as if a GAN fine-tuned on this data made them
    base = ["evaluate.rebalance=on", "evaluate.folds=2", "evaluate.candidate_shares="]
    config = tiny_config(dataset, *base, f"evaluate.sources=extra={extra}, tuned={tmp_path / 'tuned'}",
                         "evaluate.trained_on_data=tuned")
    run_stage("sources", config, run)
    metrics = run_stage("evaluate", config, run)
    cv = metrics["recommendation"]["cross_validation"]
    assert {"real+synthetic", "real+aug+synthetic", "real+aug+topup", "real+tuned", "real+aug+tuned",
            "real+aug+topup-tuned"} <= set(cv["left_out"])
    assert "the tool's own GAN, source 'tuned'" in cv["why_left_out"]
    judged = metrics["recommendation"]["validation"]["accuracy"]
    assert {"real+aug+resampled", "real+aug+extra", "real+aug+topup-extra"} <= set(judged)
    assert not set(cv["left_out"]) & set(judged)
    assert {"real+aug+synthetic", "real+aug+tuned"} <= set(metrics["conditions"])  # still trained and tested
    page = (run / "evaluation" / "report.html").read_text()
    assert "Chosen on the cross-validated images" in page and "Not candidates: real+synthetic" in page
    alone = tmp_path / "alone"  # the finished run as it was: the tool's own GAN and no outside source
    shutil.copytree(finished_run, alone, symlinks=True)
    with pytest.raises(AugmentError, match="cross-validates outside synthetic sources, and this evaluation has none"):
        run_stage("evaluate", tiny_config(dataset, *base), alone)
    with pytest.raises(AugmentError, match="evaluate.trained_on_data names nope, not among the outside sources"):
        run_stage("evaluate", tiny_config(dataset, *base, f"evaluate.sources=extra={extra}",
                                          "evaluate.trained_on_data=nope"), run)
    assert (run / "evaluation" / "metrics.json").is_file()

def test_the_dry_run_plan_counts_the_fold_classifiers(digits_dir, tmp_path):
    from pipeline import plan

    extra = tmp_path / "extra"
    shutil.copytree(digits_dir, extra)
    assert plan.plan(tiny_config(digits_dir))["cross_validated"] == 0
    # own GAN: real, real+aug are the candidates (its 4 synthetic conditions are not); extra adds 3 more
    assert plan.plan(tiny_config(digits_dir, "evaluate.folds=3"))["cross_validated"] == 3 * 2
    folded = plan.plan(tiny_config(digits_dir, "evaluate.folds=3", f"evaluate.sources=extra={extra}"))
    assert folded["cross_validated"] == 3 * 5 and folded["conditions"] == 6 + 4


def test_a_source_left_empty_by_a_fold_is_a_clear_error():
    from pipeline.evaluate.conditions import BY_NAME

    labels = np.repeat(np.arange(2), 4)
    pool = (np.zeros((8, 1, 4, 4), np.uint8), labels)
    sets = {"same": (np.zeros((1, 1, 4, 4), np.uint8), np.zeros(1, dtype=np.int64))}
    condition = BY_NAME["real+aug+synthetic"].for_source("same")
    held_first = int(np.flatnonzero(crossval.assign_folds(labels, 2) == 0)[0])
    copies = {"same": np.array([held_first])}  # its one image copies a pool image that fold 1 holds out
    with pytest.raises(AugmentError, match="fold 1 of 2: every image of the source 'same' copies"):
        crossval.seed_correct(EvaluateConfig(folds=2, steps=1), 0, [condition], pool, sets, copies, 2, "cpu")


def test_the_batched_path_cross_validates_as_the_serial_one(digits_dir, tmp_path):
    """One candidate per ensemble trains bit for bit as alone (tests/test_ensemble.py), so the folds' 0/1 must agree,
    copies of held-out images left out the same way on both paths."""
    from pipeline import ingest
    from pipeline.evaluate.conditions import BY_NAME

    ingest.run(tiny_config(digits_dir).ingest, tmp_path / "ingest")
    arrays = storage.load_arrays(tmp_path / "ingest")
    pool = (np.concatenate([arrays["train_images"], arrays["val_images"]]),
            np.concatenate([arrays["train_labels"], arrays["val_labels"]]))
    sets = {"other": (arrays["test_images"], arrays["test_labels"])}  # any images of the classes will do here
    copies = {"other": np.where(np.arange(len(arrays["test_labels"])) % 3 == 0, np.arange(len(arrays["test_labels"])) % 40, -1)}
    condition = BY_NAME["real+aug+synthetic"].for_source("other")
    config = EvaluateConfig(folds=3, steps=12, batch_size=32)
    serial = crossval.seed_correct(config, 4, [condition], pool, sets, copies, 10, torch.device("cpu"))
    batched = crossval.seed_correct(config, 4, [condition], pool, sets, copies, 10, torch.device("cpu"), batched=True)
    assert np.array_equal(serial[condition.name], batched[condition.name]) and serial[condition.name].any()
