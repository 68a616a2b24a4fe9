"""Choose whether (and how) to use synthetic data from the validation split alone; the test set only reports."""
from __future__ import annotations

import numpy as np

from pipeline.evaluate.stats import paired_gain, verdict


def recommend(val_correct: dict[str, np.ndarray], synthetic_share: dict[str, float], classical: dict[str, bool]) -> dict:
    """val_correct: candidate -> seeds x n_val correctness (0/1). The best candidate without synthetic data is the
    default; the best one with synthetic data replaces it only when its validation gain is significant, with the
    validation IMAGES as the unit (each image's correctness averaged over seeds), so 40 images cannot look like 400.
    Equal validation accuracy (common with a few dozen images) goes to classical augmentation, the better-established
    choice on small data, then to the smaller synthetic share; never to the candidates' order."""
    if not val_correct or next(iter(val_correct.values())).shape[1] == 0:
        return {"use_synthetic": False, "setting": None, "reason": "no validation split (ingest.val_fraction is 0 or "
                "classes are too small to spare an image), so the tool cannot choose; it does not recommend synthetic data"}
    per_image = {name: correct.mean(axis=0) for name, correct in val_correct.items()}
    accuracy = {name: float(values.mean()) for name, values in per_image.items()}
    right = {name: int(round(correct.sum())) for name, correct in val_correct.items()}  # exact: no float ties broken by noise
    best = lambda names: max(names, key=lambda n: (right[n], classical[n], -synthetic_share[n]))
    baseline = best([n for n in per_image if synthetic_share[n] == 0])
    with_synthetic = [n for n in per_image if synthetic_share[n] > 0]
    if not with_synthetic:
        return {"use_synthetic": False, "setting": baseline, "synthetic_share": 0.0,
                "classical_augmentation": classical[baseline],
                "reason": f"no evaluated condition mixes in synthetic images (evaluate.synthetic_share is 0 and "
                          f"evaluate.candidate_shares is empty), so {baseline}, the best on validation, is recommended",
                "validation": {"n_images": int(len(per_image[baseline])), "accuracy": accuracy,
                               "best_without_synthetic": baseline, "best_with_synthetic": None, "gain": None}}
    challenger = best(with_synthetic)
    gain = paired_gain(per_image[challenger].tolist(), per_image[baseline].tolist())
    use = verdict(gain) == "significant gain"
    chosen = challenger if use else baseline
    interval = "n/a" if gain["ci95"] is None else f"[{100 * gain['ci95'][0]:+.1f}, {100 * gain['ci95'][1]:+.1f}]"
    reason = (f"on {len(per_image[baseline])} validation images, {challenger} scored {100 * accuracy[challenger]:.1f}% "
              f"against {100 * accuracy[baseline]:.1f}% for {baseline} (gain {100 * gain['mean']:+.1f} points, 95% CI "
              f"{interval}): " + ("significant, so use synthetic data this way" if use else
                                  "not a significant gain, so do not use synthetic data"))
    return {
        "use_synthetic": use, "setting": chosen, "synthetic_share": synthetic_share[chosen],
        "classical_augmentation": classical[chosen], "reason": reason,
        "validation": {"n_images": int(len(per_image[baseline])), "accuracy": accuracy,
                       "best_without_synthetic": baseline, "best_with_synthetic": challenger,
                       "gain": {**gain, "verdict": verdict(gain), "runs": None}},
    }
