"""Which code a benchmark's figures come from: one definition for the benchmarks that record their commit."""
from __future__ import annotations

import subprocess
from pathlib import Path


def commit_of(script: str | Path) -> str:
    """The project's short commit, '+dirty' when pipeline/ or the benchmark `script` (its __file__) differ from it.
    A frozen copy (pipeline/ and benchmarks/ copied out so a long run is not changed under it; no git) carries the
    commit in a COMMIT file written when it was copied."""
    script = Path(script).resolve()
    root = script.parents[1]
    frozen = root / "COMMIT"
    if frozen.is_file():
        return frozen.read_text().strip()
    run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=root).stdout.strip()
    dirty = run("status", "--porcelain", "--", "pipeline", str(script.relative_to(root)))
    return (run("rev-parse", "--short", "HEAD") or "unknown") + ("+dirty" if dirty else "")
