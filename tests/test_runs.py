"""Commands on a finished run: `augment generate --run`, `augment report --run`, `augment export --run`, on a real
(tiny) run of the digits; the export is loaded with torchvision's ImageFolder and trains a model outside the tool."""
from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from conftest import BIN
from pipeline import runs, storage
from pipeline.errors import AugmentError

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`


def _manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("setting", ["real+aug", "real+aug+synthetic", "real+aug+resampled", "real+aug+topup"])
def test_export_writes_an_imagefolder_whose_weights_reproduce_the_batch_mix(finished_run, tmp_path, setting):
    summary = runs.export_training_set(finished_run, tmp_path / "export", setting)
    rows = _manifest(tmp_path / "export")
    stats = storage.read_json(finished_run / "ingest" / "stats.json")
    real = [r for r in rows if r["source"] == "real"]
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    assert len(real) == stats["n_train"]  # every real training image, no validation or test image
    assert {r["origin"] for r in real} == {r["file"] for r in _manifest(finished_run / "ingest") if r["split"] == "train"}
    weights = np.array([float(r["weight"]) for r in rows])
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    share = sum(float(r["weight"]) for r in synthetic)
    per_class = Counter()
    for r in rows:
        per_class[r["class"]] += float(r["weight"])
    if setting == "real+aug":
        assert not synthetic and np.allclose(weights, 1 / len(real))
    elif setting == "real+aug+synthetic":  # evaluate.synthetic_share of every batch: 16 of 32 slots
        assert share == pytest.approx(0.5) and len(synthetic) == 10 * 10
    elif setting == "real+aug+resampled":  # every class equally likely
        assert not synthetic and all(v == pytest.approx(0.1) for v in per_class.values())
    else:  # top-up: class 0 (4 real training images) gets synthetic images, and every class is equally likely
        assert synthetic and {r["class"] for r in synthetic} == {"0"}
        assert all(v == pytest.approx(0.1) for v in per_class.values())
    assert summary["setting"] == setting and summary["n_real"] == len(real) and summary["n_synthetic"] == len(synthetic)

    dataset = torchvision.datasets.ImageFolder(str(tmp_path / "export"))  # loads outside the tool
    assert len(dataset) == len(rows) and dataset.classes == sorted(per_class)


def test_exported_set_trains_a_model_outside_the_tool(finished_run, tmp_path):
    runs.export_training_set(finished_run, tmp_path / "export", "real+aug+resampled")
    transform = torchvision.transforms.Compose([torchvision.transforms.Grayscale(), torchvision.transforms.ToTensor()])
    dataset = torchvision.datasets.ImageFolder(str(tmp_path / "export"), transform=transform)
    weight_of = {r["file"]: float(r["weight"]) for r in _manifest(tmp_path / "export")}
    weights = [weight_of[str(Path(path).relative_to(tmp_path / "export"))] for path, _ in dataset.samples]
    sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=2000, replacement=True,
                                                     generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=50, sampler=sampler)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.tensor(dataset.targets)
    assert (model(x).argmax(1) == y).float().mean() > 0.6  # chance is 0.1


def test_export_refuses_a_non_empty_folder_and_the_dataset(finished_run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(AugmentError, match="not an empty folder"):
        runs.export_training_set(finished_run, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    dataset = Path(runs.load_config(finished_run).ingest.dataset)
    with pytest.raises(AugmentError, match="inside"):
        runs.export_training_set(finished_run, dataset / "exported")
    with pytest.raises(AugmentError, match="choose one of"):
        runs.export_training_set(finished_run, tmp_path / "x", "synthetic")  # trains on no real image
    assert not (tmp_path / "x").exists() and not (dataset / "exported").exists()


def test_generate_report_and_export_on_a_run_through_the_cli(finished_run, cli_env, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(run)], check=True)
    before = (run / "evaluation" / "metrics.json").read_bytes()
    (run / "evaluation" / "report.html").unlink()
    shown = subprocess.run([str(BIN / "augment"), "report", "--run", str(run)], env=cli_env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "real+aug" in shown.stdout and (run / "evaluation" / "report.html").is_file()
    as_json = subprocess.run([str(BIN / "augment"), "report", "--run", str(run), "--json"], env=cli_env, capture_output=True,
                             text=True, timeout=300)
    assert json.loads(as_json.stdout) == json.loads(before)

    more = subprocess.run([str(BIN / "augment"), "generate", "--run", str(run), "--per-class", "14"], env=cli_env,
                          capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    assert Counter(p.parent.name for p in (run / "synthetic").glob("*/*.png")) == {str(c): 14 for c in range(10)}
    assert json.loads((run / "config.json").read_text())["generate"]["per_class"] == 14
    assert "stale" in more.stderr and runs.stale_reason(run).startswith("the synthetic set was regenerated")
    assert (run / "gan" / "generator_ema.safetensors").read_bytes() == (finished_run / "gan" / "generator_ema.safetensors").read_bytes()
    subprocess.run([str(BIN / "augment"), "report", "--run", str(run)], env=cli_env, capture_output=True, timeout=300, check=True)
    assert "regenerated after this evaluation" in (run / "evaluation" / "report.html").read_text()
    assert "Stale:" in (run / "evaluation" / "report.html").read_text()
    refused = subprocess.run([str(BIN / "augment"), "export", "--run", str(run), "--out", str(tmp_path / "export")], env=cli_env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "stale" in refused.stderr and not (tmp_path / "export").exists()

    evaluated = subprocess.run([str(BIN / "augment"), "stage", "evaluate", "--out", str(run), "--params", str(run / "config.json")],
                               env=cli_env, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    assert runs.stale_reason(run) is None
    exported = subprocess.run([str(BIN / "augment"), "export", "--run", str(run), "--out", str(tmp_path / "export")], env=cli_env,
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert storage.read_json(tmp_path / "export" / "summary.json")["recommended"] is True


def test_commands_on_a_folder_that_is_not_a_run_are_one_line_errors(cli_env, tmp_path):
    for command in (["report", "--run", str(tmp_path)], ["generate", "--run", str(tmp_path), "--per-class", "3"],
                    ["export", "--run", str(tmp_path), str(tmp_path / "out")]):
        result = subprocess.run([str(BIN / "augment"), *command], env=cli_env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "is not a run folder: it has no config.json" in result.stderr
        assert "Traceback" not in result.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(digits_dir, cli_env, tmp_path):
    data = tmp_path / "data"
    for part, keep in (("train", slice(0, 15)), ("test", slice(15, 20))):  # the dataset brings its own test split
        for folder in digits_dir.iterdir():
            (data / part / folder.name).mkdir(parents=True)
            for file in sorted(folder.glob("*.png"))[keep]:
                (data / part / folder.name / file.name).write_bytes(file.read_bytes())
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = subprocess.run([str(BIN / "augment"), "run", "--dataset", str(data), "--per-class", "7", "--dry-run",
                             "--set", "ingest.image_size=16"], env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no runs/, no config.json, nothing
    assert "per_class: 7" in result.stdout and "batch_size: 256" in result.stdout  # the resolved config, device sizes filled
    rows = [line.split("│")[1:-1] for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 10
    for cells in rows:  # 15 training files: 3 to validation (20%), 12 to train; the 5 test files; 7 synthetic
        assert [c.strip() for c in cells[1:5]] == ["12", "3", "5", "7"]
    assert "synthetic images: 70" in result.stdout and "estimated time on cpu: train" in result.stdout
    assert "dry run: nothing was written" in result.stdout
