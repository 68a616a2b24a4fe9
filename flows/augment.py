"""The Prefect flows: the stages of pipeline.stages in order, each a task, or mapped over the task runner when the stage
has units to fan out over (per-class training and generation, classifier seeds). No computation lives here."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import versioning
from flows.names import RUNNERS
from flows.runners import limit_torch_threads, task_runner
from flows.tables import result_rows
from pipeline import config as config_module
from pipeline import device, runfolder, storage
from pipeline.errors import TransientError, reports_environment_errors
from pipeline.stages import STAGES, WITHOUT_GAN, absolute_inputs, inputs


def _worth_retrying(task, task_run, state) -> bool:
    """Retry only what is known to pass on a second try (TransientError: a busy DVC lock). A user error or an
    environment failure (disk full, read-only) fails the same way again, and a bug would repeat an hour-long stage
    for nothing."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


# A retried stage resumes (training from its checkpoint, generation from the images already written).
RETRY = dict(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=_worth_retrying)


@task(**RETRY)
@reports_environment_errors
def stage_task(name: str, config: config_module.Config, out_dir: str) -> dict:
    """A whole stage (pipeline.stages), in the flow's process."""
    return STAGES[name].run(config, storage.stage_dirs(out_dir))


@task(**RETRY)
@reports_environment_errors
def unit_task(name: str, config: config_module.Config, out_dir: str, unit, torch_threads: Optional[int]):
    """One unit of a stage's fan-out (a class, a classifier seed), in whichever process the task runner picks."""
    limit_torch_threads(torch_threads)
    print(f"{name} {unit} in process {os.getpid()} on {socket.gethostname()}")  # shows where Dask ran it
    return STAGES[name].run_unit(config, storage.stage_dirs(out_dir), unit)


@task(**RETRY)
@reports_environment_errors
def merge_task(name: str, config: config_module.Config, out_dir: str) -> dict:
    """A fanned-out stage's outputs, merged from its units'."""
    return STAGES[name].merge(config, storage.stage_dirs(out_dir))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_worth_retrying)
def dvc_repro_task(name: str, repo: Path) -> None:
    versioning.repro_stage(name, repo)


def _run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters["params"]  # the Config Prefect built, or the mapping it was built from
    dataset = Path(params["ingest"]["dataset"] if isinstance(params, dict) else params.ingest.dataset).name
    return f"augment-{dataset}-{datetime.now():%Y-%m-%d-%H%M}"


@flow(name="augment-stages", flow_run_name="stages-{out_dir}", log_prints=True)
def stages_flow(config: config_module.Config, out_dir: str, torch_threads: Optional[int] = None, gan: bool = True) -> dict:
    """The stages in order (without train and generate when gan is false); a stage with units to fan out over is
    mapped over the flow's task runner, then merged. Which units a stage has is the stage's own business
    (pipeline.stages)."""
    result = {}
    for name, stage in STAGES.items():
        if not gan and name not in WITHOUT_GAN:
            continue
        units = stage.units(config, storage.stage_dirs(out_dir))
        if not units:
            result = stage_task.with_options(name=name)(name, config, out_dir)
            continue
        futures = [unit_task.with_options(name=f"{name}-{unit}").submit(name, config, out_dir, unit, torch_threads)
                   for unit in units]
        [future.result() for future in futures]  # a failure re-raises as itself: a user error stays one line
        result = merge_task.with_options(name=f"{name}-merge")(name, config, out_dir)
    return result


@flow(name="augment", flow_run_name=_run_name, log_prints=True)
def augment_flow(params: config_module.Config, out_dir: str, run_folder: bool = False, runner: Literal[RUNNERS] = "local",
                 dask_address: Optional[str] = None, dask_workers: Optional[int] = None,
                 torch_threads: Optional[int] = None, gan: bool = True) -> dict:
    """Ingest, train the GAN, generate, read the outside sources, evaluate; return metrics.json's content. gan=False
    measures the outside sources (evaluate.sources) alone, with no generator trained. With run_folder, out_dir is a
    parent and this run writes to its own new folder in it (scheduled runs never overwrite each other).
    params is typed, so the Prefect UI shows a form per section (a plain mapping of sections is accepted and checked
    the same way: unknown keys are refused)."""
    config = device.resolve(_checked(params))  # config.json records the device's sizes
    # Before anything is written: a deployment's out_dir can be overridden in the Prefect UI, past the CLI's check.
    for what, folder in inputs(config).items():
        runfolder.check_output_location(folder, out_dir, what)
    if run_folder:
        out_dir = str(Path(out_dir) / _run_folder_name(config))
    print(f"writing to {out_dir}")
    # config.json names the inputs by their absolute paths: commands run later from another folder (export's
    # overlap check, a re-evaluation) must find the same folders.
    with runfolder.open_run(out_dir, inputs(config)):
        storage.write_json(Path(out_dir) / "config.json", absolute_inputs(config).to_dict())
        runner_instance, threads = task_runner(runner, dask_address, dask_workers, torch_threads)
        result = stages_flow.with_options(task_runner=runner_instance)(config, out_dir, threads, gan)
    _publish(result, out_dir)
    return {**result, "out_dir": out_dir}


def _checked(params: config_module.Config | dict) -> config_module.Config:
    """The Config the caller passed, or the one Prefect built from a deployment's parameters: the config's own rules
    (ranges, choices) apply to it too, once, here at the flow's entry."""
    if isinstance(params, dict):
        return config_module.from_dict(params)
    config_module.validate(params)
    return params


def _run_folder_name(config: config_module.Config) -> str:
    """<dataset>-<UTC date and time>-<flow-run id prefix>: sortable, and unique even for two runs in one second."""
    from prefect.runtime import flow_run

    return f"{Path(config.ingest.dataset).name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{str(flow_run.id)[:8]}"


@flow(name="augment-dvc", flow_run_name=_run_name, log_prints=True)
def augment_dvc_flow(params: config_module.Config, repo: str) -> dict:
    """The same four stages run by `dvc repro` in a DVC project, so dvc.lock records what this run produced
    (params is what the CLI wrote to params.yaml; recorded on the flow run)."""
    for name in STAGES:
        dvc_repro_task.with_options(name=name)(name, Path(repo))
    metrics = versioning.read_metrics(Path(repo))
    _publish(metrics, str(Path(repo) / versioning.DVC_OUT))
    return metrics


def _publish(metrics: dict, out_dir: str) -> None:
    """The result on the flow run's page: the table as markdown and as a table artifact, and a link to report.html."""
    rows = result_rows(metrics)
    table = ["| condition | accuracy (%) | runs / verdict |", "|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows]
    create_markdown_artifact(markdown=f"Outputs: `{out_dir}`\n\n" + "\n".join(table), key="augment-result",
                             description=f"augment result for {out_dir}")
    create_table_artifact(table=[{"condition": r[0], "accuracy (%)": r[1], "runs / verdict": r[2]} for r in rows],
                          key="augment-table", description=f"augment result for {out_dir}")
    report = Path(out_dir).resolve() / "evaluation" / "report.html"
    if report.is_file():
        create_link_artifact(link=report.as_uri(), link_text="report.html", key="augment-report",
                             description=f"the report of {out_dir} (on the machine that ran it)")
