"""A cross-validated recommendation (evaluate.folds = k): more evidence than the validation fifth.

The validation split of a small dataset is a few dozen images: too few to tell a real gain of a few points from
noise (4 images per class judged a source of extra REAL images, +2 points on 5,000 test images, as not
significant). With k folds every real image outside the test split judges: the pool (training + validation images)
is split into k class-stratified folds, and every candidate condition trains on k-1 of them and is scored on the one
left out, for every classifier seed, paired (the same seed, fold and batches' seed for every candidate). Each pool
image then has one prediction per seed, and the recommendation (pipeline.evaluate.recommend) weighs those exactly
as it weighs validation images: a seeds x images matrix of 0/1, its crossed interval over seeds and images.

What it must not see, and does not:
- the test images: never in the pool;
- the tool's own GAN's images: that GAN was trained on the training images, so a fold's held-out images were seen by
  it, and its images could carry them into the fold's training. Its conditions are left out (stated in the result),
  and so are those of every outside source named in evaluate.trained_on_data (a generator trained or fine-tuned on
  this dataset: only the user knows);
- an outside source's copies of a pool image (sources.training_copies): left out of the training of the fold that
  holds that image out, so a source cannot win by containing the images that judge it.
The folds' classifiers train on (k-1)/k of the pool: with k = 5 as many images as the run's own classifiers."""
from __future__ import annotations

import numpy as np

from pipeline import ensemble
from pipeline.classifier import predict, train_classifier
from pipeline.config import EvaluateConfig, parse_names
from pipeline.errors import AugmentError
from pipeline.progress import logger

OWN_SOURCE = "synthetic"  # the tool's own generator's images


def assign_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Each image's fold in 0..folds-1: every class's images shuffled (by `seed`: the classifier seed, so which images
    share a fold changes from seed to seed and that noise lands in the seed-to-seed variance the interval counts)
    and dealt round-robin, so every fold holds a class's images in proportion (class-stratified); the split never
    depends on the candidates, so they stay paired within a seed."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold[rows] = (np.arange(len(rows)) + start) % folds  # each class starts where the last ended: folds stay level
        start += len(rows)
    return fold


def check_pool(labels: np.ndarray, classes: list[str], folds: int) -> None:
    """Every class needs at least `folds` images in the pool, or a fold's training would lack it."""
    counts = np.bincount(labels, minlength=len(classes))
    small = [f"{c} ({n})" for c, n in zip(classes, counts) if n < folds]
    if small:
        raise AugmentError(f"evaluate.folds={folds} needs at least {folds} real images per class outside the test split; "
                           f"too few in: {', '.join(small)}. Lower evaluate.folds or set it to 0 (the validation split)")


def trained_on_data(config: EvaluateConfig) -> frozenset[str]:
    """The sources whose generator saw this dataset's training images: the tool's own, and every outside source
    named in evaluate.trained_on_data."""
    return frozenset({OWN_SOURCE, *parse_names(config.trained_on_data)})


def check_sources(config: EvaluateConfig, sources: set[str]) -> None:
    """With evaluate.folds: cross-validation judges outside sources only (the tool's own GAN saw the training images),
    and evaluate.trained_on_data may only name sources of this evaluation."""
    trained_on = trained_on_data(config)
    unknown = sorted(trained_on - {OWN_SOURCE} - sources)
    if unknown:
        raise AugmentError(f"evaluate.trained_on_data names {', '.join(unknown)}, not among the outside sources "
                           f"({', '.join(sorted(sources - {OWN_SOURCE})) or 'none'})")
    if not sources - trained_on:
        raise AugmentError(f"evaluate.folds={config.folds} cross-validates outside synthetic sources, and this evaluation has "
                           "none that was not trained on the dataset (the tool's own GAN saw the training images, so its "
                           "images cannot be cross-validated); add --synthetic NAME=FOLDER, or set evaluate.folds to 0")


def candidates(conditions, trained_on: frozenset[str] = frozenset({OWN_SOURCE})) -> tuple[list, list]:
    """(cross-validated candidates, left out): the conditions that train on real images, but not on the images of a
    generator that saw the training images (see the module's docstring)."""
    real = [c for c in conditions if c.real]
    return [c for c in real if not (c.synthetic and c.source in trained_on)], \
           [c for c in real if c.synthetic and c.source in trained_on]


def fold_pool(images: tuple[np.ndarray, np.ndarray], copies: np.ndarray | None, held_out: np.ndarray) -> tuple:
    """A source's images less those that copy a held-out pool image (copies: pool index or -1 per image)."""
    if copies is None:
        return images
    keep = ~np.isin(copies, np.flatnonzero(held_out))
    return images[0][keep], images[1][keep]


def seed_correct(config: EvaluateConfig, seed: int, conditions: list, pool: tuple[np.ndarray, np.ndarray],
                 sets: dict, copies: dict, num_classes: int, device, batched: bool = False) -> dict[str, np.ndarray]:
    """condition name -> 0/1 per pool image: the condition's classifier of this seed trained on the other folds,
    right or wrong on the image. copies: source -> pool index each image copies (-1 none)."""
    fold = assign_folds(pool[1], config.folds, seed)
    correct = {c.name: np.zeros(len(pool[1]), dtype=bool) for c in conditions}
    for k in range(config.folds):
        held = fold == k
        train = (pool[0][~held], pool[1][~held])
        synthetic = [fold_pool(sets[c.source], copies.get(c.source), held) if c.synthetic else None for c in conditions]
        for c, images in zip(conditions, synthetic):
            if images is not None and len(images[1]) == 0:
                raise AugmentError(f"fold {k + 1} of {config.folds}: every image of the source '{c.source}' copies one of "
                                   "the fold's held-out images, so it has none left to train with; the source is made of "
                                   "the dataset's own images")
        if batched:
            model = ensemble.train_ensemble(config, [(c.recipe, seed) for c in conditions], train, synthetic, num_classes, device)
            predicted = ensemble.predict(model, pool[0][held], device)
        else:
            predicted = [predict(train_classifier(config, c.recipe, seed, train, s, num_classes, device), pool[0][held], device)
                         for c, s in zip(conditions, synthetic)]
        for c, p in zip(conditions, predicted):
            correct[c.name][held] = p == pool[1][held]
        logger.info("seed %d fold %d/%d: %s", seed, k + 1, config.folds,
                    ", ".join(f"{c.name} {np.mean(p == pool[1][held]):.3f}" for c, p in zip(conditions, predicted)))
    return correct
