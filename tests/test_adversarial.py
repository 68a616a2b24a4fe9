"""The adversarial corpus: a careful user's mistakes and an attacker's tampered run folders (run folders travel: DVC
pull, shared disks), one case per kind the red-team round found. Every case must end in one clear line (an
AugmentError, or exit code 1 without a traceback from the CLI) or behave correctly, touch no file outside the run
folder and no file the tool did not make, and leave the input folder's hash unchanged."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BIN, copy_tree, tiny_config
from pipeline.stages import run_stage
from pipeline import config as config_module
from pipeline import ingest, runfolder, runs, storage
from pipeline.errors import AugmentError, environment_errors
from pipeline.evaluate import report


def tree_hash(folder: Path) -> str:
    """Every entry's relative path, kind and bytes (links as links: their target text, never followed)."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        for name in sorted(dirs + files):
            path = Path(root) / name
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def data(digits_dir, tmp_path) -> Path:
    return copy_tree(digits_dir, tmp_path / "data")


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished tiny run, free to tamper with."""
    target = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(target)], check=True)
    return target


# --- deleting or overwriting what is not the tool's -----------------------------------------------------------
def test_an_out_folder_holding_someone_elses_stage_named_folders_is_refused(data, tmp_path):
    home = tmp_path / "home"
    for name in ("ingest", "gan", "synthetic", "evaluation"):
        (home / name).mkdir(parents=True)
        (home / name / "thesis.tex").write_text(name)
    before, data_before = tree_hash(home), tree_hash(data)
    with pytest.raises(AugmentError, match="not empty and was not made by augment") as error:
        run_stage("ingest", tiny_config(data), home)
    one_line(error)
    assert tree_hash(home) == before and tree_hash(data) == data_before


def test_a_stage_folder_augment_did_not_make_is_never_deleted(run):
    shutil.rmtree(run / "synthetic")
    (run / "synthetic").mkdir()
    (run / "synthetic" / "holiday.jpg").write_text("someone's")
    with pytest.raises(AugmentError, match="augment did not make it") as error:
        run_stage("generate", runs.load_config(run), run)
    one_line(error)
    assert (run / "synthetic" / "holiday.jpg").read_text() == "someone's"


def test_a_class_made_apart_replaces_only_what_is_inside_the_tools_own_folder(tmp_path):
    # generate's fan-out (a class per Dask task) writes synthetic/<class>/ inside the stage folder
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "holiday.jpg").write_text("someone's")
    with pytest.raises(AugmentError, match="augment did not make it") as error:
        storage.fresh_subdir(theirs, "0")
    one_line(error)
    assert sorted(p.name for p in theirs.iterdir()) == ["holiday.jpg"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    ours = tmp_path / "synthetic"
    storage.fresh_subdir(ours, "1")  # a new folder becomes the tool's ...
    assert storage.owned(ours) and not storage.owned(ours / "1")  # as when the whole stage writes it
    (ours / "0").symlink_to(elsewhere, target_is_directory=True)
    (ours / "1" / "000000.png").write_text("stale")
    part = storage.fresh_subdir(ours, "0")  # ... and a link planted in it is removed, never followed
    assert part.is_dir() and not part.is_symlink() and not any(part.iterdir())
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert not any(storage.fresh_subdir(ours, "1").iterdir())
    with pytest.raises(AugmentError, match="cannot be a folder name"):
        storage.fresh_subdir(ours, "../victim")


@pytest.mark.parametrize("stage", ["ingest", "generate"])
def test_a_stage_folder_that_is_a_link_is_refused_and_its_target_kept(run, tmp_path, stage):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    folder = run / {"ingest": "ingest", "generate": "synthetic"}[stage]
    shutil.rmtree(folder)
    folder.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(AugmentError, match="symbolic link") as error:
        run_stage(stage, runs.load_config(run), run)
    one_line(error)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]


def _tamper_classes(run: Path, name: str) -> None:
    arrays = storage.load_arrays(run / "ingest")
    classes = arrays["classes"].tolist()
    classes[0] = name
    arrays["classes"] = np.array(classes)
    with open(run / "ingest" / "arrays.npz", "wb") as handle:  # written as an attacker would, without the checks
        np.savez(handle, **arrays)


@pytest.mark.parametrize("name", ["../../../victim", "/tmp/x", "a/b", "..", ".hidden", ""])
def test_class_names_read_back_from_a_run_folder_cannot_become_paths(run, tmp_path, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    _tamper_classes(run, name)
    config = runs.load_config(run)
    per_class = config_module.apply_overrides(config, ["train.mode=per_class"])
    with pytest.raises(AugmentError, match="cannot be a folder name") as error:
        run_stage("train", per_class, run)
    one_line(error)
    assert (victim / "keep.txt").read_text() == "keep"


def test_a_tampered_generator_json_cannot_write_outside_the_run(run, tmp_path):
    spec = storage.read_json(run / "gan" / "generator.json")
    spec["classes"][0] = "../../outside"
    storage.write_json(run / "gan" / "generator.json", spec)
    with pytest.raises(AugmentError, match="cannot be a folder name") as error:
        runs.regenerate(run, 3)
    one_line(error)
    assert not (tmp_path / "outside").exists() and not (run.parent / "outside").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_the_lock_file_is_never_written_through_a_link(run, data, kind):
    victim = next((data / "3").iterdir())
    before = victim.read_bytes()
    lock = run / runfolder.LOCK
    lock.unlink()
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    with pytest.raises(AugmentError, match="lock file") as error:
        runs.render_report(run)
    one_line(error)
    assert victim.read_bytes() == before


LOCK_HOLDER = """
import sys, time
from pipeline import runfolder
with runfolder.lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def locked(run):
    """The run folder locked by another process for the length of the test."""
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield run
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("writer", ["stage", "generate --run", "export", "report"])
def test_every_writer_takes_the_lock(locked, tmp_path, writer):
    before = tree_hash(locked / "synthetic")
    call = {"stage": lambda: run_stage("ingest", runs.load_config(locked), locked),
            "generate --run": lambda: runs.regenerate(locked, 4),
            "export": lambda: runs.export_training_set(locked, tmp_path / "export"),
            "report": lambda: runs.render_report(locked)}[writer]
    with pytest.raises(AugmentError, match="in use by another augment command") as error:
        call()
    assert "pid" in one_line(error)
    assert tree_hash(locked / "synthetic") == before and not (tmp_path / "export").exists()


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with runfolder.lock(tmp_path):
        with runfolder.lock(tmp_path):
            pass
        probe = subprocess.run([sys.executable, "-c", LOCK_HOLDER.replace("time.sleep(60)", ""), str(tmp_path)],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "in use" in probe.stderr  # still held after the inner block
    probe = subprocess.run([sys.executable, "-c", LOCK_HOLDER.replace("time.sleep(60)", ""), str(tmp_path)],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


@pytest.mark.parametrize("override, message", [
    ("train.seed=99999999999999999999", "train.seed must be in [0, 2147483647]"),
    ("generate.seed=9223372036854775807", "generate.seed must be in [0, 2147483647]"),
    ("ingest.split_seed=-1", "ingest.split_seed must be in [0, 2147483647]"),
    ("evaluate.lr=inf", "evaluate.lr must be a finite number"),
    ("evaluate.lr=nan", "evaluate.lr must be a finite number"),
    ("evaluate.model=:x", "evaluate.model must be small"),
    ("evaluate.model=.x:y", "evaluate.model must be small"),
    ("evaluate.model=a:b:c", "evaluate.model must be small"),
])
def test_values_that_would_crash_a_stage_are_refused_when_read(run, override, message):
    before = tree_hash(run)
    with pytest.raises(AugmentError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        config_module.apply_overrides(runs.load_config(run), [override])
    one_line(error)
    assert tree_hash(run) == before


def test_a_model_that_cannot_classify_is_refused_before_any_folder_is_replaced(data, tmp_path):
    from pipeline import plan

    for name in ("os:system", "math:pi", "torchvision_missing_model_xyz", "json:dumps"):
        config = tiny_config(data, f"evaluate.model={name}")
        with pytest.raises(AugmentError, match="evaluate.model") as error:
            plan.preflight(config, tmp_path / "out")
        one_line(error)
    assert not (tmp_path / "out").exists()


def test_export_never_deletes_a_partial_folder_it_did_not_make(finished_run, tmp_path):
    partial = tmp_path / ".export.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("mine")
    with pytest.raises(AugmentError, match="augment did not make it") as error:
        runs.export_training_set(finished_run, tmp_path / "export")
    one_line(error)
    assert (partial / "mine.txt").read_text() == "mine" and not (tmp_path / "export").exists()


def test_export_into_a_link_is_refused(finished_run, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(AugmentError, match="link") as error:
        runs.export_training_set(finished_run, tmp_path / "link")
    one_line(error)
    assert not any((tmp_path / "real").iterdir())


def test_export_from_another_folder_still_protects_a_relative_dataset(run, tmp_path, monkeypatch):
    """An older run's config.json holds the dataset's path relative to where `augment run` started."""
    config = storage.read_json(run / "config.json")
    dataset = Path(config["ingest"]["dataset"])
    project = run.parent
    (project / "runs").mkdir()
    moved = project / "runs" / "r"
    run.rename(moved)
    local = project / "data"
    shutil.copytree(dataset, local)
    config["ingest"]["dataset"] = "data"
    storage.write_json(moved / "config.json", config)
    monkeypatch.chdir(tmp_path.parent)  # somewhere else entirely
    before = tree_hash(local)
    with pytest.raises(AugmentError, match="inside the dataset"):
        runs.export_training_set(moved, local / "exported")
    assert tree_hash(local) == before


# --- reading or running what the user did not mean --------------------------------------------------------------
@pytest.mark.slow
def test_dry_run_imports_no_user_code(digits_dir, cli_env, tmp_path):
    (tmp_path / "evil.py").write_text("import pathlib\npathlib.Path('PWNED').write_text('x')\ndef f(*a):\n    raise SystemExit(3)\n")
    (tmp_path / "params.yaml").write_text(f"ingest:\n  dataset: {digits_dir}\n  image_size: 16\nevaluate:\n  model: evil:f\n")
    result = subprocess.run([str(BIN / "augment"), "run", "--dry-run"], env=cli_env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "reading" in result.stderr and "params.yaml" in result.stderr  # said on screen which file was read
    assert not (tmp_path / "PWNED").exists()


def test_the_report_escapes_file_names_and_embeds_no_link(tmp_path):
    samples = tmp_path / "gan" / "samples"
    samples.mkdir(parents=True)
    Image.new("L", (4, 4), 128).save(samples / "step_000010.png")
    Image.new("L", (4, 4), 200).save(samples / 'step_"><img src=x onerror=alert(1)>.png')
    (samples / "step_000020.png").symlink_to("/etc/passwd")
    page = report._progress_grids(tmp_path / "gan")
    assert "onerror" not in page and page.count("<img") == 1 and "step 10" in page
    secret = Path("/etc/passwd").read_bytes()
    import base64
    assert base64.b64encode(secret[:30]).decode()[:20] not in page
    (tmp_path / "gan" / "losses.csv").symlink_to("/etc/passwd")
    assert "no losses" in report._curves_plot(tmp_path / "gan" / "losses.csv", [("l", ["loss_d"])], "no losses")


def test_report_text_with_dollar_signs_renders(tmp_path):
    classes = ["$1_$2", "a_$b$", "plain"]
    gain = {"per_class_gain_mean": {c: 0.01 for c in classes}}
    metrics = {"classes": classes, "gain": {"x_vs_y": gain},
               "conditions": {"real+aug": {"confusion_matrix": np.eye(3, dtype=int).tolist()}}, "recommendation": {}}
    assert "<img" in report._per_class_plot(metrics) and "<img" in report._confusion_plots(metrics)


def _eps(path: Path) -> None:
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")


def _gif(path: Path) -> None:
    Image.new("L", (12, 12), 90).save(path, format="GIF")


def _tiff(path: Path) -> None:
    Image.new("L", (12, 12), 90).save(path, format="TIFF")


@pytest.mark.parametrize("make", [_eps, _gif, _tiff], ids=["eps", "gif", "tiff"])
def test_only_the_named_formats_are_decoded(data, tmp_path, make):
    make(data / "3" / "odd.png")
    before = tree_hash(data)
    stats = ingest.run(tiny_config(data).ingest, tmp_path / "out")
    rows = _quarantine(tmp_path / "out")
    assert rows["3/odd.png"].startswith("not a PNG, JPEG, BMP or WEBP")
    assert stats["n_quarantined"] == 1 and tree_hash(data) == before


def _quarantine(out: Path) -> dict[str, str]:
    import csv

    with open(out / "quarantine.csv", newline="") as handle:
        return {r["file"]: r["reason"] for r in csv.DictReader(handle)}


def test_webp_and_bmp_are_still_read(data, tmp_path):
    Image.new("L", (12, 12), 77).save(data / "3" / "w.webp", format="WEBP", lossless=True)
    Image.new("L", (12, 12), 66).save(data / "3" / "b.bmp", format="BMP")
    stats = ingest.run(tiny_config(data).ingest, tmp_path / "out")
    assert stats["n_quarantined"] == 0


# --- hanging or dying with a traceback ---------------------------------------------------------------------------
def test_a_fifo_and_a_link_loop_are_quarantined_not_waited_for(data, tmp_path):
    os.mkfifo(data / "3" / "pipe.png")
    (data / "4" / "loop.png").symlink_to(data / "4" / "loop.png")
    before = tree_hash(data)
    result = {}
    worker = threading.Thread(target=lambda: result.update(stats=ingest.run(tiny_config(data).ingest, tmp_path / "out")),
                              daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "ingest hung on a FIFO"
    rows = _quarantine(tmp_path / "out")
    assert rows["3/pipe.png"].startswith("not a regular file") and rows["4/loop.png"].startswith("a symbolic link that loops")
    runfolder.check_output_location(data, tmp_path / "out2")  # walks the dataset's links: no RuntimeError on the loop
    assert tree_hash(data) == before


def test_environment_failures_are_one_line_and_not_retried(monkeypatch, tmp_path):
    from flows import augment

    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOTDIR):
        with pytest.raises(AugmentError) as error, environment_errors():
            raise OSError(code, os.strerror(code), str(tmp_path / "x.png"))
        assert os.strerror(code) in one_line(error) and "x.png" in str(error.value)

    class State:
        def __init__(self, error):
            self.error = error

        def result(self):
            raise self.error

    assert not augment._worth_retrying(None, None, State(KeyError("a bug")))
    assert not augment._worth_retrying(None, None, State(AugmentError("user")))
    from pipeline.errors import TransientError
    assert augment._worth_retrying(None, None, State(TransientError("busy")))


def test_disk_full_while_writing_a_stage_is_one_line(data, tmp_path, monkeypatch):
    real = storage.write_csv

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))

    monkeypatch.setattr(storage, "write_csv", full)
    with pytest.raises(AugmentError, match="No space left on device") as error:
        run_stage("ingest", tiny_config(data), tmp_path / "out")
    one_line(error)
    monkeypatch.setattr(storage, "write_csv", real)


def test_out_that_is_a_file_or_has_a_linked_stage_folder(data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AugmentError, match="is a file") as error:
        run_stage("ingest", tiny_config(data), tmp_path / "file")
    one_line(error)
    assert (tmp_path / "file").read_text() == "x"


# What is damaged -> the commands on the run that must refuse it; the others may work (generate with the tiny
# run's filter=none never reads the arrays), never crash.
DAMAGE = {
    "config-not-json": {"generate", "report", "export"}, "config-list": {"generate", "report", "export"},
    "generator-missing-key": {"generate"}, "pickled-npz": {"report", "export"},
    "pickled-npy": {"report"}, "wrong-shapes": {"generate"}, "truncated-npz": {"report", "export"},
    "metrics-not-json": {"report", "export"}, "manifest-columns": {"report", "export"},
}


def _damage(run: Path, damage: str) -> None:
    if damage == "config-not-json":
        (run / "config.json").write_text("{not json")
    elif damage == "config-list":
        (run / "config.json").write_text("[1, 2]")
    elif damage == "generator-missing-key":
        spec = storage.read_json(run / "gan" / "generator.json")
        del spec["z_dim"]
        storage.write_json(run / "gan" / "generator.json", spec)
    elif damage == "pickled-npz":
        with open(run / "ingest" / "arrays.npz", "wb") as handle:
            np.savez(handle, classes=np.array([object()], dtype=object))
    elif damage == "pickled-npy":
        np.save(run / "evaluation" / "nearest_real.npy", np.array([object()], dtype=object), allow_pickle=True)
    elif damage == "wrong-shapes":
        tensors = storage.load_tensors(run / "gan" / "generator_ema.safetensors")
        tensors[next(iter(tensors))] = torch.zeros(3, 3)
        storage.save_tensors(run / "gan" / "generator_ema.safetensors", tensors, {})
    elif damage == "truncated-npz":
        data = (run / "ingest" / "arrays.npz").read_bytes()
        (run / "ingest" / "arrays.npz").write_bytes(data[: len(data) // 3])
    elif damage == "metrics-not-json":
        (run / "evaluation" / "metrics.json").write_text("\x00\x01")
    else:
        (run / "synthetic" / "manifest.csv").write_text("name,label\na,b\n")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_run_files_are_one_line_errors(run, tmp_path, damage):
    _damage(run, damage)
    calls = {"report": lambda: runs.render_report(run), "export": lambda: runs.export_training_set(run, tmp_path / "export"),
             "generate": lambda: runs.regenerate(run, 3)}  # last: it rewrites synthetic/
    for name, call in calls.items():
        try:
            call()
        except AugmentError as error:
            assert str(error) and "\n" not in str(error), name
            continue
        assert name not in DAMAGE[damage], f"{name} accepted a run with {damage}"


# --- the temporary Prefect server does not outlive its run ------------------------------------------------------
def _servers_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if f"AUGMENT_OWNER_PID={pid}\0".encode() in environ and b"prefect" in command and b"server" in command:
                found.append(int(entry))
    return found


def _start_run(data: Path, out: Path, env: dict) -> subprocess.Popen:
    command = [str(BIN / "augment"), "run", "--no-dvc", "--dataset", str(data), "--out", str(out), "--per-class", "10",
               "--set", "train.steps=400", "--set", "ingest.image_size=16", "--set", "train.width=32"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_server(process: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        servers = _servers_of(process.pid)
        if servers:
            return servers
        assert process.poll() is None, "the run ended before its server was seen"
        time.sleep(1)
    raise AssertionError("no temporary Prefect server appeared")


def _gone(pids: list[int], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()]
        if not alive:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_temporary_server_and_sigkill_leaves_it_to_the_next_command(data, cli_env, tmp_path):
    first = _start_run(data, tmp_path / "run1", cli_env)
    servers = _wait_for_server(first)
    first.terminate()  # SIGTERM: a plain `kill`
    first.wait(timeout=120)
    assert _gone(servers), "SIGTERM left the temporary Prefect server running"

    second = _start_run(data, tmp_path / "run2", cli_env)
    servers = _wait_for_server(second)
    second.kill()  # SIGKILL: nothing runs in the dying process
    second.wait()
    subprocess.run([str(BIN / "augment"), "options"], env=cli_env, capture_output=True, timeout=120, check=True)
    assert _gone(servers), "the next command did not stop the orphaned server"
