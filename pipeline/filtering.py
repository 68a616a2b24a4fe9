"""Sample selection for generation: draw more candidates than needed and keep the ones a classifier trained on
the real training images is surest belong to their class (removes off-class samples, which act as label noise)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from pipeline import storage
from pipeline.config import EvaluateConfig
from pipeline.classifier import REAL_AUG, SmallCNN, train_classifier
from pipeline.generators import to_uint8
from pipeline.device import prepare_module
from pipeline.progress import logger, track

# The evaluation's classifier trained on real+aug, with its own augmentation (affine and elastic, half the images):
# the filter is defined by this teacher, not by evaluate.augment, so changing the evaluation never changes which
# images generate keeps (docs/results.md has the measurements behind it).
TEACHER = EvaluateConfig(steps=600, width=32, batch_size=64, augment="affine,elastic", augment_probability=0.5)


CACHE = "teacher.safetensors"  # synthetic/teacher.safetensors: the teacher of the last generate run, reused by the next


def train_teacher(ingest_dir, seed: int, device: torch.device, cache: Path | None = None) -> SmallCNN:
    """The real+aug classifier on the TRAINING split only (never validation or test). With `cache`, a teacher saved
    there for the same training images, seed and settings is loaded instead of trained again (`augment generate
    --run` asking for more images reuses it), and a newly trained one is saved there."""
    arrays = storage.load_arrays(ingest_dir)
    images, labels, classes = arrays["train_images"], arrays["train_labels"], len(arrays["classes"])
    key = hashlib.sha256(images.tobytes() + labels.tobytes() + f"{seed}:{TEACHER}".encode()).hexdigest()
    if cache is not None and storage.is_plain_file(cache) and storage.read_metadata(cache).get("key") == key:
        teacher = SmallCNN(images.shape[1], classes, images.shape[-1], TEACHER.width)
        storage.load_weights(teacher, storage.load_tensors(cache), cache)
        logger.info("generate: reusing the teacher classifier in %s", cache)
        return prepare_module(teacher, device).eval()
    teacher = train_classifier(TEACHER, REAL_AUG, seed, (images, labels), None, classes, device,
                               progress="generate: training the teacher classifier")
    if cache is not None:
        storage.save_tensors(cache, teacher.state_dict(), {"key": key})
    return teacher


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
