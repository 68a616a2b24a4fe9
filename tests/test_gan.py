"""GAN networks, augmentation and the training loop on real digit images."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import tiny_config
from pipeline import ingest, storage
from pipeline.errors import AugmentError
from pipeline.gan import train
from pipeline.gan.diffaugment import diff_augment, parse_policy
from pipeline.gan.networks import Discriminator, Generator
from pipeline.generators import build_generator


@pytest.mark.parametrize("size, channels", [(16, 1), (28, 1), (32, 3), (64, 3)])
def test_networks_follow_image_size_and_channels(size, channels):
    generator, discriminator = Generator(16, 5, channels, size, 32), Discriminator(5, channels, size, 32)
    labels = torch.tensor([0, 1, 4])
    images = generator(torch.randn(3, 16), labels)
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images, labels).shape == (3,)


def test_augmentation_keeps_shape_changes_pixels_and_passes_gradients():
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    policy = parse_policy("color,translation,cutout")
    y = diff_augment(x, policy, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert parse_policy("") == []


@pytest.fixture(scope="module")
def ingested(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "ingest"
    ingest.run(tiny_config(digits_dir).ingest, out)
    return out


def test_training_writes_checkpoint_grids_losses_and_exports_ema(ingested, digits_dir, tmp_path):
    config = tiny_config(digits_dir).train
    summary = train.run(config, ingested, tmp_path / "gan")
    assert summary["steps"] == 6 and summary["images_per_second"] > 0
    grids = sorted((tmp_path / "gan" / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_000003.png", "step_000006.png"]
    with Image.open(grids[-1]) as grid:
        assert grid.size == (8 * 16, 10 * 16)  # 8 fixed-noise columns, one row per class
    rows = list(csv.DictReader(open(tmp_path / "gan" / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [3, 6] and all(float(r["loss_d"]) >= 0 for r in rows)
    quality = list(csv.DictReader(open(tmp_path / "gan" / "quality.csv")))
    assert [int(r["step"]) for r in quality] == [3, 6]
    assert all(float(r["frechet_distance"]) > 0 and 0 <= float(r["coverage"]) <= 1 for r in quality)
    tensors = load_file(str(tmp_path / "gan" / "checkpoint.safetensors"))
    assert {k.split(".")[0] for k in tensors} == {"G", "D", "G_ema", "opt_g", "opt_d"}
    spec = json.loads((tmp_path / "gan" / "generator.json").read_text())
    assert spec["classes"] == [str(d) for d in range(10)] and spec["train"]["steps"] == 6
    generator = build_generator(spec)
    generator.load_state_dict(load_file(str(tmp_path / "gan" / "generator_ema.safetensors")))


def test_training_resumes_from_a_matching_checkpoint(ingested, digits_dir, tmp_path, caplog):
    config = tiny_config(digits_dir, "train.steps=3").train
    train.run(config, ingested, tmp_path / "gan")
    storage.write_json(tmp_path / "gan" / "marker.json", {})  # survives only if the folder is not wiped
    config.steps = 6
    with caplog.at_level("INFO", logger="augment"):
        train.run(config, ingested, tmp_path / "gan")
    assert "resuming training from step 3 of 6" in caplog.text
    assert (tmp_path / "gan" / "marker.json").exists()
    assert (tmp_path / "gan" / "samples" / "step_000006.png").exists()
    rows = list(csv.DictReader(open(tmp_path / "gan" / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [3, 6]
    config.lr_generator = 1e-3  # a different model: start again from scratch in a clean folder, and say so
    caplog.clear()
    with caplog.at_level("INFO", logger="augment"):
        train.run(config, ingested, tmp_path / "gan")
    assert "is from other settings: training starts afresh" in caplog.text
    assert not (tmp_path / "gan" / "marker.json").exists()
    config.steps = 2  # fewer steps than the checkpoint's: a shorter run from scratch, never a silent one
    caplog.clear()
    with caplog.at_level("INFO", logger="augment"):
        train.run(config, ingested, tmp_path / "gan")
    assert "is at step 6, past train.steps=2: training starts afresh" in caplog.text
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "gan" / "losses.csv"))] == [2]


def test_foreign_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(AugmentError, match="not a valid safetensors file"):
        storage.load_tensors(path)


def test_minibatch_std_lets_the_discriminator_see_a_collapsed_batch():
    discriminator = Discriminator(2, 1, 16, 32, width_ratio=1.0, minibatch_std=True)
    labels = torch.zeros(8, dtype=torch.long)
    varied = torch.rand(8, 1, 16, 16) * 2 - 1
    collapsed = varied[:1].repeat(8, 1, 1, 1)  # one image eight times: zero spread
    assert not torch.allclose(discriminator(collapsed, labels)[:1], discriminator(varied, labels)[:1]), \
        "the same first image must score differently when its batch-mates are copies of it"


def test_mode_seeking_and_keep_best_export_the_lowest_frechet_snapshot(ingested, digits_dir, tmp_path):
    config = tiny_config(digits_dir, "train.steps=9", "train.mode_seeking=1.0", "train.minibatch_std=true",
                         "train.discriminator_width=1.0", "train.keep=best").train
    train.run(config, ingested, tmp_path / "gan")
    quality = list(csv.DictReader(open(tmp_path / "gan" / "quality.csv")))
    best = min(quality, key=lambda r: float(r["frechet_distance"]))
    snapshot = tmp_path / "gan" / train.BEST
    assert storage.read_metadata(snapshot)["step"] == best["step"]
    exported, kept = load_file(str(tmp_path / "gan" / "generator_ema.safetensors")), load_file(str(snapshot))
    assert exported.keys() == kept.keys() and all(torch.equal(exported[k], kept[k]) for k in kept)
    if best["step"] != "9":  # the last EMA differs from an earlier snapshot
        last = load_file(str(tmp_path / "gan" / "checkpoint.safetensors"))
        assert not all(torch.equal(last[f"G_ema.{k}"], kept[k]) for k in kept)


def test_bf16_precision_runs_the_gan_steps_in_bfloat16_on_cpu(ingested, digits_dir, tmp_path, monkeypatch):
    from pipeline.device import autocast
    from pipeline.gan import step as step_module

    layer, x = torch.nn.Linear(4, 4), torch.ones(2, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    for precision in ("auto", "fp32"):  # on a CPU, only an explicit bf16 changes the arithmetic
        with autocast(torch.device("cpu"), precision):
            assert layer(x).dtype == torch.float32
    with pytest.raises(AugmentError, match="precision must be one of"):
        autocast(torch.device("cpu"), "fp16")
    config = tiny_config(digits_dir, "train.precision=bf16").train
    asked = []  # the training loop must pass the configured precision to every autocast it opens
    monkeypatch.setattr(step_module, "autocast", lambda device, precision="auto": asked.append(precision) or autocast(device, precision))
    summary = train.run(config, ingested, tmp_path / "gan")
    assert asked and set(asked) == {"bf16"}
    rows = list(csv.DictReader(open(tmp_path / "gan" / "losses.csv")))
    assert summary["steps"] == 6 and all(torch.isfinite(torch.tensor(float(r["loss_g"]))) for r in rows)
    weights = load_file(str(tmp_path / "gan" / "generator_ema.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())  # master weights stay fp32


def test_balanced_sampling_draws_every_class_equally_often_and_uniform_follows_the_data():
    from pipeline.gan.step import class_balanced_weights, draw_batch

    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)  # 90:9:1
    images = torch.zeros(100, 1, 4, 4, dtype=torch.uint8)
    counts = {}
    for name, weights in (("uniform", None), ("balanced", class_balanced_weights(labels))):
        rng = torch.Generator().manual_seed(0)
        drawn = torch.cat([draw_batch(images, labels, None, 64, 8, rng, torch.device("cpu"), weights)[1] for _ in range(100)])
        counts[name] = torch.bincount(drawn, minlength=3).double() / len(drawn)
    assert counts["uniform"][2] < 0.03 and counts["uniform"][0] > 0.85
    assert torch.allclose(counts["balanced"], torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03)
    from pipeline.gan.step import sampling_weights  # auto: balanced from a 2:1 largest / smallest class, else uniform
    assert torch.equal(sampling_weights("auto", labels), class_balanced_weights(labels))
    assert sampling_weights("auto", torch.tensor([0, 0, 0, 1, 1])) is None  # 3:2
    assert sampling_weights("auto", torch.tensor([0, 0, 0, 0, 1, 1])) is not None  # 2:1
    assert sampling_weights("uniform", labels) is None


def test_balanced_sampling_trains_and_is_part_of_the_model_identity(ingested, digits_dir, tmp_path):
    config = tiny_config(digits_dir, "train.sampling=balanced").train
    summary = train.run(config, ingested, tmp_path / "gan")
    assert summary["steps"] == 6
    spec = json.loads((tmp_path / "gan" / "generator.json").read_text())
    assert spec["train"]["sampling"] == "balanced"  # a uniform run's checkpoint is not resumed as this one
    with pytest.raises(AugmentError, match="train.sampling must be one of auto, uniform, balanced"):
        tiny_config(digits_dir, "train.sampling=weighted")
