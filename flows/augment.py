"""The Prefect flow: one task per pipeline stage, wired in order. No computation lives here."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import config as config_module
from pipeline import generate, ingest, storage
from pipeline.evaluate import stage as evaluate
from pipeline.gan import train
from flows import versioning


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(section: config_module.IngestConfig, out_dir: Path) -> dict:
    return ingest.run(section, out_dir)


@task(name="train", cache_policy=NO_CACHE)
def train_task(section: config_module.TrainConfig, ingest_dir: Path, out_dir: Path) -> dict:
    return train.run(section, ingest_dir, out_dir)


@task(name="generate", cache_policy=NO_CACHE)
def generate_task(section: config_module.GenerateConfig, gan_dir: Path, out_dir: Path) -> dict:
    return generate.run(section, gan_dir, out_dir)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(section: config_module.EvaluateConfig, ingest_dir: Path, synthetic_dir: Path, out_dir: Path) -> dict:
    return evaluate.run(section, ingest_dir, synthetic_dir, out_dir)


def _run_name() -> str:
    from prefect.runtime import flow_run

    dataset = Path(flow_run.parameters["params"]["ingest"]["dataset"]).name
    return f"augment-{dataset}-{datetime.now():%Y-%m-%d-%H%M}"


@flow(name="augment", flow_run_name=_run_name, log_prints=True)
def augment_flow(params: dict, out_dir: str) -> dict:
    """Ingest, train the GAN, generate, evaluate; return metrics.json's content."""
    config = config_module.from_dict(params)
    dirs = storage.stage_dirs(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    storage.write_json(Path(out_dir) / "config.json", config.to_dict())
    ingest_task(config.ingest, dirs["ingest"])
    train_task(config.train, dirs["ingest"], dirs["gan"])
    generate_task(config.generate, dirs["gan"], dirs["synthetic"])
    metrics = evaluate_task(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["evaluation"])
    _publish(metrics, out_dir)
    return metrics


@task(name="dvc-repro", cache_policy=NO_CACHE)
def dvc_repro_task(stage: str, repo: Path) -> None:
    versioning.repro_stage(stage, repo)


@flow(name="augment-dvc", flow_run_name=_run_name, log_prints=True)
def augment_dvc_flow(params: dict, repo: str) -> dict:
    """The same four stages run by `dvc repro` in a DVC project, so dvc.lock records what this run produced."""
    for stage in versioning.STAGES:
        dvc_repro_task.with_options(name=stage)(stage, Path(repo))
    metrics = versioning.read_metrics(Path(repo))
    _publish(metrics, str(Path(repo) / versioning.DVC_OUT))
    return metrics


def _publish(metrics: dict, out_dir: str) -> None:
    """The result table as a Prefect artifact, visible on the flow run's page."""
    rows = evaluate.result_rows(metrics)
    table = "\n".join(["| condition | accuracy (%) | runs / interval |", "|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows])
    create_markdown_artifact(markdown=table, key="augment-result", description=f"augment result for {out_dir}")
