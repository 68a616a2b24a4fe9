"""Paired differences between conditions with a 95% t-interval, and a summary of repeated runs."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def summarize(values: list[float]) -> dict:
    """Mean, sample std (ddof=1; 0 for one run) and every run's value."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "runs": [float(v) for v in array]}


def paired_gain(treated: list[float], baseline: list[float], level: float = 0.95) -> dict:
    """Mean of per-seed differences treated - baseline and its t-interval (None with fewer than 2 seeds)."""
    diffs = np.asarray(treated, dtype=float) - np.asarray(baseline, dtype=float)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return {"mean": mean, "ci95": None, "runs": diffs.tolist()}
    half = float(stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "runs": diffs.tolist()}


def verdict(gain: dict) -> str:
    """'significant gain', 'significant loss', 'no significant difference' or 'too few seeds to tell'."""
    if gain["ci95"] is None:
        return "too few seeds to tell"
    low, high = gain["ci95"]
    if low > 0:
        return "significant gain"
    if high < 0:
        return "significant loss"
    return "no significant difference"
