"""The embedded demo dataset: scikit-learn's 1,797 real 8x8 handwritten digits written out as an ImageFolder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import storage


def export_digits(out_dir: str | Path, per_class: int | None = None) -> Path:
    """Write load_digits() as out_dir/<digit>/<index>.png (8x8 gray, 0..16 scaled to 0..255); return out_dir."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out_dir)
    counts: dict[int, int] = {}
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        label = int(label)
        if per_class is not None and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        pixels = np.clip(image * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
        path = out / str(label) / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with storage.atomic_path(path, durable=False) as tmp:
            Image.fromarray(pixels, mode="L").save(tmp, format="PNG")
    storage.sync_to_disk()
    return out
