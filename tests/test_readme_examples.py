"""The `augment run` examples of the README and docs/, executed as written from a folder laid out like the project root (params.yaml,
dvc.yaml, a DVC project, ./data and ./photos), with --dry-run appended so each one parses, resolves and plans
without training; the commands on a run folder are run for real in tests/test_runs.py."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, ROOT, copy_tree

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [" ".join(line.split()) for page in PAGES for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)
            for line in block.replace("\\\n", " ").splitlines() if line.strip().startswith("augment run ")]


def test_the_readme_has_run_examples():
    assert len(EXAMPLES) >= 5, EXAMPLES


@pytest.fixture(scope="module")
def project_root(digits_dir, cli_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, env=cli_env, check=True)
    copy_tree(digits_dir, root / "data")
    for source in ("diffusion", "renders"):  # the outside synthetic sources the examples name (gen/<name>)
        copy_tree(digits_dir, root / "gen" / source)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sample_photos.py"), str(root / "photos")], check=True, capture_output=True)
    return root


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_readme_run_example_works_from_the_project_root(example, project_root, cli_env):
    words = shlex.split(example.split("#")[0])
    for i, word in enumerate(words[:-1]):  # folders of other machines (a shared file system, /tmp) -> this project's
        if word == "--dataset" and not words[i + 1].startswith("./"):
            words[i + 1] = "./photos" if "photo" in words[i + 1] else "./data"
        if word == "--out" and words[i + 1].startswith("/"):
            words[i + 1] = "runs/elsewhere"
    result = subprocess.run([str(BIN / "augment"), *words[1:], "--dry-run"], cwd=project_root, env=cli_env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{example}\n{result.stderr[-2000:]}"
    assert "dry run: nothing was written" in result.stdout
    assert not (project_root / "runs").exists() and not (project_root / "outputs").exists()
