"""A corpus of messy inputs, each built on the fly, each with its expected outcome: a one-line error naming the
file or option, a quarantine entry with the reason while the run goes on, or a correct decode."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from pipeline.stages import run_stage
from pipeline import ingest, storage
from pipeline.errors import AugmentError
from pipeline.evaluate.stage import load_synthetic
from pipeline.generate import check_disk_space, estimated_bytes


def png(path, size=(12, 12), mode="L", value=200):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def base(root, classes=("a", "b"), per_class=4):
    """A small valid dataset; each image differs so no two are duplicates."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            image = np.zeros((12, 12), np.uint8)
            image[2:10, 2:10] = 100 + 20 * c + 5 * i
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    return root


def jpeg_bytes(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def quarantined(out):
    return {r["file"]: r["reason"] for r in csv.DictReader(open(out / "quarantine.csv"))}


def ingest_ok(root, out, *overrides):
    stats = ingest.run(tiny_config(root, *overrides).ingest, out)
    return stats, storage.load_arrays(out)


# --- bad files inside a good dataset: quarantined with a reason, the run goes on --------------------------------
def _truncated_png(root):
    data = png(root / "a" / "t.png", (40, 40)).read_bytes()
    (root / "a" / "t.png").write_bytes(data[: len(data) // 2])


def _truncated_jpeg(root):
    data = jpeg_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))
    (root / "a" / "t.jpg").write_bytes(data[: len(data) // 2])


def _zero_bytes(root):
    (root / "a" / "t.png").write_bytes(b"")


def _text_as_png(root):
    (root / "a" / "t.png").write_text("hello, I am not a picture")


def _bomb(root):
    # 10,000 x 10,000 pixels is over Pillow's MAX_IMAGE_PIXELS: refused before any pixel is decoded.
    Image.new("1", (10_000, 10_000)).save(root / "a" / "t.png", optimize=False)


@pytest.mark.parametrize("make, reason", [
    (_truncated_png, "cannot decode"), (_truncated_jpeg, "cannot decode"), (_zero_bytes, "not a PNG, JPEG"),
    (_text_as_png, "not a PNG, JPEG"), (_bomb, "refused: too many pixels"),
], ids=["truncated-png", "truncated-jpeg", "zero-byte", "text-named-png", "decompression-bomb"])
def test_bad_file_is_quarantined_and_left_in_place(make, reason, tmp_path):
    root = base(tmp_path / "data")
    make(root)
    before = hashlib.sha256((root / "a" / next(p.name for p in (root / "a").iterdir() if p.stem == "t")).read_bytes()).hexdigest()
    stats, arrays = ingest_ok(root, tmp_path / "out")
    [(name, why)] = quarantined(tmp_path / "out").items()
    assert name.startswith("a/t.") and why.startswith(reason)
    assert stats["n_train"] + stats["n_val"] + stats["n_test"] == 8
    assert hashlib.sha256((root / name).read_bytes()).hexdigest() == before, "quarantine never modifies the file"


@pytest.mark.parametrize("name", ["notes.txt", ".DS_Store", "Thumbs.db", ".hidden.png"])
def test_non_image_and_hidden_files_are_ignored(name, tmp_path):
    root = base(tmp_path / "data")
    (root / "a" / name).write_bytes(b"\x00\x01junk")
    stats, _ = ingest_ok(root, tmp_path / "out")
    assert stats["n_quarantined"] == 0 and stats["n_train"] + stats["n_val"] + stats["n_test"] == 8


# --- unusual but valid images: decoded correctly ------------------------------------------------------------
def _decode(path, size=16, policy="pad"):
    return ingest.decode(path, size, policy)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
    assert abs(int(_decode(path)[4, 4, 0]) - 128) <= 1


def test_palette_png_with_transparency_and_rgba_composite_on_white(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    rgba.save(tmp_path / "rgba.png")
    assert _decode(tmp_path / "p.png", policy="center_crop").min() == 255
    assert tuple(_decode(tmp_path / "rgba.png", policy="center_crop")[3, 3]) == (0, 0, 255)


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    path = tmp_path / "c.jpg"
    path.write_bytes(jpeg_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0))))  # pure red in CMYK
    red, green, blue = _decode(path, policy="center_crop")[4, 4]
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_respected(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white, stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6      # "rotate 90 degrees clockwise to display": shown portrait, white half on top
    path = tmp_path / "r.jpg"
    path.write_bytes(jpeg_bytes(Image.fromarray(pixels), exif=exif, quality=95))
    shown = _decode(path, size=20, policy="pad")
    assert shown[3, 10].mean() > 200 and shown[16, 10].mean() < 50


@pytest.mark.parametrize("size", [(1, 1), (500, 300), (7, 131)], ids=["1x1", "500x300", "7x131"])
def test_any_size_becomes_the_configured_square(size, tmp_path):
    path = png(tmp_path / "s.png", size, "RGB", (10, 200, 30))
    assert _decode(path, 16, "center_crop").shape == (16, 16, 3)


def test_gray_and_color_mixed_gives_three_channels(tmp_path):
    root = base(tmp_path / "data")
    png(root / "b" / "color.png", (12, 12), "RGB", (250, 10, 10))
    stats, arrays = ingest_ok(root, tmp_path / "out")
    assert stats["channels"] == 3 and arrays["train_images"].shape[1] == 3


# --- dataset layout ------------------------------------------------------------------------------------------
def test_class_names_with_spaces_unicode_and_nested_folders(tmp_path):
    root = base(tmp_path / "data", classes=("class one", "ünïcødé ✓"))
    png(root / "class one" / "deeper" / "nested" / "n.png", value=90)
    (root / ".cache").mkdir()
    png(root / ".cache" / "x.png")  # a hidden folder is not a class
    stats, _ = ingest_ok(root, tmp_path / "out")
    assert stats["classes"] == ["class one", "ünïcødé ✓"]
    assert sum(stats["per_class"]["class one"].values()) == 5


def test_symlinks_to_files_are_read_and_a_folder_loop_does_not_hang(tmp_path):
    root = base(tmp_path / "data")
    os.symlink(png(tmp_path / "elsewhere" / "x.png", value=33), root / "b" / "link.png")
    os.symlink(root / "b", root / "b" / "loop")
    stats, _ = ingest_ok(root, tmp_path / "out")
    assert sum(stats["per_class"]["b"].values()) == 5


def test_one_image_in_a_class_works_with_given_folders(tmp_path):
    root = tmp_path / "data"
    base(root / "train")
    png(root / "train" / "c" / "only.png", value=77)
    base(root / "test", per_class=1)
    stats, _ = ingest_ok(root, tmp_path / "out")
    assert stats["per_class"]["c"] == {"train": 1, "val": 0, "test": 0}, "a lone image trains; none is spared for validation"


def test_the_same_image_in_train_and_test_is_dropped_from_train(tmp_path):
    root = tmp_path / "data"
    base(root / "train")
    base(root / "test", per_class=2)  # test a/0, a/1, b/0, b/1 are byte-identical to train images
    stats, _ = ingest_ok(root, tmp_path / "out")
    reasons = quarantined(tmp_path / "out")
    assert len(reasons) == 4 and all("duplicate of test image" in r for r in reasons.values())
    assert stats["n_train"] + stats["n_val"] == 4 and stats["n_test"] == 4


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"), ("file", "is a file, not a folder"), ("empty", "has no class sub-folders"),
    ("empty_class", "has no image files"), ("single_class", "needs at least 2 class folders"),
    ("one_image_auto_split", "needs at least 2 per class"), ("test_class_unknown", "have no training folder"),
    ("all_train_leaked", "no training image left"),
])
def test_layout_errors_are_one_line(case, message, tmp_path):
    root = tmp_path / "data"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
    elif case == "empty_class":
        base(root)
        (root / "c").mkdir()
    elif case == "single_class":
        base(root, classes=("a",))
    elif case == "one_image_auto_split":
        base(root)
        png(root / "c" / "only.png")
    elif case == "test_class_unknown":
        base(root / "train")
        base(root / "test", classes=("a", "zzz"))
    elif case == "all_train_leaked":
        base(root / "train", per_class=2)
        base(root / "test", per_class=2)
    with pytest.raises(AugmentError, match=message) as error:
        ingest.run(tiny_config(root).ingest, tmp_path / "out")
    assert "\n" not in str(error.value)


def test_output_inside_the_dataset_is_refused_before_writing(tmp_path):
    root = base(tmp_path / "data")
    with pytest.raises(AugmentError, match="inside the dataset"):
        run_stage("ingest", tiny_config(root), root / "a" / "out")
    assert not (root / "a" / "out").exists()


# --- options, disk, checkpoints, manifests -------------------------------------------------------------------
def test_absurd_per_class_is_refused_by_a_disk_space_check(tmp_path):
    with pytest.raises(AugmentError, match="GB are free"):
        check_disk_space(tmp_path / "not-yet" / "synthetic", estimated_bytes(10_000_000, 1000, 128, 3))
    check_disk_space(tmp_path, estimated_bytes(10, 10, 28, 1))  # a small set fits


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('AUGMENT_PAYLOAD_MARK', '/tmp/augment-payload-ran')}",))


def test_a_malicious_pickle_checkpoint_is_refused_and_never_executed(tmp_path, monkeypatch):
    mark = tmp_path / "payload-ran"
    monkeypatch.setenv("AUGMENT_PAYLOAD_MARK", str(mark))
    for name in ("checkpoint.safetensors", "generator_ema.safetensors"):
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
        with pytest.raises(AugmentError, match="not a valid safetensors file"):
            storage.load_tensors(tmp_path / name)
    assert not mark.exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(AugmentError, match="not a valid safetensors file"):
        storage.load_tensors(path)
    with pytest.raises(AugmentError, match="does not exist"):
        storage.load_tensors(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../outside.png"])
def test_manifest_paths_cannot_escape_the_synthetic_folder(name, tmp_path):
    folder = tmp_path / "synthetic"
    png(folder / "a" / "000000.png")
    storage.write_csv(folder / "manifest.csv", ["file", "class", "seed", "checkpoint_sha256"], [[name, "a", 0, "x"]])
    with pytest.raises(AugmentError, match="points outside"):
        load_synthetic(folder, ["a", "b"], (1, 12, 12))
