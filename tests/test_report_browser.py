"""report.html in a real browser: headless Chromium renders it offline, non-blank, with the verdict on top."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from pipeline import generate, ingest
from pipeline.evaluate import stage as evaluate
from pipeline.gan import train

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VERDICT_COLOURS = {(0xD9, 0xF2, 0xD9), (0xF8, 0xD7, 0xD7), (0xEE, 0xEE, 0xEE)}  # gain, loss, neutral boxes


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_report_renders_in_headless_chromium(digits_dir, tmp_path):
    config = tiny_config(digits_dir)
    ingest.run(config.ingest, tmp_path / "ingest")
    train.run(config.train, tmp_path / "ingest", tmp_path / "gan")
    generate.run(config.generate, tmp_path / "gan", tmp_path / "synthetic")
    evaluate.run(config.evaluate, tmp_path / "ingest", tmp_path / "synthetic", tmp_path / "gan", tmp_path / "evaluation")
    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1280,2000", f"--screenshot={shot}", (tmp_path / "evaluation" / "report.html").as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20, "the page must not be blank"
    top = {tuple(p) for p in pixels[:400].reshape(-1, 3)}
    assert top & VERDICT_COLOURS, "a verdict box must be on screen at the top of the page"
    dark = (pixels[400:].sum(axis=2) < 200).mean()
    assert dark > 0.005, "plots and sample grids below the verdict must be drawn"
