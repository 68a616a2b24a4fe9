"""The batched evaluation (issue #34): several classifiers trained as one ensemble module. One member trains bit for
bit as it would alone (the arithmetic is the same); several members stay independent classifiers; the evaluate stage
gives the same kind of records either way."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pipeline import ensemble, ingest, storage
from pipeline.classifier import REAL_AUG, Recipe, SmallCNN, predict, train_classifier
from pipeline.config import EvaluateConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    ingest.run(tiny_config(digits_dir).ingest, out)
    arrays = storage.load_arrays(out)
    return (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])


@pytest.mark.parametrize("recipe", [REAL_AUG, Recipe(synthetic=True), Recipe(augment=True, balanced=True),
                                    Recipe(augment=True, loss="balanced_softmax"), Recipe(synthetic=True, augment=True, topup=True, balanced=True)],
                         ids=["real+aug", "real+synthetic", "resampled", "bsm", "topup"])
def test_one_member_trains_bit_for_bit_as_alone(digits, recipe):
    real, test = digits
    synthetic = (test[0], test[1]) if recipe.synthetic else None  # any other images of the classes will do here
    config = EvaluateConfig(steps=12, batch_size=32)
    alone = train_classifier(config, recipe, 7, real, synthetic, 10, CPU)
    together = ensemble.train_ensemble(config, [(recipe, 7)], real, [synthetic], 10, CPU)
    extracted = ensemble.member(together, 0, SmallCNN(1, 10, 16, config.width)).state_dict()
    assert all(torch.equal(value, extracted[key]) for key, value in alone.state_dict().items())
    assert np.array_equal(predict(alone, test[0], CPU), ensemble.predict(together, test[0], CPU)[0])


def test_several_members_are_independent_classifiers(digits):
    real, test = digits
    config = EvaluateConfig(steps=150, batch_size=32)
    members = [(Recipe(), 0), (REAL_AUG, 0), (REAL_AUG, 1)]
    together = ensemble.train_ensemble(config, members, real, [None] * 3, 10, CPU)
    predicted = ensemble.predict(together, test[0], CPU)
    accuracy = (predicted == test[1]).mean(axis=1)
    assert predicted.shape == (3, len(test[1])) and (accuracy > 0.5).all(), accuracy  # chance is 0.1
    assert (predicted[1] != predicted[2]).any()  # two seeds: two different networks
    for m in range(3):  # a member taken out predicts as it does inside
        alone = ensemble.member(together, m, SmallCNN(1, 10, 16, config.width))
        assert np.array_equal(predict(alone, test[0], CPU), predicted[m])


def test_the_evaluate_stage_batched_gives_the_same_kind_of_results(digits_dir, tmp_path):
    from pipeline.stages import run_stage

    config = tiny_config(digits_dir, "train.steps=2", "train.track_quality=false", "train.keep=last")
    for name in ("ingest", "train", "generate"):
        run_stage(name, config, tmp_path / "run")
    serial = run_stage("evaluate", config, tmp_path / "run")
    config = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, batched="on"))
    together = run_stage("evaluate", config, tmp_path / "run")
    assert together.keys() == serial.keys() and together["conditions"].keys() == serial["conditions"].keys()
    assert together["gain"].keys() == serial["gain"].keys() and together["fidelity"]["frechet_distance"] >= 0
    for name, condition in together["conditions"].items():
        assert len(condition["accuracy_runs"]) == 2 and 0 <= condition["accuracy_mean"] <= 1, name
