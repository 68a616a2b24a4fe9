"""`augment run` inside a DVC project: overrides go into params.yaml, stages run through `dvc repro`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline import storage
from pipeline.config import Config
from pipeline.errors import AugmentError, TransientError

DVC_OUT = Path("outputs")  # the --out every stage command in dvc.yaml uses


def is_dvc_project(folder: Path) -> bool:
    """A DVC project root holding this pipeline's dvc.yaml."""
    return (folder / ".dvc").is_dir() and (folder / "dvc.yaml").is_file()


def write_overrides(params_path: Path, config: Config, overrides: list[str]) -> list[str]:
    """Record the overridden keys in params.yaml (comments kept), as `dvc exp run -S` does; return 'key=value's."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(params_path.read_text()) if params_path.is_file() else {}
    changed = []
    for item in overrides:
        section, key = item.split("=", 1)[0].strip().split(".")
        value = getattr(getattr(config, section), key)
        data.setdefault(section, {})
        if data[section].get(key) != value:
            data[section][key] = value
            changed.append(f"{section}.{key}={value}")
    if changed:
        with storage.atomic_path(params_path) as tmp, open(tmp, "w") as handle:
            yaml.dump(data, handle)
    return changed


def repro_stage(stage: str, repo: Path) -> None:
    """`dvc repro --single-item STAGE`: runs the stage if its deps or params changed, else skips it."""
    bin_dir = str(Path(sys.executable).parent)  # stage commands call `augment`: find this install's
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                            stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        kind = TransientError if "Unable to acquire lock" in result.stderr else AugmentError  # another dvc is busy
        raise kind(f"dvc repro of stage '{stage}' failed (exit code {result.returncode}); its error is printed above")


def read_metrics(repo: Path) -> dict:
    return storage.read_json(repo / DVC_OUT / "evaluation" / "metrics.json")
