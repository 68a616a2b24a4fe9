"""The four stages by name: the one place that maps a stage to its pipeline function and its folders."""
from __future__ import annotations

from pathlib import Path

from flows.names import STAGES
from pipeline import generate, ingest, runfolder, storage
from pipeline.config import Config
from pipeline.errors import AugmentError, environment_errors
from pipeline.evaluate import stage as evaluate
from pipeline.gan import per_class, train


def run_stage(name: str, config: Config, out_dir: str | Path) -> dict:
    """Run one stage inside out_dir's fixed layout (it reads what earlier stages wrote there)."""
    if name not in STAGES:
        raise AugmentError(f"unknown stage '{name}'; choose one of {', '.join(STAGES)}")
    with environment_errors(), runfolder.open_run(out_dir, {"dataset": config.ingest.dataset}):
        return _run(name, config, storage.stage_dirs(out_dir))  # every stage replaces its folder in out_dir


def _run(name: str, config: Config, dirs: dict[str, Path]) -> dict:
    if name == "ingest":
        return ingest.run(config.ingest, dirs["ingest"])
    if name == "train":
        if config.train.mode == "per_class":  # sequential here; the Prefect flow fans the classes out instead
            return per_class.run(config.train, dirs["ingest"], dirs["gan"])
        return train.run(config.train, dirs["ingest"], dirs["gan"])
    if name == "generate":
        return generate.run(config.generate, dirs["gan"], dirs["synthetic"], dirs["ingest"])
    return evaluate.run(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["gan"], dirs["evaluation"])
