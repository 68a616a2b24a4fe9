"""The conditions an evaluation compares, as data: each one's name, how its classifiers train (a classifier Recipe),
when it is evaluated, what its paired gain is reported against, its short name in headline.json and the advice the
report gives when it is recommended. Adding a condition is adding an entry to CONDITIONS (and a line in the docs);
the stage, the recommendation, the report, the headline and export all read it from here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from pipeline.classifier import Recipe
from pipeline.config import EvaluateConfig, parse_shares


@dataclass(frozen=True)
class Condition:
    name: str
    recipe: Recipe
    advice: str                   # what to do when it is recommended; {share} is the synthetic share in percent
    headline: str | None = None   # its key in headline.json (None: not listed there)
    against: dict[str, str] = field(default_factory=dict)  # baseline -> headline name of the paired gain against it
    when: str = "always"          # always | imbalanced (evaluate.rebalance decides) | long_tail_loss (imbalanced,
                                  # and evaluate.long_tail_loss names the loss)
    shares: bool = False          # also evaluated at every evaluate.candidate_shares (named NAME@SHARE)
    source: str = "synthetic"     # which synthetic set a synthetic condition draws: the tool's own, or an outside one
    base: str = ""                # the CONDITIONS entry it was made from (itself when empty)

    @property
    def synthetic(self) -> bool:
        return self.recipe.synthetic

    @property
    def real(self) -> bool:
        return self.recipe.real

    @property
    def augment(self) -> bool:
        return self.recipe.augment

    @property
    def balanced(self) -> bool:
        return self.recipe.balanced

    def at_share(self, share: float) -> Condition:
        """This condition with another synthetic share, named e.g. real+aug+synthetic@0.25."""
        headline = f"{self.headline}@{share:g}" if self.headline else None
        return dataclasses.replace(self, name=f"{self.name}@{share:g}", recipe=dataclasses.replace(self.recipe, share=share),
                                   headline=headline, against={}, shares=False, base=self.base or self.name)

    def for_source(self, source: str) -> Condition:
        """This synthetic condition drawing an outside source's images instead of the tool's own: 'synthetic' in its
        name becomes the source's name (real+aug+diffusion), or the name gets it as a suffix (real+aug+topup-diffusion).
        Its gains are reported against the same baselines; outside sources stay out of headline.json."""
        if not self.synthetic or source == self.source:
            return self
        name = self.name.replace("synthetic", source) if "synthetic" in self.name else f"{self.name}-{source}"
        return dataclasses.replace(self, name=name, source=source, headline=None,
                                   against={baseline: None for baseline in self.against}, base=self.base or self.name)


SYNTHETIC_ADVICE = ("train on the real images with classical augmentation and the synthetic images as {share}% of every "
                    "batch ({name})")

CONDITIONS = (
    Condition("real", Recipe(), "train on the real images as they are", headline="acc.real"),
    Condition("real+aug", Recipe(augment=True), "train on the real images with classical augmentation", headline="acc.aug"),
    Condition("real+synthetic", Recipe(synthetic=True), "train on the real images and the synthetic images as {share}% "
              "of every batch, without classical augmentation (real+synthetic)", against={"real": "syn-real"}),
    Condition("real+aug+synthetic", Recipe(synthetic=True, augment=True), SYNTHETIC_ADVICE, headline="acc.syn",
              against={"real+aug": "syn-aug", "real+aug+resampled": "syn-res"}, shares=True),
    # Classification Accuracy Score: synthetic only, tested on real images; never recommended (no real image).
    Condition("synthetic", Recipe(real=False, synthetic=True), "", headline="cas"),
    # On imbalanced data the baseline a practitioner would use first is a class-balanced sampler of the real images;
    # the balanced top-up is the synthetic candidate that competes with it on equal terms (class-balanced too).
    Condition("real+aug+resampled", Recipe(augment=True, balanced=True), "train on the real images with classical "
              "augmentation, drawn class-balanced (a class-balanced sampler)", headline="acc.res", when="imbalanced"),
    Condition("real+aug+topup", Recipe(synthetic=True, augment=True, balanced=True, topup=True),
              "train on the real images topped up with synthetic ones to the largest class's count, with classical "
              "augmentation, drawn class-balanced (real+aug+topup)", headline="acc.topup",
              against={"real+aug+resampled": "topup-res"}, when="imbalanced"),
    # Balanced Softmax (Ren et al. 2020): plain batches, the loss on logits + log(class prior); the long-tail loss
    # that lifts the rarest classes most. The synthetic mix is trained under the same loss, on equal terms with it.
    Condition("real+aug+bsm", Recipe(augment=True, loss="balanced_softmax"), "train on the real images with classical "
              "augmentation and the Balanced Softmax loss: cross-entropy on the logits plus the log of each class's "
              "share of the training images (real+aug+bsm)", headline="acc.bsm",
              against={"real+aug+resampled": "bsm-res"}, when="long_tail_loss"),
    Condition("real+aug+synthetic+bsm", Recipe(synthetic=True, augment=True, loss="balanced_softmax"),
              "train on the real images with classical augmentation and the synthetic images as {share}% of every "
              "batch, with the Balanced Softmax loss (real+aug+synthetic+bsm)",
              against={"real+aug+bsm": "synbsm-bsm"}, when="long_tail_loss"),
)
BY_NAME = {c.name: c for c in CONDITIONS}
FEATURES = "real+aug"  # seed 0's model of this condition defines the fidelity feature space


def imbalance_ratio(labels: np.ndarray, num_classes: int) -> float:
    """Largest class's image count over the smallest's (inf when a class has none)."""
    counts = np.bincount(labels, minlength=num_classes)
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def rebalancing(config: EvaluateConfig, real_labels: np.ndarray, num_classes: int) -> bool:
    """Whether the `imbalanced` conditions are evaluated (evaluate.rebalance, auto: by the real counts)."""
    if config.rebalance != "auto":
        return config.rebalance == "on"
    return imbalance_ratio(real_labels, num_classes) >= config.imbalance_ratio


def conditions_for(config: EvaluateConfig, real_labels: np.ndarray | None = None, num_classes: int = 0,
                   sources: tuple[str, ...] = ("synthetic",)) -> tuple[Condition, ...]:
    """The conditions of this evaluation, in CONDITIONS' order with each condition's extra shares after the fixed
    ones: always the `always` ones, the `imbalanced` ones on imbalanced data (see rebalancing), the `long_tail_loss`
    ones there too when evaluate.long_tail_loss names one; every synthetic one
    once per synthetic source ('synthetic' is the tool's own generator), all paired by seed."""
    imbalanced = real_labels is not None and rebalancing(config, real_labels, num_classes)
    loss = config.long_tail_loss != "off"
    chosen = [c for c in CONDITIONS if c.when == "always" or (imbalanced and (c.when == "imbalanced" or loss))]
    extra = [c.at_share(share) for c in chosen if c.shares for share in parse_shares(config.candidate_shares)
             if share != config.synthetic_share]
    fixed = [c for c in chosen if c.when == "always"]
    ordered = fixed + extra + [c for c in chosen if c.when != "always"]
    return tuple(c.for_source(source) if c.synthetic else c for c in ordered
                 for source in (sources if c.synthetic else (None,)))


def gains(conditions: tuple[Condition, ...]) -> dict[str, tuple[str, str]]:
    """'treated_vs_baseline' -> (treated, baseline): every paired gain whose two conditions are both evaluated, the
    synthetic baselines of an outside source's conditions renamed with it (real+aug+diffusion+bsm vs real+aug+bsm)."""
    names = {c.name for c in conditions}
    return {f"{c.name}_vs_{baseline}": (c.name, baseline) for c in conditions for baseline in c.against if baseline in names}


def gain_headline(name: str) -> str | None:
    """headline.json's short name of a gain ('real+aug+synthetic_vs_real+aug' -> 'syn-aug'); None: not listed there."""
    treated, _, baseline = name.partition("_vs_")
    return BY_NAME[treated].against.get(baseline) if treated in BY_NAME else None


def condition_headline(name: str) -> str | None:
    """headline.json's key of a condition's accuracy ('real+aug+synthetic@0.25' -> 'acc.syn@0.25'); None: not listed."""
    base, at, share = name.partition("@")
    condition = BY_NAME.get(base)
    return condition.headline + at + share if condition is not None and condition.headline else None


def uses_synthetic(name: str) -> bool:
    """Whether the condition `name` (NAME or NAME@SHARE) trains on synthetic images."""
    condition = BY_NAME.get(name.partition("@")[0])
    return condition is not None and condition.synthetic


def advice(name: str, share: float, base: str | None = None, source: str = "synthetic") -> str:
    """What the report tells a user to do when `name` (made from CONDITIONS entry `base`) is recommended."""
    condition = BY_NAME.get(base or name.partition("@")[0])
    text = condition.advice if condition is not None and condition.advice else SYNTHETIC_ADVICE
    text = text.format(share=f"{100 * share:.0f}", name=name)
    return text if source == "synthetic" else text.replace("synthetic images", f"images of the source '{source}'")
