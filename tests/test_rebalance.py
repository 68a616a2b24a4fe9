"""Issue 17: on imbalanced data the baseline is class-balanced re-sampling of the real images; the tool finds the
imbalance itself, evaluates re-sampling and a balanced synthetic top-up, and chooses by balanced accuracy."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import copy_tree, tiny_config
from pipeline import generate, ingest
from pipeline.config import EvaluateConfig
from pipeline.evaluate import stage as evaluate_stage
from pipeline.classifier import Recipe, batch_prior, pools, share_of, topup_indices, train_classifier
from pipeline.evaluate.conditions import conditions_for, rebalancing
from pipeline.evaluate.recommend import recommend
from flows.tables import result_rows
from pipeline.gan import train

LABELS = np.repeat(np.arange(3), [40, 10, 2])  # 20:1


def draw(pool, count=30_000, seed=0):
    x, y, n, _, weights = pool
    rng = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(x), (count,), generator=rng) if weights is None else torch.multinomial(weights, count, True, generator=rng)
    return np.bincount(y[index].numpy(), minlength=3) / count


def test_rebalancing_is_on_by_default_only_for_imbalanced_classes():
    config = EvaluateConfig()
    names = lambda labels: [c.name for c in conditions_for(config, labels, 3)]
    assert "real+aug+resampled" in names(LABELS) and "real+aug+topup" in names(LABELS)
    assert not rebalancing(config, np.repeat(np.arange(3), [10, 10, 6]), 3)  # 1.7 < the default 2.0
    assert "real+aug+resampled" not in names(np.repeat(np.arange(3), 10))
    assert rebalancing(EvaluateConfig(rebalance="on"), np.repeat(np.arange(3), 10), 3)
    assert not rebalancing(EvaluateConfig(rebalance="off"), LABELS, 3)
    # Balanced Softmax is opt-in (it lost to re-sampling on the project's profiles), and only where rebalance applies
    assert not {"real+aug+bsm", "real+aug+synthetic+bsm"} & set(names(LABELS))
    loss = EvaluateConfig(long_tail_loss="balanced_softmax")
    assert {"real+aug+bsm", "real+aug+synthetic+bsm"} <= {c.name for c in conditions_for(loss, LABELS, 3)}
    assert "real+aug+bsm" not in {c.name for c in conditions_for(loss, np.repeat(np.arange(3), 10), 3)}


def test_resampled_batches_are_class_balanced_and_topup_fills_every_class_to_the_largest():
    config = EvaluateConfig(batch_size=64)
    images = np.zeros((len(LABELS), 1, 4, 4), np.uint8)
    synthetic_labels = np.repeat(np.arange(3), 50)
    synthetic = (np.ones((150, 1, 4, 4), np.uint8), synthetic_labels)
    conditions = {c.name: c.recipe for c in conditions_for(config, LABELS, 3)}
    uniform = draw(pools(config, conditions["real+aug"], 0, (images, LABELS), synthetic, 3)[0])
    assert uniform == pytest.approx([40 / 52, 10 / 52, 2 / 52], abs=0.01)
    resampled = pools(config, conditions["real+aug+resampled"], 0, (images, LABELS), synthetic, 3)
    assert len(resampled) == 1 and resampled[0][2] == 64 and draw(resampled[0]) == pytest.approx([1 / 3] * 3, abs=0.01)
    rows = topup_indices(LABELS, synthetic_labels, 3)
    assert np.bincount(synthetic_labels[rows], minlength=3).tolist() == [0, 30, 38]
    (pool,) = pools(config, conditions["real+aug+topup"], 0, (images, LABELS), synthetic, 3)
    assert len(pool[0]) == 52 + 68 and draw(pool) == pytest.approx([1 / 3] * 3, abs=0.01)
    synthetic_share = (pool[0][:, 0, 0, 0] == 1).double()  # synthetic pixels are 1 here, real ones 0
    rare = pool[1] == 2
    assert float(synthetic_share[rare].mean()) == pytest.approx(38 / 40)
    assert share_of(conditions["real+aug+topup"], config, LABELS, 3) == pytest.approx(np.mean([0, 30 / 40, 38 / 40]))


def test_the_recommendation_scores_balanced_accuracy():
    """A candidate that is right on the one big class but wrong on the rare one loses to one right on both."""
    labels = np.array([0] * 18 + [1] * 2)
    big_only = np.tile(np.r_[np.ones(18), np.zeros(2)], (5, 1))
    both = np.tile(np.r_[np.ones(15), np.zeros(3), np.ones(2)], (5, 1))
    assert big_only.mean() > both.mean()  # plain accuracy would pick big_only
    choice = recommend({"real+aug": big_only, "real+aug+resampled": both}, {"real+aug": 0.0, "real+aug+resampled": 0.0},
                       {"real+aug": True, "real+aug+resampled": True}, val_labels=labels,
                       balanced={"real+aug": False, "real+aug+resampled": True})
    assert choice["setting"] == "real+aug+resampled"
    assert choice["validation"]["balanced_accuracy"]["real+aug+resampled"] == pytest.approx((15 / 18 + 1) / 2)
    assert choice["validation"]["worst_class_accuracy"]["real+aug"] == 0.0
    tie = recommend({"real+aug+resampled": both, "real+aug": both.copy()}, {"real+aug": 0.0, "real+aug+resampled": 0.0},
                    {"real+aug": True, "real+aug+resampled": True}, val_labels=labels,
                    balanced={"real+aug": False, "real+aug+resampled": True})
    assert tie["setting"] == "real+aug", "a tie goes to plain sampling, whatever the order"


def test_an_imbalanced_run_reports_the_resampled_baseline_and_its_gain(digits_dir, tmp_path):
    data = copy_tree(digits_dir, tmp_path / "data")
    for label, keep in (("1", 6), ("2", 5)):
        for path in sorted((data / label).iterdir())[keep:]:
            path.unlink()
    config = tiny_config(data, "train.steps=2", "train.track_quality=false", "train.keep=last",
                         "evaluate.long_tail_loss=balanced_softmax")
    stats = ingest.run(config.ingest, tmp_path / "ingest")
    train_counts = [counts["train"] for counts in stats["per_class"].values()]
    assert (max(train_counts), min(train_counts)) == (13, 3) and stats["imbalance_ratio"] == pytest.approx(13 / 3, abs=1e-4)
    train.run(config.train, tmp_path / "ingest", tmp_path / "gan")
    generate.run(config.generate, tmp_path / "gan", tmp_path / "synthetic", tmp_path / "ingest")
    metrics = evaluate_stage.run(config.evaluate, tmp_path / "ingest", tmp_path / "synthetic", tmp_path / "gan", tmp_path / "evaluation")
    assert {"real+aug+resampled", "real+aug+topup"} <= set(metrics["conditions"])
    gain = metrics["gain"]["real+aug+synthetic_vs_real+aug+resampled"]
    resampled, treated = metrics["conditions"]["real+aug+resampled"], metrics["conditions"]["real+aug+synthetic"]
    assert gain["mean"] == pytest.approx(treated["accuracy_mean"] - resampled["accuracy_mean"], abs=1e-9)
    assert "real+aug+topup_vs_real+aug+resampled" in metrics["gain"] and metrics["imbalance_ratio"] == pytest.approx(13 / 3, abs=1e-4)
    assert set(metrics["recommendation"]["validation"]["accuracy"]) >= {"real+aug+resampled", "real+aug+topup", "real+aug+bsm"}
    assert {"real+aug+bsm_vs_real+aug+resampled", "real+aug+synthetic+bsm_vs_real+aug+bsm"} <= set(metrics["gain"])
    headline = evaluate_stage.headline(metrics)
    assert len(headline) <= 20 and {"acc.bsm", "gain.bsm-res", "gain.syn-res.lo", "gain.topup-res.hi"} <= set(headline)
    assert "gain.syn-aug.lo" not in headline  # bounds only against the strongest baseline (re-sampling here)
    rows = [row[0] for row in result_rows(metrics)]
    assert "real+aug+synthetic vs real+aug+resampled" in rows and "real+aug+resampled" in rows
    page = (tmp_path / "evaluation" / "report.html").read_text()
    assert "<tr><td>real+aug+synthetic</td><td>real+aug+resampled</td>" in page  # the comparison's table row
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["gain"].keys() == metrics["gain"].keys()


def test_balanced_softmax_adds_the_log_prior_of_the_batches_it_draws():
    config = EvaluateConfig(batch_size=64, synthetic_share=0.25)
    images = np.zeros((len(LABELS), 1, 4, 4), np.uint8)
    synthetic = (np.ones((150, 1, 4, 4), np.uint8), np.repeat(np.arange(3), 50))
    plain = pools(config, Recipe(augment=True, loss="balanced_softmax"), 0, (images, LABELS), synthetic, 3)
    assert batch_prior(plain, 3).tolist() == pytest.approx([40 / 52, 10 / 52, 2 / 52])
    mixed = pools(config, Recipe(synthetic=True, augment=True, loss="balanced_softmax"), 0, (images, LABELS), synthetic, 3)
    assert batch_prior(mixed, 3).tolist() == pytest.approx([0.75 * 40 / 52 + 0.25 / 3, 0.75 * 10 / 52 + 0.25 / 3,
                                                            0.75 * 2 / 52 + 0.25 / 3])
    balanced = pools(config, Recipe(augment=True, balanced=True), 0, (images, LABELS), synthetic, 3)
    assert batch_prior(balanced, 3).tolist() == pytest.approx([1 / 3] * 3)  # re-sampling: Balanced Softmax = plain CE


def test_balanced_softmax_lifts_the_rare_class_of_a_skewed_problem():
    """Two classes told apart by brightness, 60:3: plain cross-entropy leans to the big class; Balanced Softmax's
    log-prior correction moves the boundary back, so more rare images are recognised (same seed, same batches)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [60, 3])
    images = (rng.normal(100 + 40 * labels, 40)[:, None, None, None] * np.ones((1, 1, 8, 8))).clip(0, 255).astype(np.uint8)
    test_labels = np.repeat([0, 1], 200)
    test = (rng.normal(100 + 40 * test_labels, 40)[:, None, None, None] * np.ones((1, 1, 8, 8))).clip(0, 255).astype(np.uint8)
    config = EvaluateConfig(steps=150, batch_size=32, width=4)
    recall = {}
    for loss in ("cross_entropy", "balanced_softmax"):
        model = train_classifier(config, Recipe(loss=loss), 0, (images, labels), None, 2, torch.device("cpu"))
        with torch.no_grad():
            predicted = model(torch.from_numpy(test).float() / 127.5 - 1).argmax(1).numpy()
        recall[loss] = float(np.mean(predicted[test_labels == 1] == 1))
    assert recall["balanced_softmax"] > recall["cross_entropy"] + 0.1, recall


def test_a_long_tail_remedy_level_with_the_best_but_better_in_its_worst_class_is_preferred():
    labels = np.array([0] * 16 + [1] * 4)
    rng = np.random.default_rng(1)
    resampled = np.tile(np.r_[np.ones(16), np.ones(2), np.zeros(2)], (5, 1))               # 16/16 and 2/4: 75%
    bsm = np.tile(np.r_[np.ones(11), np.zeros(5), np.ones(3), np.zeros(1)], (5, 1))         # 11/16 and 3/4: 71.9%
    flip = rng.random((5, 20)) < 0.03
    bsm = np.where(flip, 1 - bsm, bsm)
    names = ("real+aug", "real+aug+resampled", "real+aug+bsm")
    shares, aug = {n: 0.0 for n in names}, {n: True for n in names}
    base = recommend({"real+aug": resampled * 0, "real+aug+resampled": resampled, "real+aug+bsm": bsm}, shares, aug,
                     val_labels=labels)
    assert base["setting"] == "real+aug+resampled"  # higher balanced accuracy, no worst-class rule asked for
    choice = recommend({"real+aug": resampled * 0, "real+aug+resampled": resampled, "real+aug+bsm": bsm}, shares, aug,
                       val_labels=labels, worst_class_first=frozenset({"real+aug+resampled", "real+aug+bsm"}))
    assert choice["setting"] == "real+aug+bsm"
    clear = np.tile(np.r_[np.ones(16), np.ones(4)], (5, 1))  # significantly better: the rule does not apply
    choice = recommend({"real+aug": clear * 0, "real+aug+resampled": clear, "real+aug+bsm": bsm}, shares, aug,
                       val_labels=labels, worst_class_first=frozenset({"real+aug+resampled", "real+aug+bsm"}))
    assert choice["setting"] == "real+aug+resampled"
