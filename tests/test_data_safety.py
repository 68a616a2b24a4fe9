"""Never lose the user's data: an output folder that overlaps the dataset is refused by every entry point before
anything is written; outputs get the file mode a plain open() gives; duplicates cannot straddle train and
validation; atomic writes reach the disk before and after their rename."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, copy_tree, tiny_config
from pipeline import storage
from pipeline.errors import AugmentError
from pipeline.evaluate.recommend import recommend
from pipeline import ingest, runfolder

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`


def content_hash(folder):
    """One hash over every file's relative path and bytes (symbolic links followed, as a reader sees them)."""
    digest = hashlib.sha256()
    files = sorted(Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names)
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def previous_run(digits_dir, out):
    """An output folder as an earlier run leaves it, its synthetic/ an ImageFolder a user may train on next."""
    for stage in ("ingest", "gan", "evaluation"):
        (out / stage).mkdir(parents=True)
        (out / stage / "kept.txt").write_text(stage)
    copy_tree(digits_dir, out / "synthetic")
    return out


def overlap(case, digits_dir, tmp_path):
    """(dataset, out, the dataset folder whose content must survive) for each way the two can overlap."""
    data = copy_tree(digits_dir, tmp_path / "data")
    if case == "same folder":
        return data, data, data
    if case == "output inside dataset":
        return data, data / "out", data
    run = previous_run(digits_dir, tmp_path / "run")
    if case == "dataset inside output":  # the example: training on a previous run's synthetic set
        return run / "synthetic", run, run / "synthetic"
    if case == "output is a link to the dataset":
        (tmp_path / "link").symlink_to(data)
        return data, tmp_path / "link", data
    if case == "dataset is a link into the output":
        (tmp_path / "link").symlink_to(run / "synthetic")
        return tmp_path / "link", run, run / "synthetic"
    if case == "a class folder linked into the output":
        mixed = tmp_path / "mixed"
        copy_tree(digits_dir, mixed)
        shutil.rmtree(mixed / "3")
        (mixed / "3").symlink_to(run / "synthetic" / "3")
        return mixed, run, mixed
    assert case == "a stage folder linked to the dataset"
    shutil.rmtree(run / "synthetic")
    (run / "synthetic").symlink_to(data)
    return data, run, data


CASES = ["same folder", "output inside dataset", "dataset inside output", "output is a link to the dataset",
         "dataset is a link into the output", "a class folder linked into the output", "a stage folder linked to the dataset"]


@pytest.mark.parametrize("case", CASES)
def test_augment_run_refuses_every_overlap_of_dataset_and_output(case, digits_dir, cli_env, tmp_path):
    dataset, out, kept = overlap(case, digits_dir, tmp_path)
    before, listing = content_hash(kept), sorted(p.name for p in out.iterdir()) if out.exists() else None
    result = subprocess.run([str(BIN / "augment"), "run", "--no-dvc", "--dataset", str(dataset), "--out", str(out),
                             "--per-class", "5", "--set", "train.steps=2"], env=cli_env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and str(dataset) in last and str(out) in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert content_hash(kept) == before, "the input dataset must never change"
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == listing, "nothing may be written"


def test_every_other_entry_point_refuses_an_overlap(digits_dir, cli_env, tmp_path):
    """`augment stage`, `serve` and `deploy` check before they start anything (deploy's pool is never contacted)."""
    run = previous_run(digits_dir, tmp_path / "run")
    dataset, before = run / "synthetic", content_hash(run / "synthetic")
    commands = {
        "stage": ["stage", "generate", "--out", str(run), "--set", f"ingest.dataset={dataset}"],
        "serve": ["serve", "--dataset", str(dataset), "--out", str(run), "--cron", "0 3 * * *", "--name", "x"],
        "deploy": ["deploy", "--dataset", str(dataset), "--out", str(run), "--cron", "0 3 * * *", "--name", "x",
                   "--pool", "nowhere"],
    }
    for name, arguments in commands.items():
        result = subprocess.run([str(BIN / "augment"), *arguments], env={**cli_env, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and "is inside the output folder" in last, (name, result.stderr[-2000:])
        assert content_hash(dataset) == before, name
    assert sorted(p.name for p in run.iterdir()) == ["evaluation", "gan", "ingest", "synthetic"]


def test_a_deployment_run_with_an_overridden_out_dir_is_refused_before_writing(digits_dir, cli_env, tmp_path):
    """What a flow run of the deployment does when its out_dir parameter is changed in the Prefect UI: the flow
    itself refuses, before config.json, on a real (temporary) Prefect server."""
    run = previous_run(digits_dir, tmp_path / "run")
    dataset, before = run / "synthetic", content_hash(run / "synthetic")
    script = ("import sys\nfrom flows.augment import augment_flow\nfrom pipeline.config import load\n"
              "from pipeline.errors import AugmentError\n"
              f"params = load(None, ['ingest.dataset={dataset}']).to_dict()\n"
              "try:\n"
              f"    augment_flow(params=params, out_dir={str(run)!r}, run_folder=True)\n"
              "except AugmentError as error:\n    print('refused:', error)\n    sys.exit(3)\n")
    result = subprocess.run([str(BIN / "python"), "-c", script], env=cli_env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 3 and "is inside the output folder" in result.stdout, result.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == ["evaluation", "gan", "ingest", "synthetic"]
    assert content_hash(dataset) == before


def test_outputs_get_the_mode_the_umask_gives(digits_dir, cli_env, tmp_path):
    """A real run under umask 022: every file is 0644 (mkstemp alone would make them 0600), and a rewrite of an
    existing file keeps that file's own mode, as open() does."""
    out = tmp_path / "out"
    script = ["bash", "-c", f"umask 022 && exec {BIN / 'augment'} run --no-dvc --dataset {digits_dir} --out {out} "
              "--per-class 5 --set ingest.image_size=16 --set train.steps=4 --set train.batch_size=16 "
              "--set train.width=32 --set train.sample_every=2 --set train.checkpoint_every=2 --set evaluate.steps=10 "
              "--set evaluate.seeds=1 --set evaluate.batch_size=32 --set generate.filter=none"]
    result = subprocess.run(script, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    for name in ("evaluation/report.html", "evaluation/metrics.json", "gan/generator_ema.safetensors",
                 "synthetic/manifest.csv", "synthetic/0/000000.png", "ingest/arrays.npz", "config.json"):
        assert modes[name] == 0o644, (name, oct(modes[name]))
    assert {oct(m) for m in modes.values()} == {oct(0o644)}, modes
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  steps: 3\n")
    os.chmod(params, 0o664)
    storage.write_text(params, "train:\n  steps: 4\n")
    assert stat.S_IMODE(params.stat().st_mode) == 0o664 and params.read_text().endswith("4\n")


def test_duplicates_inside_the_training_pool_cannot_straddle_train_and_validation(digits_dir, tmp_path):
    data = copy_tree(digits_dir, tmp_path / "data")
    originals = sorted((data / "4").glob("*.png"))[:6]
    for i, source in enumerate(originals):  # three copies each, in class 4 and (one) in class 7
        for k in range(2):
            shutil.copy(source, data / "4" / f"copy{k}-{i}.png")
        shutil.copy(source, data / "7" / f"stray-{i}.png")
    config = tiny_config(data, "ingest.val_fraction=0.5")
    ingest.run(config.ingest, tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    by_hash = {}
    for row in rows:
        by_hash.setdefault(row["pixel_hash"], []).append(row["split"])
    assert all(len(splits) == 1 for splits in by_hash.values()), "every image is kept once, in one split"
    reasons = {r["file"]: r["reason"] for r in csv.DictReader(open(tmp_path / "out" / "quarantine.csv"))}
    assert len(reasons) == 18 and all(f"7/stray-{i}.png" in reasons for i in range(6))
    assert "of class '4'" in reasons["7/stray-0.png"] and "dropped before the split" in reasons["4/copy0-0.png"]
    arrays = storage.load_arrays(tmp_path / "out")
    flat = lambda images: {image.tobytes() for image in images}
    assert not flat(arrays["train_images"]) & flat(arrays["val_images"])
    assert not (flat(arrays["train_images"]) | flat(arrays["val_images"])) & flat(arrays["test_images"])


def test_atomic_writes_reach_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    """The order of the real system calls: the file's data is flushed before the rename, the folder after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    target = tmp_path / "metrics.json"
    storage.write_json(target, {"a": 1})
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".metrics.json.")) and events[2][1] == str(tmp_path)
    events.clear()
    storage.save_tensors(tmp_path / "checkpoint.safetensors", {"w": __import__("torch").zeros(2)}, {})
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]


def test_no_synthetic_candidate_gives_a_valid_recommendation():
    """evaluate.synthetic_share=0 with candidate_shares="": every candidate has a share of 0."""
    val = {"real": np.array([[1, 0, 1, 1]], float), "real+aug": np.array([[1, 1, 1, 1]], float),
           "real+synthetic": np.array([[1, 1, 1, 0]], float), "real+aug+synthetic": np.array([[0, 1, 1, 1]], float)}
    shares = dict.fromkeys(val, 0.0)
    choice = recommend(val, shares, {"real": False, "real+aug": True, "real+synthetic": False, "real+aug+synthetic": True})
    assert choice["setting"] == "real+aug" and not choice["use_synthetic"]
    assert "no evaluated condition mixes in synthetic images" in choice["reason"]


def test_two_spellings_of_one_folder_are_the_same_folder(digits_dir, tmp_path, monkeypatch):
    """Relative paths resolve against the working folder: 'data' and './data/../data' are one folder."""
    copy_tree(digits_dir, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AugmentError, match="are the same folder"):
        runfolder.check_output_location("data", "./data/../data")
