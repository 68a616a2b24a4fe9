"""Scaling out, for real: per-class training fanned out on a 2-worker Dask LocalCluster, and DistributedDataParallel
training on 2 CPU processes with gloo started by torchrun."""
from __future__ import annotations

import csv
import json
import re
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from conftest import BIN, TINY, small_digits, tiny_config
from pipeline.stages import STAGES, run_stage
from pipeline import ingest, storage
from pipeline.gan.distributed import shard
from pipeline.generators import build_generator
from test_cli import augment, tiny_sets

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`


# Orchestration, not quality, is under test: no quality probe, short classifier runs (2 seeds, so they fan out too).
FAST = ["train.mode=per_class", "train.track_quality=false", "evaluate.steps=10"]


def files(folder):
    """Relative paths of the outputs, without the run's own bookkeeping (config.json and the lock of `augment run`)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"config.json", ".augment.lock"}


def test_shard_gives_every_rank_a_disjoint_share_of_all_indices():
    shares = [shard(11, rank, 3).tolist() for rank in range(3)]
    assert sorted(sum(shares, [])) == list(range(11))
    assert [len(s) for s in shares] == [4, 4, 3]


def test_per_class_mode_on_a_two_worker_dask_cluster_matches_local_outputs(digits_dir, prefect_server, tmp_path):
    data = small_digits(digits_dir, tmp_path / "data")
    local = tmp_path / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Dask workers run with 1 thread: same arithmetic, so the same weights
    try:
        for name in STAGES:  # the local, sequential path (`augment stage`, dvc repro)
            run_stage(name, tiny_config(data, *FAST), local)
    finally:
        torch.set_num_threads(threads)
    dask = tmp_path / "dask"
    args = ["run", "--dataset", str(data), "--per-class", "10", "--out", str(dask), *tiny_sets(),
            *(item for override in FAST for item in ("--set", override)), "--runner", "dask", "--dask-workers", "2"]
    result = augment(args, {**prefect_server, "OMP_NUM_THREADS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    workers = set(re.findall(r"train \S+ in process (\d+)", result.stderr + result.stdout))
    assert len(workers) == 2, f"the 3 classes should spread over both Dask workers, saw processes {workers}"
    assert files(dask) == files(local)
    assert {f"gan/per_class/{c}/checkpoint.safetensors" for c in "012"} <= files(dask)
    assert {"gan/generator_ema.safetensors", "gan/losses.csv", "synthetic/manifest.csv", "evaluation/report.html"} <= files(dask)
    spec = json.loads((dask / "gan" / "generator.json").read_text())
    assert spec["kind"] == "per_class" and spec == json.loads((local / "gan" / "generator.json").read_text())
    ours, theirs = (load_file(str(d / "gan" / "generator_ema.safetensors")) for d in (dask, local))
    assert ours.keys() == theirs.keys() and all(torch.allclose(ours[k], theirs[k], atol=1e-5) for k in ours)
    manifests = [[row[:3] for row in csv.reader(open(d / "synthetic" / "manifest.csv"))] for d in (dask, local)]
    assert manifests[0] == manifests[1] and len(manifests[0]) == 31  # generated per class: the same files and seeds
    metrics = json.loads((dask / "evaluation" / "metrics.json").read_text())
    reference = json.loads((local / "evaluation" / "metrics.json").read_text())
    assert metrics["n_synthetic"] == 30 and metrics["seeds"] == 2 and metrics.keys() == reference.keys()
    assert metrics["conditions"]["real"]["accuracy_runs"] == reference["conditions"]["real"]["accuracy_runs"]


def test_ddp_on_two_cpu_processes_trains_and_saves_one_checkpoint(digits_dir, cli_env, tmp_path):
    out = tmp_path / "out"
    ingest.run(tiny_config(digits_dir).ingest, out / "ingest")
    sets = [item for override in TINY for item in ("--set", override)] + ["--set", "train.steps=4"]
    command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "flows.distributed", "--out", str(out), *sets]
    result = subprocess.run(command, env={**cli_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained on 2 processes") == 1  # rank 0 alone reports and writes
    gan = out / "gan"
    assert sorted(p.name for p in gan.glob("*.safetensors")) == ["checkpoint.safetensors", "generator_ema.safetensors"]
    assert not list(gan.rglob("*.tmp"))
    metadata = storage.read_metadata(gan / "checkpoint.safetensors")
    spec = json.loads(metadata["spec"])
    assert metadata["step"] == "4" and spec["world_size"] == 2 and spec["train"]["steps"] == 4
    rows = storage.read_csv_rows(gan / "losses.csv")
    assert rows[-1][0] == 4 and all(v == v for v in rows[-1])  # finite, not NaN
    generator = build_generator(json.loads((gan / "generator.json").read_text()))
    torch.manual_seed(spec["train"]["seed"])
    initial = build_generator(spec).state_dict()
    generator.load_state_dict(load_file(str(gan / "generator_ema.safetensors")))
    assert any(not torch.equal(initial[k], v) for k, v in generator.state_dict().items())  # it did train
    assert generator.eval()(torch.randn(2, spec["z_dim"]), torch.tensor([0, 9])).shape == (2, 1, 16, 16)


def test_ddp_module_outside_torchrun_is_a_one_line_error(cli_env, tmp_path):
    result = subprocess.run([str(BIN / "python"), "-m", "flows.distributed", "--out", str(tmp_path)], env=cli_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: start this module with torchrun")
