"""Ingest on real digit images: counts, split, manifest, quarantine, layouts, and errors a user can cause."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from conftest import copy_tree, tiny_config
from pipeline.stages import run_stage
from pipeline import ingest, storage
from pipeline.errors import AugmentError


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ingest_digits_split_manifest_and_untouched_input(digits_dir, tmp_path):
    before = _hashes(digits_dir)
    stats = ingest.run(tiny_config(digits_dir).ingest, tmp_path / "ingest")
    assert _hashes(digits_dir) == before, "ingest must never modify the input dataset"
    assert stats["classes"] == [str(d) for d in range(10)]
    assert stats["channels"] == 1, "all-gray inputs must give one channel"
    assert stats["n_train"] + stats["n_val"] + stats["n_test"] == 200 and stats["n_test"] == 40  # 20% of 20 per class
    # validation: 20% of each class's 16 remaining images (rounded), held out from the GAN and the classifiers
    assert all(v == {"train": 13, "val": 3, "test": 4} for v in stats["per_class"].values())
    arrays = storage.load_arrays(tmp_path / "ingest")
    assert arrays["train_images"].shape == (130, 1, 16, 16) and arrays["train_images"].dtype == np.uint8
    assert arrays["val_images"].shape == (30, 1, 16, 16) and arrays["test_images"].shape == (40, 1, 16, 16)
    assert arrays["train_images"].max() > 200, "digit strokes must survive the resize"
    rows = list(csv.DictReader(open(tmp_path / "ingest" / "manifest.csv")))
    assert len(rows) == 200 and {r["split"] for r in rows} == {"train", "val", "test"}
    files = {part: {r["file"] for r in rows if r["split"] == part} for part in ("train", "val", "test")}
    assert not files["train"] & files["test"] and not files["train"] & files["val"] and not files["val"] & files["test"]
    assert json.loads((tmp_path / "ingest" / "stats.json").read_text()) == stats


def test_split_is_seeded(digits_dir, tmp_path):
    config = tiny_config(digits_dir).ingest
    ingest.run(config, tmp_path / "a")
    ingest.run(config, tmp_path / "b")
    config.split_seed = 1
    ingest.run(config, tmp_path / "c")
    a, b, c = (storage.load_arrays(tmp_path / name)["test_images"] for name in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_files_are_quarantined_and_never_deleted(digits_dir, tmp_path):
    data = copy_tree(digits_dir, tmp_path / "data")
    (data / "3" / "notes.png").write_text("this is not an image")
    (data / "3" / "empty.jpg").write_bytes(b"")
    good = (data / "4" / sorted(p.name for p in (data / "4").iterdir())[0]).read_bytes()
    (data / "4" / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "4" / "readme.txt").write_text("ignored: not an image suffix")
    (data / ".DS_Store").write_bytes(b"\0\1")
    stats = ingest.run(tiny_config(data).ingest, tmp_path / "ingest")
    assert stats["n_quarantined"] == 3
    rows = {r["file"]: r["reason"] for r in csv.DictReader(open(tmp_path / "ingest" / "quarantine.csv"))}
    assert set(rows) == {"3/notes.png", "3/empty.jpg", "4/truncated.png"}
    assert rows["4/truncated.png"].startswith("cannot decode")
    assert rows["3/notes.png"].startswith("not a PNG, JPEG") and rows["3/empty.jpg"].startswith("not a PNG, JPEG")
    assert (data / "3" / "notes.png").exists() and (data / "4" / "truncated.png").exists()
    assert stats["n_train"] + stats["n_val"] + stats["n_test"] == 200


def test_train_and_test_folders_are_used_as_given(digits_dir, tmp_path):
    data = tmp_path / "data"
    for label in ("0", "1", "2"):
        files = sorted((digits_dir / label).iterdir())
        for split, chosen in (("train", files[:15]), ("test", files[15:])):
            (data / split / label).mkdir(parents=True)
            for f in chosen:
                (data / split / label / f.name).write_bytes(f.read_bytes())
    stats = ingest.run(tiny_config(data).ingest, tmp_path / "ingest")
    assert stats["split"] == "folders" and stats["classes"] == ["0", "1", "2"]
    assert stats["n_train"] + stats["n_val"] == 45 and stats["n_test"] == 15


def test_color_images_of_mixed_sizes_keep_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    for label, hue in (("red", 0), ("green", 1), ("blue", 2)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(4):
            size = (20 + 7 * i, 31 - 3 * i)
            pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., hue] = 220
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.{'jpg' if i % 2 else 'png'}")
    stats = ingest.run(tiny_config(tmp_path / "data").ingest, tmp_path / "ingest")
    arrays = storage.load_arrays(tmp_path / "ingest")
    assert stats["channels"] == 3 and arrays["train_images"].shape[1:] == (3, 16, 16)
    red = arrays["train_images"][arrays["train_labels"] == stats["classes"].index("red")]
    assert red[:, 0].mean() > 150 and red[:, 1].mean() < 100


def test_rgba_and_sixteen_bit_images_decode(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited onto white
    sixteen = np.full((10, 10), 65535, dtype=np.uint16)
    path_rgba, path_16 = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rgba, mode="RGBA").save(path_rgba)
    Image.fromarray(sixteen).save(path_16)
    assert ingest.decode(path_rgba, 16, "center_crop").min() == 255
    assert ingest.decode(path_16, 16, "pad").min() == 255


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder"),
    ("empty", "has no class sub-folders"),
    ("empty_class", "has no image files"),
    ("unreadable_class", "class 'b' has no readable image"),
    ("single_class", "needs at least 2 class folders"),
    ("one_image", "needs at least 2 per class"),
])
def test_user_errors_are_one_clear_message(case, message, digits_dir, tmp_path):
    data = tmp_path / "data"
    if case == "file":
        data.write_text("x")
    elif case != "missing":
        data.mkdir()
    one = sorted((digits_dir / "1").iterdir())
    if case in ("empty_class", "unreadable_class", "single_class", "one_image"):
        (data / "a").mkdir()
        for f in one[:3]:
            (data / "a" / f.name).write_bytes(f.read_bytes())
    if case == "empty_class":
        (data / "b").mkdir()
    if case == "unreadable_class":
        (data / "b").mkdir()
        (data / "b" / "x.png").write_text("not a png")
    if case == "one_image":
        (data / "b").mkdir()
        (data / "b" / one[5].name).write_bytes(one[5].read_bytes())
    with pytest.raises(AugmentError, match=message) as error:
        ingest.run(tiny_config(data).ingest, tmp_path / "out")
    assert "\n" not in str(error.value)


def test_output_inside_dataset_is_refused(digits_dir, tmp_path):
    data = copy_tree(digits_dir, tmp_path / "data")
    with pytest.raises(AugmentError, match="inside the dataset"):
        run_stage("ingest", tiny_config(data), data / "out")
    assert not (data / "out").exists()


def test_the_ingest_stage_loads_no_other_stage(digits_dir, tmp_path):
    """dvc.yaml runs each stage in its own process: ingest's must not pay for scikit-learn, matplotlib or the other
    stages' modules (the stage table imports a stage's module when it runs it)."""
    import subprocess
    import sys

    from conftest import ROOT

    script = ("import json, sys; from pipeline.stages import run_stage; from pipeline import config; "
              "run_stage('ingest', config.load(None, [f'ingest.dataset={sys.argv[1]}']), sys.argv[2]); "
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'matplotlib', 'pipeline'))))")
    result = subprocess.run([sys.executable, "-c", script, str(digits_dir), str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "pipeline.ingest" in loaded and (tmp_path / "out" / "ingest").is_dir()
    others = {"pipeline.generate", "pipeline.sources", "pipeline.evaluate.stage", "pipeline.gan.train", "sklearn", "matplotlib"}
    assert not loaded & others, loaded & others
