"""The package as a user installs it: a wheel built from pyproject.toml, not the editable source tree. Every module of
pipeline/ and flows/ must be inside it and import from it, and `augment --version` must run from it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # builds a wheel (pip): left out of `make test-fast`

IMPORT_ALL = """
import importlib, sys
site, names = sys.argv[1], sys.argv[2:]
sys.path.insert(0, site)  # ahead of the editable install's finder, which maps the packages to the source tree
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(site), f"{name} imported from {module.__file__}, not the wheel"
sys.argv = ["augment", "--version"]
from flows.cli import app
app()
"""


def _modules() -> list[str]:
    return sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for package in ("pipeline", "flows") for path in (ROOT / package).rglob("*.py"))


def test_the_wheel_holds_every_module_and_runs_from_its_own_files(tmp_path):
    source = tmp_path / "source"  # built from a copy: pip builds in the tree it is given (build/, *.egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("pipeline", "flows"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "--quiet", "--wheel-dir", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("augment-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # installing a pure-Python wheel without its dependencies is unpacking it
        archive.extractall(site)
    modules = _modules()
    assert "pipeline.metrics.stats" in modules and "flows.cli" in modules
    missing = [m for m in modules if not (site / (m.replace(".", "/") + ".py")).is_file()
               and not (site / m.replace(".", "/") / "__init__.py").is_file()]
    assert not missing, f"not in the wheel: {missing}"
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, str(site), *modules], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("augment 0.") and "torch" in result.stdout
