"""Sample selection for generation: draw more candidates than needed and keep the ones a classifier trained on
the real training images is surest belong to their class (removes off-class samples, which act as label noise)."""
from __future__ import annotations

import numpy as np
import torch

from pipeline import storage
from pipeline.config import EvaluateConfig
from pipeline.classifier import CONDITIONS, SmallCNN, train_classifier
from pipeline.gan.networks import to_uint8
from pipeline.progress import track

# The evaluation's classifier, trained on real+aug, with the augmentation the filters were measured with (the
# evaluation's default moved to elastic on every image later; the teacher did not follow, so generate is unchanged).
TEACHER = EvaluateConfig(steps=600, width=32, batch_size=64, augment="affine,elastic", augment_probability=0.5)


def train_teacher(ingest_dir, seed: int, device: torch.device) -> SmallCNN:
    """The real+aug classifier on the TRAINING split only (never validation or test)."""
    arrays = storage.load_arrays(ingest_dir)
    real_aug = next(c for c in CONDITIONS if c.name == "real+aug")
    classes = len(arrays["classes"])
    return train_classifier(TEACHER, real_aug, seed, (arrays["train_images"], arrays["train_labels"]), None, classes, device)


@torch.no_grad()
def select_seeds(generator, teacher: SmallCNN, candidates: dict[int, list[int]], keep: dict[int, int], noise_for,
                 z_dim: int, batch_size: int, device: torch.device) -> tuple[dict[int, list[int]], dict[int, list[float]]]:
    """For each class c, score every candidate seed by the teacher's probability of c; keep the keep[c] best.
    Only scores are held, never the candidate images (they are regenerated from their seeds when written)."""
    chosen, scores = {}, {}
    for c, seeds in candidates.items():
        if not seeds:  # a class balancing gives nothing (already at the target)
            chosen[c], scores[c] = [], []
            continue
        values = []
        for start in track(range(0, len(seeds), batch_size), (len(seeds) + batch_size - 1) // batch_size, f"generate: scoring class {c}"):
            batch = seeds[start:start + batch_size]
            labels = torch.full((len(batch),), c, device=device)
            pixels = torch.from_numpy(to_uint8(generator(noise_for(batch, z_dim).to(device), labels))).permute(0, 3, 1, 2)
            probabilities = torch.softmax(teacher(pixels.float().to(device) / 127.5 - 1.0).float(), dim=1)
            values.append(probabilities[:, c].cpu().numpy())
        values = np.concatenate(values)
        best = np.argsort(-values, kind="stable")[:keep[c]]
        chosen[c], scores[c] = [seeds[i] for i in best], values[best].round(4).tolist()
    return chosen, scores
