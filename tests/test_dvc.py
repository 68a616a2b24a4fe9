"""`dvc repro` with the real dvc and git CLIs in a temporary repo holding the project and a tiny dataset."""
from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from conftest import ROOT, TINY


def sh(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_dvc_repro_runs_all_stages_then_is_up_to_date(digits_dir, cli_env, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "pipeline", repo / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(digits_dir, repo / "data" / "digits")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for override in TINY:
        dotted, value = override.split("=")
        section, key = dotted.split(".")
        params[section][key] = yaml.safe_load(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    sh(["git", "init", "-q"], repo, cli_env)
    sh(["dvc", "init", "-q"], repo, cli_env)
    sh(["git", "add", "-A"], repo, cli_env)
    sh(["git", "commit", "-qm", "project"], repo, cli_env)
    output = sh(["dvc", "repro"], repo, cli_env)
    for stage in ("ingest", "train", "generate", "evaluate"):
        assert f"Running stage '{stage}'" in output
    metrics = json.loads((repo / "outputs" / "evaluation" / "metrics.json").read_text())
    assert metrics["seeds"] == 2 and metrics["n_synthetic"] == 100
    assert len(list((repo / "outputs" / "synthetic" / "5").glob("*.png"))) == 10
    assert "up to date" in sh(["dvc", "status"], repo, cli_env)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "train", "generate", "evaluate"}
    shown = sh(["dvc", "metrics", "show", "--json"], repo, cli_env)
    assert "accuracy_mean" in shown
