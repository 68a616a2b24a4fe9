"""Outside synthetic sources (issue #33): folders of images the tool did not make, read like the dataset, checked for
copies of the held-out images, and measured beside (or without) the tool's own generator."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from pipeline import runs, storage
from pipeline.config import parse_sources
from pipeline.demo import export_digits
from pipeline.errors import AugmentError
from pipeline.stages import WITHOUT_GAN, run_stage


@pytest.fixture(scope="module")
def more_digits(tmp_path_factory) -> Path:
    """40 real digits per class: the first 20 are the dataset (digits_dir), the next 20 never are."""
    return export_digits(tmp_path_factory.mktemp("more") / "digits", per_class=40)


def extra_real(more_digits: Path, target: Path, classes=range(10)) -> Path:
    """Real digits the dataset does not hold, posing as a synthetic source."""
    for c in classes:
        (target / str(c)).mkdir(parents=True)
        for path in sorted((more_digits / str(c)).iterdir())[20:40]:
            shutil.copy(path, target / str(c) / path.name)
    return target


def noise(target: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c in range(10):
        (target / str(c)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(target / str(c) / f"{i}.png")
    return target


def test_source_names_are_checked_when_read():
    assert parse_sources("diffusion=data/d, renders = /srv/r") == {"diffusion": "data/d", "renders": "/srv/r"}
    for bad, message in (("aug=x", "not one of"), ("Big=x", "lower case"), ("a=x,a=y", "given twice"), ("a", "NAME=FOLDER"),
                         ("../x=y", "lower case")):
        with pytest.raises(AugmentError, match=message):
            parse_sources(bad)


def test_a_source_is_read_like_the_dataset_and_copies_of_held_out_images_are_excluded(digits_dir, more_digits, tmp_path):
    run = tmp_path / "run"
    extra = extra_real(more_digits, tmp_path / "extra")
    leaky = extra_real(more_digits, tmp_path / "leaky")
    config = tiny_config(digits_dir, f"evaluate.sources=extra={extra}, leaky={leaky}")
    run_stage("ingest", config, run)
    test_files = [r["file"] for r in csv.DictReader(open(run / "ingest" / "manifest.csv")) if r["split"] in ("test", "val")]
    for name in test_files[:6]:  # copies of held-out images, under new names, in their own class
        shutil.copy(digits_dir / name, leaky / Path(name).parent / f"copy-{Path(name).name}")
    for name in test_files[6:9]:  # near copies: the same digit, every pixel one step brighter (other pixel hashes)
        pixels = np.asarray(Image.open(digits_dir / name)).astype(np.int16)
        Image.fromarray(np.clip(pixels + 1, 0, 255).astype(np.uint8)).save(leaky / Path(name).parent / f"near-{Path(name).name}")
    Image.new("L", (8, 8), 40).save(leaky / "3" / "tiny.bmp")  # a readable BMP: kept
    (leaky / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = storage.sha256_file(leaky / "4" / "broken.png")
    summary = run_stage("sources", config, run)
    kept = summary["sources"]["leaky"]
    excluded = {e["file"]: e["reason"] for e in kept["excluded"]}
    assert kept["n_quarantined"] == 1 and kept["n_images"] == 200 + 1 + 9 - kept["n_excluded"]
    assert all(excluded[f"{Path(n).parent}/copy-{Path(n).name}"].startswith("the same pixels") for n in test_files[:6])
    assert all(excluded[f"{Path(n).parent}/near-{Path(n).name}"].startswith("a near copy") for n in test_files[6:9])
    assert kept["n_excluded"] <= 9 + 2  # the real digits of the source are distinct images: (nearly) all kept
    extra_summary = summary["sources"]["extra"]
    assert extra_summary["n_excluded"] <= 2 and extra_summary["n_images"] == 200 - extra_summary["n_excluded"]
    arrays = storage.load_arrays(run / "sources" / "extra")
    assert arrays["images"].shape == (extra_summary["n_images"], 1, 16, 16) and len(np.bincount(arrays["labels"])) == 10
    assert storage.sha256_file(leaky / "4" / "broken.png") == before  # the source folder is only read


def test_a_source_made_mostly_of_held_out_copies_is_refused(digits_dir, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(digits_dir)
    run_stage("ingest", config, run)
    copies = tmp_path / "copies"
    for row in csv.DictReader(open(run / "ingest" / "manifest.csv")):
        if row["split"] == "test":
            target = copies / row["class"] / Path(row["file"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(digits_dir / row["file"], target)
    config = tiny_config(digits_dir, f"evaluate.sources=copies={copies}")
    with pytest.raises(AugmentError, match="copies of the dataset's validation or test images; refused"):
        run_stage("sources", config, run)


def test_a_source_with_no_readable_image_is_refused_and_its_quarantine_list_is_where_the_error_says(digits_dir, tmp_path):
    run = tmp_path / "run"
    broken = tmp_path / "broken" / "3"
    broken.mkdir(parents=True)
    (broken / "a.png").write_bytes(b"not an image")
    (broken / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    config = tiny_config(digits_dir, f"evaluate.sources=broken={broken.parent}")
    run_stage("ingest", config, run)
    with pytest.raises(AugmentError, match="no image in .* could be read") as error:
        run_stage("sources", config, run)
    listed = Path(str(error.value).split("(see ")[1].rstrip(")"))
    assert listed == run / "sources" / "broken" / "quarantine.csv"
    assert sorted(row["file"] for row in csv.DictReader(open(listed))) == ["3/a.png", "3/b.jpg"]


def test_a_class_the_dataset_lacks_is_an_error_and_a_missing_class_is_reported(digits_dir, more_digits, tmp_path):
    odd = extra_real(more_digits, tmp_path / "odd", classes=range(3))
    (odd / "cat").mkdir()
    Image.new("L", (8, 8), 9).save(odd / "cat" / "x.png")
    run = tmp_path / "run"
    run_stage("ingest", tiny_config(digits_dir), run)
    with pytest.raises(AugmentError, match=r"class folders the dataset does not have: \['cat'\]"):
        run_stage("sources", tiny_config(digits_dir, f"evaluate.sources=odd={odd}"), run)
    shutil.rmtree(odd / "cat")
    summary = run_stage("sources", tiny_config(digits_dir, f"evaluate.sources=odd={odd}"), run)
    assert summary["sources"]["odd"]["missing_classes"] == [str(c) for c in range(3, 10)]


def test_outside_sources_are_measured_without_a_generator_and_exported(digits_dir, more_digits, tmp_path):
    extra, rubbish = extra_real(more_digits, tmp_path / "extra"), noise(tmp_path / "noise")
    config = tiny_config(digits_dir, f"evaluate.sources=extra={extra}, noise={rubbish}")
    run = tmp_path / "run"
    storage.write_json(run / "config.json", config.to_dict())
    for name in WITHOUT_GAN:
        metrics = run_stage(name, config, run)
    assert not (run / "gan").exists() and metrics["fidelity"] is None and metrics["n_synthetic"] == 0
    assert {"real+aug+extra", "real+aug+noise", "real+extra", "extra", "noise", "real+aug+extra@0.25"} <= set(metrics["conditions"])
    assert "real+aug+synthetic" not in metrics["conditions"]
    assert {"real+aug+extra_vs_real+aug", "real+aug+noise_vs_real+aug"} <= set(metrics["gain"])
    assert set(metrics["sources"]) == {"extra", "noise"}
    assert metrics["sources"]["noise"]["fidelity"]["frechet_distance"] > metrics["sources"]["extra"]["fidelity"]["frechet_distance"]
    # Bonferroni over every synthetic candidate: real+S, real+aug+S and real+aug+S@0.25 of each of the 2 sources
    assert metrics["recommendation"]["validation"]["gain"]["level"] == pytest.approx(1 - 0.05 / 6)
    choice = metrics["recommendation"]  # the way to more evidence is named where it could change the answer
    assert ("set evaluate.folds=5 (--folds 5)" in choice["reason"]) == (not choice["use_synthetic"])
    page = (run / "evaluation" / "report.html").read_text()
    assert "source &#x27;extra&#x27;" in page and "source &#x27;noise&#x27;" in page and "No generator was trained" in page
    headline = (run / "evaluation" / "headline.json").read_text()
    assert "extra" not in headline and "noise" not in headline  # outside sources stay out of the DVC metric
    runs.render_report(run)  # re-rendered from the run folder alone
    summary = runs.export_training_set(run, tmp_path / "export", "real+aug+extra")
    rows = list(csv.DictReader(open(tmp_path / "export" / "manifest.csv")))
    outside = [r for r in rows if r["source"] == "synthetic"]
    assert summary["n_synthetic"] == len(outside) == metrics["sources"]["extra"]["n_images"] and all(r["origin"].startswith("extra:") for r in outside)
    assert sum(float(r["weight"]) for r in outside) == pytest.approx(0.5)


@pytest.mark.slow
def test_augment_evaluate_through_prefect_with_three_sources(digits_dir, more_digits, finished_run, prefect_server, tmp_path):
    """The acceptance shape, tiny: extra real images, noise, and the tool's own GAN images from an earlier run as a
    third source, in one `augment evaluate --folds 2` call through the real CLI and a Prefect flow."""
    import subprocess

    from conftest import BIN, TINY

    server_env = prefect_server  # the shared server: no temporary one started per run
    extra, rubbish = extra_real(more_digits, tmp_path / "extra"), noise(tmp_path / "noise")
    before = storage.sha256_file(next((extra / "3").iterdir()))
    sets = [item for override in TINY for item in ("--set", override)]
    command = [str(BIN / "augment"), "evaluate", "--dataset", str(digits_dir), "--out", str(tmp_path / "run"),
               "--synthetic", f"extra={extra}", "--synthetic", f"noise={rubbish}",
               "--synthetic", f"ours={finished_run / 'synthetic'}", "--folds", "2",
               "--set", "evaluate.trained_on_data=ours", *sets]  # ours: a GAN trained on (nearly) these digits
    result = subprocess.run(command, env=server_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real+aug+extra vs real+aug" in result.stdout and "real+aug+ours vs real+aug" in result.stdout
    metrics = storage.read_json(tmp_path / "run" / "evaluation" / "metrics.json")
    assert set(metrics["sources"]) == {"extra", "noise", "ours"} and not (tmp_path / "run" / "gan").exists()
    cv = metrics["recommendation"]["cross_validation"]  # --folds 2: chosen by cross-validation; ours is not a candidate
    assert cv["folds"] == 2 and "2-fold cross-validation" in metrics["recommendation"]["reason"]
    assert {"real+ours", "real+aug+ours"} <= set(cv["left_out"]) and "source 'ours'" in cv["why_left_out"]
    judged = set(metrics["recommendation"]["validation"]["accuracy"])
    assert {"real+aug+extra", "real+aug+noise"} <= judged and not judged & set(cv["left_out"])
    assert "(chosen by cross-validation)" in result.stdout
    config = storage.read_json(tmp_path / "run" / "config.json")
    assert all(Path(folder.split("=")[1]).is_absolute() for folder in config["evaluate"]["sources"].split(", "))
    assert storage.sha256_file(next((extra / "3").iterdir())) == before
    refused = subprocess.run([str(BIN / "augment"), "evaluate", "--dataset", str(digits_dir), "--out", str(extra / "out"),
                              "--synthetic", f"extra={extra}"], env=server_env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "inside the synthetic source 'extra'" in refused.stderr
    assert not (extra / "out").exists()
