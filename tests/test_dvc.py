"""The DVC versioning contract, with the real dvc and git CLIs in temporary repos holding the project."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import BIN, ROOT, TINY

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`

STAGES = ("ingest", "train", "generate", "sources", "evaluate")
# README, Versioning with DVC: experiments side by side in 120 columns (what changed, the baseline, the pick).
EXP_SHOW_VIEW = ["--only-changed", "--drop", r"Created|outputs/|.*\.(lo|hi)$|.*@|gain\.(syn-real|topup-res|bsm-res|synbsm-bsm)|acc\.(topup|bsm)|cas|fd",
                 "--keep", r"acc\.(aug|res|pick)$"]  # on imbalanced data (acc.res, gain.syn-res as well): 118 columns


def sh(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def dvc(args, repo, env):
    return sh([str(BIN / "dvc"), *args], repo, env).stdout


def ran(output):
    """Stages that `dvc repro` ran (not skipped), from its log."""
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def set_param(repo, dotted, value):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    section, key = dotted.split(".")
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_repo(path, digits_dir, env, track_data=False):
    """A fresh clone of the project (its pipeline code, dvc.yaml, tiny params) plus a dataset, committed."""
    path.mkdir()
    shutil.copytree(ROOT / "pipeline", path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
    shutil.copytree(ROOT / "sources", path / "sources")  # the outside sources' folder dvc.yaml depends on
    shutil.copytree(digits_dir, path / "data" / "digits")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for override in TINY:
        dotted, value = override.split("=")
        section, key = dotted.split(".")
        params[section][key] = yaml.safe_load(value)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    sh(["git", "init", "-q"], path, env)
    dvc(["init", "-q"], path, env)
    if track_data:
        dvc(["add", "-q", "data/digits"], path, env)
    sh(["git", "add", "-A"], path, env)
    sh(["git", "commit", "-qm", "project"], path, env)
    return path


def test_dvc_yaml_lists_exactly_the_code_each_stage_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    # The train stage runs train.py (conditional) or per_class.py (which imports train.py): the union is per_class's.
    modules = {"ingest": "pipeline.ingest", "train": "pipeline.gan.per_class", "generate": "pipeline.generate",
               "sources": "pipeline.sources", "evaluate": "pipeline.evaluate.stage"}
    for stage, module in modules.items():
        # A stage that builds generators (pipeline.generators) imports its kinds' modules when it builds one.
        probe = ("import importlib, json, os, sys; importlib.import_module(sys.argv[1]); "
                 "kinds = getattr(sys.modules.get('pipeline.generators'), 'KINDS', {}); "
                 "[importlib.import_module(path.split(':')[0]) for path in kinds.values()]; "
                 "print(json.dumps(sorted(os.path.relpath(m.__file__) for m in list(sys.modules.values()) "
                 "if getattr(m, '__file__', None) and m.__file__.startswith(os.path.abspath('pipeline')) "
                 "and not m.__file__.endswith('__init__.py'))))")
        imported = json.loads(subprocess.run([sys.executable, "-c", probe, module], cwd=ROOT, capture_output=True,
                                             text=True, check=True).stdout)
        declared = [d for d in stages[stage]["deps"] if d.startswith("pipeline/")]
        assert sorted(declared) == imported, stage
        # The sources stage decodes like ingest and trains the copy check's classifier with the evaluate settings.
        assert stages[stage]["params"] == (["ingest", "evaluate"] if stage == "sources" else [stage])
        assert stages[stage]["cmd"] == f"augment stage {stage} --out outputs"


def test_repro_reruns_only_what_changed_and_versions_everything(digits_dir, cli_env, tmp_path):
    repo = make_repo(tmp_path / "repo", digits_dir, cli_env)
    data_before = hashes(repo / "data")
    assert ran(dvc(["repro"], repo, cli_env)) == list(STAGES)
    assert "up to date" in dvc(["status"], repo, cli_env)
    assert hashes(repo / "data") == data_before, "the dataset folder must never be written to"
    assert json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())["n_synthetic"] == 100

    set_param(repo, "generate.per_class", 12)
    assert ran(dvc(["repro"], repo, cli_env)) == ["generate", "evaluate"]
    set_param(repo, "train.steps", 4)
    assert ran(dvc(["repro"], repo, cli_env)) == ["train", "generate", "evaluate"]
    extra = sorted((repo / "data" / "digits" / "3").iterdir())[0]
    shutil.copy(extra, extra.with_name("added.png"))
    assert ran(dvc(["repro"], repo, cli_env)) == list(STAGES)
    assert "up to date" in dvc(["status"], repo, cli_env)

    # Plots are declared (the HTML page needs internet for its scripts; --json does not).
    plots = json.loads(dvc(["plots", "show", "--json"], repo, cli_env))
    plots = plots["data"]
    assert {"outputs/gan/losses.csv", "outputs/gan/quality.csv"} <= set(plots)
    runs = plots["outputs/evaluation/runs.csv"][0]["content"]  # scatter_jitter: every seed, conditions side by side
    assert runs["encoding"]["x"]["field"] == "condition" and runs["encoding"]["y"]["field"] == "accuracy"
    metrics = json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())
    assert len(runs["data"]["values"]) == metrics["seeds"] * len(metrics["conditions"])
    for name in ("real+aug", "real+aug+synthetic"):  # DVC's confusion template counts actual/predicted rows
        confusion = plots[f"outputs/evaluation/confusion/{name}.csv"][0]["content"]
        assert confusion["spec"]["transform"][0]["groupby"] == ["predicted", "actual"]
        assert len(confusion["data"]["values"]) == metrics["seeds"] * metrics["n_test"]  # a row per prediction

    # Experiments: the gain of a variant next to the baseline's.
    sh(["git", "add", "-A"], repo, cli_env)
    sh(["git", "commit", "-qm", "baseline"], repo, cli_env)
    dvc(["exp", "run", "-S", "generate.per_class=15"], repo, cli_env)
    shown = json.loads(dvc(["exp", "show", "--json"], repo, cli_env))
    assert "gain.syn-aug" in json.dumps(shown) and "acc.aug" in json.dumps(shown)
    # The README's side-by-side view fits a 120-column terminal: no column collapsed to "…", no line longer.
    table = dvc(["exp", "show", "--no-pager", *EXP_SHOW_VIEW], repo, {**cli_env, "COLUMNS": "120"})
    assert "…" not in table and max(map(len, table.splitlines())) <= 120, table
    for column in ("acc.aug", "acc.syn", "gain.syn-aug", "generate.per_class"):
        assert column in table, table
    diff = json.loads(dvc(["metrics", "diff", "--all", "--json"], repo, cli_env))
    changed = diff["outputs/evaluation/headline.json"]
    assert len(changed) <= 20 and {"acc.real", "acc.aug", "acc.syn", "cas", "fd", "gain.syn-real"} <= set(changed)
    # the gain and its interval next to the baseline's
    assert all(set(changed[f"gain.syn-aug{end}"]) >= {"old", "new"} for end in ("", ".lo", ".hi"))
    assert json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())["n_synthetic"] == 150


def test_a_changed_outside_source_reruns_only_the_sources_and_evaluate_stages(digits_dir, cli_env, tmp_path):
    repo = make_repo(tmp_path / "repo", digits_dir, cli_env)
    shutil.copytree(digits_dir, repo / "sources" / "extra")  # real digits posing as an outside synthetic source
    set_param(repo, "evaluate.sources", "extra=sources/extra")
    assert ran(dvc(["repro"], repo, cli_env)) == list(STAGES)
    metrics = json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())
    assert "real+aug+extra" in metrics["conditions"] and "real+aug+synthetic" in metrics["conditions"]
    image = sorted((repo / "sources" / "extra" / "3").iterdir())[0]
    shutil.copy(image, image.with_name("another.png"))
    assert ran(dvc(["repro"], repo, cli_env)) == ["sources", "evaluate"]
    assert "up to date" in dvc(["status"], repo, cli_env)


def test_push_pull_restores_synthetic_set_and_checkpoint_byte_for_byte(digits_dir, cli_env, tmp_path):
    repo = make_repo(tmp_path / "repo", digits_dir, cli_env, track_data=True)
    dvc(["repro"], repo, cli_env)
    assert "up to date" in dvc(["status"], repo, cli_env)
    synthetic, gan = hashes(repo / "outputs" / "synthetic"), hashes(repo / "outputs" / "gan")
    dvc(["remote", "add", "-d", "local", str(tmp_path / "remote")], repo, cli_env)
    dvc(["push"], repo, cli_env)
    shutil.rmtree(repo / "outputs")
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc(["pull"], repo, cli_env)
    assert hashes(repo / "outputs" / "synthetic") == synthetic
    assert hashes(repo / "outputs" / "gan") == gan and "checkpoint.safetensors" in gan


def test_augment_run_inside_a_dvc_project_is_versioned(digits_dir, prefect_server, tmp_path):
    server_env = prefect_server  # the shared server: no temporary one started per run
    repo = make_repo(tmp_path / "repo", digits_dir, server_env)
    result = sh([str(BIN / "augment"), "run", "--per-class", "7", "--set", "evaluate.seeds=3"], repo, server_env)
    assert "params.yaml updated: generate.per_class=7, evaluate.seeds=3" in result.stderr
    assert "real+synthetic vs real" in result.stdout
    assert "up to date" in dvc(["status"], repo, server_env)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    assert lock["generate"]["params"]["params.yaml"]["generate"]["per_class"] == 7
    outs = {o["path"]: o for o in lock["generate"]["outs"]}
    assert outs["outputs/synthetic"]["nfiles"] == 7 * 10 + 4  # images, manifest.csv, summary.json, per_class.csv, .augment-stage
    metrics = json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())
    assert metrics["seeds"] == 3 and metrics["n_synthetic"] == 70
    again = sh([str(BIN / "augment"), "run"], repo, server_env)  # nothing changed: every stage is skipped
    assert "Running stage" not in again.stdout + again.stderr
    refused = sh([str(BIN / "augment"), "run", "--dvc", "--out", "elsewhere"], repo, server_env, check=False)
    assert refused.returncode == 1 and "add --no-dvc" in refused.stderr
    aside = sh([str(BIN / "augment"), "run", "--out", "elsewhere"], repo, server_env)  # another folder: a plain run
    assert "not versioned by DVC: --out elsewhere" in aside.stderr
    assert (repo / "elsewhere" / "evaluation" / "metrics.json").is_file() and "up to date" in dvc(["status"], repo, server_env)


def test_a_busy_dvc_lock_is_retried_and_the_run_completes(digits_dir, prefect_server, tmp_path):
    """A transient fault, injected for real: another process holds DVC's repo lock when the run starts."""
    import threading

    import zc.lockfile

    server_env = prefect_server  # the shared server: no temporary one started per run
    repo = make_repo(tmp_path / "repo", digits_dir, server_env)
    (repo / ".dvc" / "tmp").mkdir(exist_ok=True)
    held = zc.lockfile.LockFile(str(repo / ".dvc" / "tmp" / "lock"))  # what a concurrent `dvc` command holds
    run = subprocess.Popen([str(BIN / "augment"), "run"], cwd=repo, env=server_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines = []

    def read():
        for line in run.stdout:
            lines.append(line)
            if "Unable to acquire lock" in line and held is not None:
                held.close()  # the other process finishes after the first attempt failed

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert run.wait(timeout=600) == 0, "".join(lines)[-3000:]
    finally:
        run.kill()
        reader.join()
        held.close()
    output = "".join(lines)
    assert "Unable to acquire lock" in output and "Retry 1/2" in output
    assert "real+synthetic vs real" in output
    assert "up to date" in dvc(["status"], repo, server_env)
