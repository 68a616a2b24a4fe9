"""The `augment` command as a user runs it: end to end through Prefect, and one-line errors on bad input."""
from __future__ import annotations

import json
import subprocess

import pytest
import torchvision

from conftest import BIN, TINY, copy_tree

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`


def augment(args, env, cwd, timeout=600):
    return subprocess.run([str(BIN / "augment"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def tiny_sets():
    return [item for override in TINY if not override.startswith("generate.per_class") for item in ("--set", override)]


def test_run_end_to_end_through_prefect(digits_dir, cli_env, tmp_path):
    out = tmp_path / "out"
    result = augment(["run", "--dataset", str(digits_dir), "--per-class", "12", "--out", str(out), *tiny_sets()], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real+synthetic" in result.stdout and "real+synthetic vs real" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["generate"]["per_class"] == 12 and config["train"]["steps"] == 6
    for stage in ("ingest/stats.json", "gan/generator_ema.safetensors", "gan/losses.csv", "synthetic/manifest.csv"):
        assert (out / stage).is_file(), stage
    dataset = torchvision.datasets.ImageFolder(str(out / "synthetic"))
    assert dataset.classes == [str(d) for d in range(10)] and len(dataset) == 120
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["n_test"] == 40 and metrics["seeds"] == 2
    assert set(metrics["conditions"]) == {"real", "real+aug", "real+synthetic", "real+aug+synthetic", "synthetic",
                                          "real+aug+synthetic@0.25"}
    assert set(metrics["gain"]) == {"real+synthetic_vs_real", "real+aug+synthetic_vs_real+aug"}
    assert (out / "evaluation" / "report.html").is_file() and (out / "gan" / "summary.json").is_file()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "has no class sub-folders"),
    ("unreadable_class", "class 'broken' has no readable image"),
    ("per_class_zero", "generate.per_class must be at least 1"),
    ("per_class_negative", "generate.per_class must be at least 1"),
    ("unknown_key", "unknown config key 'train.stpes'"),
])
def test_bad_input_ends_in_one_line_without_traceback(case, message, digits_dir, cli_env, tmp_path):
    data, extra = tmp_path / "data", []
    if case == "empty":
        data.mkdir()
    elif case == "unreadable_class":
        copy_tree(digits_dir, data)
        (data / "broken").mkdir()
        (data / "broken" / "a.png").write_text("not an image")
    elif case != "missing":
        copy_tree(digits_dir, data)
    extra = {"per_class_zero": ["--per-class", "0"], "per_class_negative": ["--per-class", "-3"],
             "unknown_key": ["--set", "train.stpes=3"]}.get(case, [])
    result = augment(["run", "--dataset", str(data), "--out", str(tmp_path / "out"), *tiny_sets(), *extra], cli_env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_version_names_the_package_and_what_it_runs_on(cli_env):
    from importlib.metadata import version

    import torch

    result = subprocess.run([str(BIN / "augment"), "--version"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"augment {version('augment')} (torch {torch.__version__}, ")
    assert ("no CUDA GPU" in result.stdout) != torch.cuda.is_available()
