"""Kill -9 in the middle of training or generation, run again: the run resumes and finishes with every output.
A second run on a busy output folder is refused. Divergence stops training with a clear message."""
from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, tiny_config
from pipeline import ingest
from pipeline.errors import AugmentError
from pipeline.gan import train

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`

SETTINGS = ["--set", "ingest.image_size=16", "--set", "train.batch_size=16", "--set", "train.width=32",
            "--set", "train.steps=300", "--set", "train.checkpoint_every=20", "--set", "train.sample_every=100",
            "--set", "train.probe_steps=20",
            "--set", "evaluate.steps=20", "--set", "evaluate.seeds=2", "--set", "evaluate.batch_size=32"]


def hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def command(dataset, out, per_class):
    return [str(BIN / "augment"), "run", "--no-dvc", "--dataset", str(dataset), "--out", str(out),
            "--per-class", str(per_class), *SETTINGS]


def wait_for(condition, process, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "the run ended before the point where the test kills it"
        time.sleep(0.05)
    raise AssertionError("the run never reached the point where the test kills it")


def checkpoint_step(out):
    rows = out / "gan" / "losses.csv"
    return (out / "gan" / "checkpoint.safetensors").is_file() and rows.is_file() and len(rows.read_text().splitlines()) > 1


def generating(out, at_least):
    folder = out / "synthetic"
    return (folder / ".generating.json").is_file() and sum(1 for _ in folder.glob("*/*.png")) >= at_least


@pytest.mark.parametrize("where", ["training", "generation"])
def test_sigkill_then_rerun_resumes_and_completes(where, digits_dir, cli_env, tmp_path):
    out, per_class = tmp_path / "out", 300
    data_before = hashes(digits_dir)
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command(digits_dir, out, per_class), env=cli_env, cwd=tmp_path, stdout=log, stderr=log,
                             start_new_session=True)  # its own process group: the kill takes Prefect's server too
    try:
        if where == "training":
            wait_for(lambda: checkpoint_step(out), first)
            busy = subprocess.run(command(digits_dir, out, per_class), env=cli_env, cwd=tmp_path, capture_output=True, text=True)
            assert busy.returncode == 1 and "is in use by another augment command" in busy.stderr.strip().splitlines()[-1]
        else:
            wait_for(lambda: generating(out, 200), first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    again = subprocess.run(command(digits_dir, out, per_class), env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    expected = "resuming training from step" if where == "training" else "resuming generation:"
    assert expected in again.stderr
    assert sum(1 for _ in (out / "synthetic").glob("*/*.png")) == 10 * per_class
    rows = list(csv.DictReader(open(out / "synthetic" / "manifest.csv")))
    assert len(rows) == 10 * per_class and all((out / "synthetic" / r["file"]).is_file() for r in rows)
    assert not list(out.rglob("*.tmp")) and not (out / "synthetic" / ".generating.json").exists()
    assert (out / "evaluation" / "metrics.json").is_file() and (out / "evaluation" / "report.html").is_file()
    assert hashes(digits_dir) == data_before, "the input dataset must never change"


def test_divergence_stops_training_with_a_clear_message(digits_dir, tmp_path):
    config = tiny_config(digits_dir, "train.steps=60", "train.lr_generator=1e30", "train.lr_discriminator=1e30")
    ingest.run(config.ingest, tmp_path / "ingest")
    with pytest.raises(AugmentError, match="diverged at step .* lower train.lr_generator"):
        train.run(config.train, tmp_path / "ingest", tmp_path / "gan")
    assert not (tmp_path / "gan" / "generator_ema.safetensors").exists(), "no generator is exported from a diverged run"
