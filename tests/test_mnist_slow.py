"""The walking skeleton's acceptance run on real MNIST (20 train images per class, 5000 held-out test images)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import BIN, SHARED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist_split(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist") / "split"
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_split.py"), str(mnist_dir), str(out),
                    "--per-class", "20", "--test-total", "5000", "--seed", "0"], check=True, capture_output=True)
    return out


def test_low_data_mnist_run_end_to_end(mnist_split, prefect_server, tmp_path):
    server_env = prefect_server  # the shared server: no temporary one started per run
    out = tmp_path / "out"
    command = [str(BIN / "augment"), "run", "--dataset", str(mnist_split), "--per-class", "100", "--out", str(out),
               "--set", "train.steps=300", "--set", "evaluate.seeds=2", "--set", "evaluate.steps=200"]  # a third of the default: suite time
    result = subprocess.run(command, env=server_env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    digits = [str(d) for d in range(10)]
    assert sorted(p.name for p in (out / "synthetic").iterdir() if p.is_dir()) == digits
    for digit in digits:
        assert len(list((out / "synthetic" / digit).glob("*.png"))) == 100
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["n_test"] == 5000 and metrics["seeds"] == 2 and metrics["n_train_real"] + metrics["n_val"] == 200
    real = metrics["conditions"]["real"]
    assert len(real["accuracy_runs"]) == 2
    assert real["accuracy_mean"] > 0.6, "a CNN on 200 real MNIST digits reaches well above chance"
    assert len(metrics["conditions"]) == 6 and metrics["conditions"]["real+aug"]["accuracy_mean"] > 0.6
    for gain in metrics["gain"].values():
        assert len(gain["ci95"]) == 2 and gain["verdict"] and gain["verdict_note"]
    assert metrics["fidelity"]["frechet_distance"] > 0 and len(metrics["fidelity"]["per_class"]) == 10
    assert (out / "evaluation" / "report.html").stat().st_size > 20_000
