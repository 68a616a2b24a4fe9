"""Write an imbalanced train/test split of an ImageFolder: class i keeps PROFILES[profile][i % len] training images,
100 test images each.

    python benchmarks/imbalanced_split.py ../shared/data/mnist10k data/mnist_imbalanced [--profile steps]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
from pathlib import Path

COUNTS = (5, 10, 20, 40, 80)  # training images per class, cycling over the sorted class names (two classes each on MNIST)
PROFILES = {
    "steps": COUNTS,                                                           # 16:1, two classes at each count
    "longtail": tuple(int(round(300 * 0.01 ** (i / 9))) for i in range(10)),   # 300 down to 3: 100:1, geometric
    "two_rare": (100, 100, 5, 100, 100, 100, 100, 5, 100, 100),                # two 5-image classes among eight of 100
}


def class_names(source: Path) -> list[str]:
    return sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))


def shuffled_files(source: Path, name: str, seed: int = 0) -> list[Path]:
    """One class's files in the split's seeded order: training picks first, then test, then the unused rest."""
    files = sorted(p for p in (source / name).iterdir() if p.is_file())
    random.Random(f"{seed}:{name}").shuffle(files)
    return files


def link_files(files: list[Path], folder: Path) -> None:
    """Hard-link files into folder (copied across devices)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = folder / file.name
        if not target.exists():
            try:
                os.link(file, target)
            except OSError:
                shutil.copy2(file, target)


def write_split(source: Path, out: Path, test_per_class: int = 100, seed: int = 0, counts_per_class: tuple[int, ...] = COUNTS) -> dict[str, int]:
    """Seeded, disjoint train/test picks per class; files are hard-linked (copied across devices). Returns train counts."""
    counts = {}
    for index, name in enumerate(class_names(source)):
        files = shuffled_files(source, name, seed)
        counts[name] = counts_per_class[index % len(counts_per_class)]
        if len(files) < counts[name] + test_per_class:
            raise SystemExit(f"class {name!r} has {len(files)} files, needs {counts[name] + test_per_class}")
        link_files(files[:counts[name]], out / "train" / name)
        link_files(files[counts[name]:counts[name] + test_per_class], out / "test" / name)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="steps")
    args = parser.parse_args()
    print(write_split(args.source, args.out, args.test_per_class, args.seed, PROFILES[args.profile]))


if __name__ == "__main__":
    main()
