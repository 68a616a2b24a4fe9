"""Choose whether (and how) to use synthetic data from the validation split alone; the test set only reports."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from pipeline.metrics.stats import crossed_gain, verdict


ALPHA = 0.05        # the chance of recommending synthetic data that does not help, at most (all shares together)
NEAR_CHANCE = 0.2   # a baseline below chance + this share of the way to 100% is too weak to judge by


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per image: n / (classes x its class's count), so that mean(weight * x) is x's class-balanced mean."""
    _, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return len(labels) / (len(counts) * counts[index])


def _level(differences: np.ndarray) -> bool:
    """Whether a seeds x images matrix of paired differences is within noise of zero (95% crossed interval)."""
    gain = crossed_gain(differences)
    return gain["ci"] is not None and gain["ci"][0] <= 0 <= gain["ci"][1]


def recommend(val_correct: dict[str, np.ndarray], synthetic_share: dict[str, float], classical: dict[str, bool],
              val_labels: np.ndarray | None = None, balanced: dict[str, bool] | None = None,
              worst_class_first: frozenset[str] = frozenset(), judged_by: str | None = None) -> dict:
    """val_correct: candidate -> seeds x n_val correctness (0/1); val_labels: each validation image's class.
    Candidates are scored by balanced accuracy (the mean over classes of each class's validation accuracy), so a
    rare class's two images weigh as much as a big class's forty; with as many images in every class it is plain
    accuracy. The best candidate without synthetic data is the default; the best one with synthetic data replaces
    it only when its validation gain is significant counting both sources of noise: the seeds (each seed's models)
    and the validation images (each weighted by 1 / its class's count), so 40 images cannot look like 400 and three
    lucky seeds cannot look like a method (stats.crossed_gain, Bonferroni over the synthetic candidates). With one
    seed, or classifiers near chance, the answer is "inconclusive" and no synthetic data is recommended.
    Equal scores (common with a few dozen images) go to classical augmentation, the better-established choice on
    small data, then to the smaller synthetic share, then to plain sampling over class-balanced; never to the
    candidates' order. Among the `worst_class_first` candidates (the long-tail remedies on imbalanced data:
    re-sampling, Balanced Softmax), one level with the best on validation (their difference not significant) and
    better in its worst class replaces it: overall they tie, and the rarest class is what such a user needs.
    judged_by: what the 0/1 columns are when they are not the validation images (a cross-validation's pool images,
    each predicted by a classifier that did not train on it); it is named in the reason."""
    if not val_correct or next(iter(val_correct.values())).shape[1] == 0:
        return {"use_synthetic": False, "setting": None, "reason": "no validation split (ingest.val_fraction is 0 or "
                "classes are too small to spare an image), so the tool cannot choose; it does not recommend synthetic data"}
    n_images = next(iter(val_correct.values())).shape[1]
    labels = np.zeros(n_images, dtype=np.int64) if val_labels is None else np.asarray(val_labels)
    present, counts = np.unique(labels, return_counts=True)
    weight = class_weights(labels)
    balanced = balanced or {}
    per_image = {name: correct.mean(axis=0) for name, correct in val_correct.items()}
    per_class = {name: [float(values[labels == c].mean()) for c in present] for name, values in per_image.items()}
    score = {name: float(np.mean(weight * values)) for name, values in per_image.items()}
    # Exact ranking: each class's right answers as a fraction, so equal counts are never split by float noise.
    exact = {name: sum(Fraction(int(round(correct[:, labels == c].sum())), correct.shape[0] * int(k))
                       for c, k in zip(present, counts)) for name, correct in val_correct.items()}
    best = lambda names: max(names, key=lambda n: (exact[n], classical[n], -synthetic_share[n], not balanced.get(n, False)))
    baseline = best([n for n in per_image if synthetic_share[n] == 0])
    if baseline in worst_class_first:
        level = [n for n in worst_class_first if n in per_image and
                 (n == baseline or _level(weight[None, :] * (val_correct[n] - val_correct[baseline])))]
        baseline = max(level, key=lambda n: (min(per_class[n]), n == baseline, exact[n]))
    validation = {"n_images": int(n_images), "images_per_class": {"min": int(counts.min()), "max": int(counts.max())},
                  "accuracy": {name: float(values.mean()) for name, values in per_image.items()},
                  "balanced_accuracy": score, "worst_class_accuracy": {name: min(v) for name, v in per_class.items()},
                  "best_without_synthetic": baseline}
    with_synthetic = [n for n in per_image if synthetic_share[n] > 0]
    if not with_synthetic:
        return {"use_synthetic": False, "setting": baseline, "synthetic_share": 0.0,
                "classical_augmentation": classical[baseline],
                "reason": f"no evaluated condition mixes in synthetic images (evaluate.synthetic_share is 0 and "
                          f"evaluate.candidate_shares is empty), so {baseline}, the best on validation, is recommended",
                "validation": {**validation, "best_with_synthetic": None, "gain": None}}
    challenger = best(with_synthetic)
    # The challenger is the best of len(with_synthetic) candidates on these same images: Bonferroni keeps the chance
    # of a false "use it" at 5% however many shares were tried.
    level = 1 - ALPHA / len(with_synthetic)
    differences = weight[None, :] * (val_correct[challenger] - val_correct[baseline])  # seeds x images, class-balanced
    gain = crossed_gain(differences, level)
    chance = 1 / len(present) if len(present) > 1 else None  # None: no labels given, no chance level known
    inconclusive = None
    if gain["ci"] is None:
        inconclusive = (f"with {gain['seeds']} classifier seed the variation between seeds cannot be measured, and it is "
                        "the largest noise with few seeds; set evaluate.seeds to 3 or more")
    elif chance is not None and score[baseline] < chance + NEAR_CHANCE * (1 - chance):
        inconclusive = (f"the classifiers score near chance on validation ({100 * score[baseline]:.1f}% balanced accuracy "
                        f"for {baseline}, chance {100 * chance:.1f}%): too weak to judge the synthetic images by; train "
                        "them longer (evaluate.steps) or check the data")
    verdict_text = "inconclusive" if inconclusive else verdict(gain)
    use = verdict_text == "significant gain"
    chosen = challenger if use else baseline
    interval = "n/a" if gain["ci"] is None else f"[{100 * gain['ci'][0]:+.1f}, {100 * gain['ci'][1]:+.1f}]"
    spread = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"
    where = f"by {judged_by} ({spread} per class)" if judged_by else f"on {n_images} validation images ({spread} per class)"
    measured = (f"{where} and {gain['seeds']} seeds, {challenger} scored "
                f"{100 * score[challenger]:.1f}% balanced accuracy against {100 * score[baseline]:.1f}% for {baseline} "
                f"(gain {100 * gain['mean']:+.1f} points, {100 * level:.1f}% CI {interval})")
    if inconclusive:
        reason = f"inconclusive: {inconclusive}; so no synthetic data is recommended ({measured})"
    else:
        reason = measured + (": significant, so use synthetic data this way" if use else
                             ": not a significant gain, so do not use synthetic data")
        if not use and gain["min_detectable_gain"] is not None:
            reason += f" (this run could reliably detect gains above {100 * gain['min_detectable_gain']:.1f} points)"
    return {
        "use_synthetic": use, "setting": chosen, "synthetic_share": synthetic_share[chosen],
        "classical_augmentation": classical[chosen], "reason": reason, "inconclusive": bool(inconclusive),
        "validation": {**validation, "best_with_synthetic": challenger,
                       "gain": {**gain, "level": level, "verdict": verdict_text, "runs": None}},
    }
