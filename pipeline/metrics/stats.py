"""Paired differences between conditions: 95% t-interval, smallest detectable gain, and a verdict."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

RESOLVE_POINTS = 0.01  # a run "can tell" when its 95% interval is no wider than ±1 accuracy point
POWER = 0.8


def summarize(values: list[float]) -> dict:
    """Mean, sample std (ddof=1; 0 for one run) and every run's value."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "runs": [float(v) for v in array]}


def paired_gain(treated: list[float], baseline: list[float], level: float = 0.95) -> dict:
    """Mean of per-seed differences treated - baseline, its t-interval, and the smallest true gain this many seeds
    would detect with 80% power at the observed spread (None with fewer than 2 seeds)."""
    diffs = np.asarray(treated, dtype=float) - np.asarray(baseline, dtype=float)
    mean, n = float(diffs.mean()), len(diffs)
    if n < 2:
        return {"mean": mean, "ci95": None, "min_detectable_gain": None, "runs": diffs.tolist()}
    sem = float(diffs.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem
    detectable = (float(stats.t.ppf(0.5 + level / 2, n - 1)) + float(stats.t.ppf(POWER, n - 1))) * sem
    return {"mean": mean, "ci95": [mean - half, mean + half], "min_detectable_gain": detectable, "runs": diffs.tolist()}


def verdict(gain: dict) -> str:
    """'significant gain', 'significant loss', 'no significant difference' (or 'too few seeds to tell' with one
    seed), from the gain's interval (`ci95`, or `ci` at another level)."""
    interval = gain["ci95"] if "ci95" in gain else gain["ci"]
    if interval is None:
        return "too few seeds to tell"
    low, high = interval
    if low > 0:
        return "significant gain"
    if high < 0:
        return "significant loss"
    return "no significant difference"


def verdict_note(gain: dict) -> str:
    """A sentence on what the run could resolve, so 'no significant difference' is never over-read."""
    if gain["ci95"] is None:
        return "one classifier seed gives no interval; set evaluate.seeds to 5 or more"
    half = (gain["ci95"][1] - gain["ci95"][0]) / 2
    if len(gain["runs"]) < 3:
        return (f"with {len(gain['runs'])} seeds the interval (±{100 * half:.1f} points) rests on one degree of freedom and "
                "cannot be trusted to resolve a 1-point gain; set evaluate.seeds to 5 or more")
    if half > RESOLVE_POINTS:
        return (f"too few seeds to resolve a 1-point gain: the 95% interval is ±{100 * half:.1f} points and only gains "
                f"above {100 * gain['min_detectable_gain']:.1f} points would reliably show; raise evaluate.seeds")
    return f"the 95% interval is ±{100 * half:.1f} points; gains above {100 * gain['min_detectable_gain']:.1f} points would reliably show"


def crossed_gain(differences: np.ndarray, level: float = 0.95) -> dict:
    """The mean of a seeds x images matrix of paired differences, with an interval that counts both sources of
    noise a validation decision rests on: which seeds trained the models (a seed's models differ on every image)
    and which images the validation split holds (an image is easy or hard for every seed). The variance of the mean
    of a crossed design, sigma_seed^2 / S + sigma_image^2 / N + sigma_resid^2 / (S N), is estimated by
    var(seed means) / S + var(image means) / N, which counts the residual twice: conservative. Degrees of freedom by
    Welch-Satterthwaite. With one seed the seed variance cannot be estimated: no interval (ci95 None)."""
    seeds, images = differences.shape
    mean = float(differences.mean())
    if seeds < 2 or images < 2:
        return {"mean": mean, "ci": None, "min_detectable_gain": None, "se": None, "df": None,
                "seeds": seeds, "images": images}
    seed_part = float(differences.mean(axis=1).var(ddof=1)) / seeds
    image_part = float(differences.mean(axis=0).var(ddof=1)) / images
    variance = seed_part + image_part
    if variance == 0.0:  # every seed and image agree: the difference is what it is
        return {"mean": mean, "ci": [mean, mean], "min_detectable_gain": 0.0, "se": 0.0, "df": None,
                "seeds": seeds, "images": images}
    df = variance ** 2 / ((seed_part ** 2 / (seeds - 1) if seed_part else 0.0) + (image_part ** 2 / (images - 1) if image_part else 0.0))
    se = math.sqrt(variance)
    quantile = float(stats.t.ppf(0.5 + level / 2, df))
    return {"mean": mean, "ci": [mean - quantile * se, mean + quantile * se],
            "min_detectable_gain": (quantile + float(stats.t.ppf(POWER, df))) * se, "se": se, "df": df,
            "seeds": seeds, "images": images}
