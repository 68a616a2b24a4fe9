"""A small real colour-photo ImageFolder from the photos that pip packages ship (no download): random crops of
mixed sizes and aspect ratios, JPEG (some stored sideways with an EXIF orientation tag) and PNG, imbalanced classes.

    python benchmarks/sample_photos.py data/photos
Sources: scikit-learn's china.jpg and flower.jpg (CC BY 2.0, see sklearn/datasets/images/README.txt) and
matplotlib's grace_hopper.jpg (a US Navy photograph, public domain).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib
import numpy as np
import sklearn
from PIL import Image

SOURCES = {"china": Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
           "flower": Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
           "hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}
COUNTS = {"china": 40, "flower": 20, "hopper": 10}  # imbalanced on purpose


def write_photos(out: Path, seed: int = 0, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Write out/<class>/<i>.jpg|png crops (COUNTS per class unless `counts`); return the count per class."""
    counts = counts or COUNTS
    rng = np.random.default_rng(seed)
    for label, source in SOURCES.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        with Image.open(source) as photo:
            photo = photo.convert("RGB")
            for i in range(counts[label]):
                side = int(rng.integers(140, min(photo.size)))
                aspect = float(rng.uniform(0.6, 1.7))
                width, height = min(photo.width, int(side * aspect)), min(photo.height, side)
                left, top = int(rng.integers(0, photo.width - width + 1)), int(rng.integers(0, photo.height - height + 1))
                crop = photo.crop((left, top, left + width, top + height))
                if i % 2:
                    crop.save(out / label / f"{i:03d}.png")
                    continue
                exif = Image.Exif()
                if i % 4 == 0:  # stored sideways, displayed upright by its EXIF orientation
                    crop, exif[0x0112] = crop.transpose(Image.Transpose.ROTATE_90), 6
                buffer = io.BytesIO()
                crop.save(buffer, format="JPEG", quality=90, exif=exif)
                (out / label / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    print(write_photos(parser.parse_args().out))


if __name__ == "__main__":
    main()
