"""Fidelity and diversity of synthetic images in a feature space: Fréchet distance, precision/recall
(Kynkäänniemi et al. 2019), density/coverage (Naeem et al. 2020), and nearest-real-neighbour distances."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

NEAREST_K = 5        # neighbourhood size for the manifold estimates (both papers use 3-5)
MAX_SAMPLES = 5000   # callers subsample to this many per set: the distance matrix is F x R


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians fitted to two feature sets."""
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular with few samples per class: expected
        root = linalg.sqrtm(cov_r @ cov_f)
        if not np.isfinite(root).all():  # regularise slightly and retry
            eps = np.eye(len(mu_r)) * 1e-6
            root = linalg.sqrtm((cov_r + eps) @ (cov_f + eps))
    return float(np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r + cov_f - 2.0 * np.real(root)))


def _radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point to its k-th nearest neighbour within the same set (itself excluded)."""
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return distances[:, -1]


def manifold_scores(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K, seed: int = 0) -> dict[str, float]:
    """Precision, recall, density and coverage of fake against real features. The larger set is subsampled to the
    smaller one's size first: k-NN radii shrink with sample size, and unequal sets would bias recall to zero."""
    rng = np.random.default_rng(seed)
    size = min(len(real), len(fake))
    real, fake = (x[np.sort(rng.permutation(len(x))[:size])] for x in (real, fake))
    k = max(1, min(k, size - 1))
    real_radii, fake_radii = _radii(real, k), _radii(fake, k)
    fake_to_real = cdist(fake, real)                                                         # F x R
    inside_real = fake_to_real < real_radii[None, :]                                         # fake j in real ball i
    inside_fake = fake_to_real < fake_radii[:, None]                                         # real i in fake ball j
    return {
        "precision": float(inside_real.any(axis=1).mean()),
        "recall": float(inside_fake.any(axis=0).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((fake_to_real.min(axis=0) < real_radii).mean()),
    }


def nearest_real(real_features: np.ndarray, fake_features: np.ndarray) -> dict:
    """Feature-space distance from EVERY synthetic image to its nearest real training image, against the same distance
    between real images; synthetic images closer to a real image than the closest two real images are to each other
    are flagged as likely copies. Returns the distances and the index of each one's nearest real image too."""
    fake_distances, nearest = NearestNeighbors(n_neighbors=1).fit(real_features).kneighbors(fake_features)
    real_distances = _radii(real_features, 1)
    threshold = float(np.min(real_distances))
    quantiles = lambda d: {f"q{q:02d}": float(np.percentile(d, q)) for q in (1, 5, 25, 50, 75, 95)}
    return {
        "space": "classifier features", "checked": int(len(fake_features)),
        "synthetic_to_real": quantiles(fake_distances[:, 0]), "real_to_real": quantiles(real_distances),
        "copy_threshold": threshold, "suspected_copies": int((fake_distances[:, 0] < threshold).sum()),
        "distances": fake_distances[:, 0], "nearest": nearest[:, 0],
    }


def fidelity_report(real_features: np.ndarray, real_labels: np.ndarray, fake_features: np.ndarray,
                    fake_labels: np.ndarray, classes: list[str]) -> dict:
    """Overall and per-class Fréchet distance plus precision/recall/density/coverage."""
    result = {"frechet_distance": frechet_distance(real_features, fake_features), **manifold_scores(real_features, fake_features)}
    result["per_class"] = {}
    for index, name in enumerate(classes):
        real_c, fake_c = real_features[real_labels == index], fake_features[fake_labels == index]
        if len(real_c) >= 3 and len(fake_c) >= 3:
            result["per_class"][name] = {"frechet_distance": frechet_distance(real_c, fake_c), **manifold_scores(real_c, fake_c)}
    return result
