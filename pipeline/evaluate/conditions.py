"""Which conditions an evaluation trains: the fixed ones, real+aug+synthetic at every candidate share, and on
imbalanced data (evaluate.rebalance) class-balanced re-sampling and the balanced top-up."""
from __future__ import annotations

import numpy as np

from pipeline.classifier import CONDITIONS, REBALANCED, Condition
from pipeline.config import EvaluateConfig, parse_shares


def imbalance_ratio(labels: np.ndarray, num_classes: int) -> float:
    """Largest class's image count over the smallest's (inf when a class has none)."""
    counts = np.bincount(labels, minlength=num_classes)
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def rebalancing(config: EvaluateConfig, real_labels: np.ndarray, num_classes: int) -> bool:
    """Whether the re-sampling and top-up conditions are evaluated (evaluate.rebalance, auto: by the real counts)."""
    if config.rebalance != "auto":
        return config.rebalance == "on"
    return imbalance_ratio(real_labels, num_classes) >= config.imbalance_ratio


def conditions_for(config: EvaluateConfig, real_labels: np.ndarray | None = None, num_classes: int = 0) -> tuple[Condition, ...]:
    """The fixed conditions, real+aug+synthetic at every extra candidate share (named e.g.
    'real+aug+synthetic@0.25'), and on imbalanced data (see rebalancing) the re-sampling and top-up conditions."""
    extra = tuple(Condition(f"real+aug+synthetic@{share:g}", True, True, True, share) for share in parse_shares(config.candidate_shares)
                  if share != config.synthetic_share)
    rebalanced = REBALANCED if real_labels is not None and rebalancing(config, real_labels, num_classes) else ()
    return CONDITIONS + extra + rebalanced
