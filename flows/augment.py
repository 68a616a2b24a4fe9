"""The Prefect flows: one task per pipeline stage, wired in order. No computation lives here."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import versioning
from flows.stages import STAGES, run_stage
from pipeline import config as config_module
from pipeline import storage
from pipeline.errors import AugmentError, TransientError
from pipeline.evaluate.stage import result_rows


def _worth_retrying(task, task_run, state) -> bool:
    """Retry infrastructure failures, never a user error (a bad image or option fails the same way again)."""
    try:
        state.result()
    except TransientError:
        return True
    except AugmentError:
        return False
    except Exception:
        return True
    return False


# Stages touch the file system and can fail transiently; a retried stage resumes (training from its checkpoint,
# generation from the images already written).
@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=_worth_retrying)
def stage_task(name: str, config: config_module.Config, out_dir: str) -> dict:
    return run_stage(name, config, out_dir)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_worth_retrying)
def dvc_repro_task(name: str, repo: Path) -> None:
    versioning.repro_stage(name, repo)


def _run_name() -> str:
    from prefect.runtime import flow_run

    dataset = Path(flow_run.parameters["params"]["ingest"]["dataset"]).name
    return f"augment-{dataset}-{datetime.now():%Y-%m-%d-%H%M}"


@flow(name="augment", flow_run_name=_run_name, log_prints=True)
def augment_flow(params: dict, out_dir: str) -> dict:
    """Ingest, train the GAN, generate, evaluate; return metrics.json's content."""
    config = config_module.from_dict(params)
    storage.write_json(Path(out_dir) / "config.json", config.to_dict())
    for name in STAGES:
        result = stage_task.with_options(name=name)(name, config, out_dir)
    _publish(result, out_dir)
    return result


@flow(name="augment-dvc", flow_run_name=_run_name, log_prints=True)
def augment_dvc_flow(params: dict, repo: str) -> dict:
    """The same four stages run by `dvc repro` in a DVC project, so dvc.lock records what this run produced."""
    for name in STAGES:
        dvc_repro_task.with_options(name=name)(name, Path(repo))
    metrics = versioning.read_metrics(Path(repo))
    _publish(metrics, str(Path(repo) / versioning.DVC_OUT))
    return metrics


def _publish(metrics: dict, out_dir: str) -> None:
    """The result table as a Prefect artifact, visible on the flow run's page."""
    rows = ["| condition | accuracy (%) | runs / verdict |", "|---|---|---|"] + [f"| {' | '.join(r)} |" for r in result_rows(metrics)]
    create_markdown_artifact(markdown="\n".join(rows), key="augment-result", description=f"augment result for {out_dir}")
