"""The GPU path, checked on a CPU: benchmarks/gpu_check.py in its quick mode, device-aware defaults, and the
device-independent parts (generation's batch size changes no image; mps is accepted; a missing device is one line)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from pipeline import config as config_module
from pipeline import device as device_module
from pipeline import generate, storage
from pipeline.errors import AugmentError
from pipeline.generators import build_generator

from conftest import BIN, ROOT

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`


# What the lent GPU machine lacks: importing prefect or dvc fails there, as it does in this subprocess.
WITHOUT_PREFECT_AND_DVC = """
import runpy, sys
for name in ("prefect", "dvc", "typer"):
    sys.modules[name] = None  # `import prefect` now raises ImportError
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_check_quick_mode_measures_every_part_on_cpu(cli_env, tmp_path):
    """`PYTHONPATH=. python3 benchmarks/gpu_check.py`, as on the lent GPU machine: from the source tree, with Prefect
    and DVC (and Typer) unimportable; every figure, the two default runs included, through the pipeline's own stages."""
    out = tmp_path / "gpu"
    result = subprocess.run([str(BIN / "python"), "-c", WITHOUT_PREFECT_AND_DVC, str(ROOT / "benchmarks" / "gpu_check.py"),
                             "--device", "cpu", "--quick", "--threads", "1", "--budget", "0", "--out", str(out)],
                            env={**cli_env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["torch_threads"] == 1
    figures = report["micro"]["cpu"]
    expected = {"28px gray fp32 compile=off", "28px gray fp32 compile=on", "28px gray bf16 compile=off",
                "64px rgb fp32 compile=off", "64px rgb bf16 compile=off"}
    assert set(figures["gan"]) == expected
    for key, value in figures["gan"].items():  # compile=on included: the compiled step ran and gave finite losses
        assert "error" not in value, (key, value)
        assert value["images_per_second"] > 0 and math.isclose(value["seconds_per_step"] * value["images_per_second"], 64, rel_tol=0.02)
    for shape in ("28px gray", "64px rgb"):
        assert figures["classifier"][shape]["steps_per_second"] > 0
        assert figures["classifier"][shape]["two_seeds_at_once_steps_per_second"] > 0
        assert figures["classifier"][shape]["ensemble_of_8_member_steps_per_second"] > 0
        assert figures["generate"][shape]["generate_run_images_per_second"] > 0
        assert figures["generate"][shape]["generate_batch_size"] == 256  # the CPU default
    for name, run in report["runs"].items():
        assert "error" not in run, (name, run)
        assert set(run["stage_seconds"]) == {"ingest", "train", "generate", "evaluate"}
        assert all(seconds > 0 for seconds in run["stage_seconds"].values())
        assert run["resolved"]["generate.batch_size"] == 256  # config.json records the size the device chose
        assert 0 <= run["accuracy"]["real+aug"] <= 100
    markdown = out.with_suffix(".md").read_text()
    assert "| 28px gray fp32 compile=on |" in markdown and "| photos 64px (default run) |" in markdown


def _random_generator(folder: Path) -> Path:
    spec = {"z_dim": 16, "width": 32, "classes": ["a", "b", "c"], "channels": 1, "image_size": 16}
    torch.manual_seed(0)
    storage.save_tensors(folder / "generator_ema.safetensors", build_generator(spec).state_dict(), {"format": "augment-generator-v1"})
    storage.write_json(folder / "generator.json", spec)
    return folder


def _image_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*/*.png"))}


def test_generation_batch_size_changes_no_image(tmp_path):
    gan = _random_generator(tmp_path / "gan")
    config = dataclasses.replace(config_module.GenerateConfig(), per_class=9, filter="none", device="cpu")
    by_device = generate.run(config, gan, tmp_path / "auto")  # batch_size 0: the device's default (256 here)
    generate.run(dataclasses.replace(config, batch_size=4), gan, tmp_path / "small")
    hashes = _image_hashes(tmp_path / "auto")
    assert by_device["n_images"] == 27 and len(hashes) == 27
    assert hashes == _image_hashes(tmp_path / "small")


def test_device_defaults_follow_the_device_and_yield_to_the_user(monkeypatch):
    config = config_module.load(None, [])
    assert config.generate.batch_size == 0  # left to the device
    assert device_module.resolve(config).generate.batch_size == 256  # this machine has no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what auto sees on a GPU machine
    assert device_module.pick_device("auto").type == "cuda"
    assert device_module.resolve(config).generate.batch_size == 1024
    assert device_module.resolve(config_module.load(None, ["generate.device=cpu"])).generate.batch_size == 256
    assert device_module.resolve(config_module.load(None, ["generate.batch_size=64"])).generate.batch_size == 64
    unchanged = device_module.resolve(config)  # sizes that change results are the same on every device
    assert (unchanged.train, unchanged.evaluate) == (config.train, config.evaluate)


def test_mps_is_accepted_and_a_missing_device_is_one_clear_line(monkeypatch):
    assert config_module.load(None, ["train.device=mps", "generate.device=mps", "evaluate.device=mps"]).train.device == "mps"
    with pytest.raises(AugmentError, match="train.device must be one of auto, cpu, cuda, mps"):
        config_module.load(None, ["train.device=tpu"])
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    with pytest.raises(AugmentError, match="'mps' was requested but this machine has no Apple GPU"):
        device_module.pick_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AugmentError, match="'cuda' was requested but no CUDA GPU is available"):
        device_module.pick_device("cuda")
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert device_module.pick_device("mps").type == "mps"
    assert device_module.default_generate_batch(torch.device("mps")) == 1024
