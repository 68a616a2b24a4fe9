"""Shared fixtures: tiny real images (scikit-learn digits), isolated Prefect/DVC settings, the ../shared data."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from pipeline import config as config_module
from pipeline.demo import export_digits

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUGMENT_SHARED", ROOT.parent / "shared"))
BIN = Path(sys.executable).parent

# Small enough that a whole pipeline takes seconds on one CPU core, large enough to exercise every code path.
TINY = ["ingest.image_size=16", "train.steps=6", "train.batch_size=16", "train.width=32", "train.sample_every=3",
        "train.checkpoint_every=3", "train.probe_steps=20", "generate.per_class=10", "generate.filter=none", "evaluate.steps=20", "evaluate.seeds=2", "evaluate.batch_size=32"]


def tiny_config(dataset: Path | str, *more: str) -> config_module.Config:
    return config_module.load(None, [f"ingest.dataset={dataset}", *TINY, *more])


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """20 real 8x8 digit images per class as an ImageFolder (read-only by convention: tests copy before changing)."""
    return export_digits(tmp_path_factory.mktemp("digits") / "digits", per_class=20)


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """Environment for running the `augment`, `dvc` and `git` commands: isolated Prefect home, no telemetry."""
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    })
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = SHARED / "data" / "mnist10k"
    if not path.is_dir():
        pytest.skip(f"needs the real MNIST ImageFolder at {path} (../shared beside the project); not in a user's clone")
    return path


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(cli_env, tmp_path_factory):
    """A real `prefect server start` on a free loopback port; yields cli_env pointed at it (PREFECT_API_URL).
    Tests stop their own serve/worker processes first: a server stopped before them hangs them on SIGTERM."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    env = {**cli_env, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server-home"))}
    log = open(tmp_path_factory.mktemp("prefect-server") / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"true":
                break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"prefect server did not start; see {log.name}")
        time.sleep(0.5)
    yield {**env, "PREFECT_API_URL": url}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def small_digits(digits_dir: Path, target: Path, classes: int = 3) -> Path:
    """The first `classes` classes of digits_dir: per-class fan-out and scheduled runs stay a few seconds long."""
    for name in sorted(p.name for p in digits_dir.iterdir())[:classes]:
        shutil.copytree(digits_dir / name, target / name)
    return target


@pytest.fixture(scope="session")
def finished_run(digits_dir, tmp_path_factory) -> Path:
    """A run folder as `augment run` leaves it (config.json + the four stages, run without Prefect), imbalanced so
    that re-sampling and top-up are evaluated too: class 0 keeps 6 of its 20 images. Shared by every test that
    only reads it; a test that changes a run copies it first (`cp -a`)."""
    from pipeline.stages import STAGES, run_stage
    from pipeline import storage

    data = tmp_path_factory.mktemp("data") / "digits"
    for folder in digits_dir.iterdir():
        files = sorted(folder.glob("*.png"))[: 6 if folder.name == "0" else None]
        (data / folder.name).mkdir(parents=True)
        for file in files:
            (data / folder.name / file.name).write_bytes(file.read_bytes())
    out = tmp_path_factory.mktemp("run") / "digits"
    config = tiny_config(data, "evaluate.rebalance=on")
    storage.write_json(out / "config.json", config.to_dict())
    for name in STAGES:
        run_stage(name, config, out)
    return out
