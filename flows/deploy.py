"""Scheduled deployments of the augment flow: served by this process (`augment serve`) or registered on a work
pool for a separate worker (`augment deploy`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pipeline.config import Config
from pipeline.errors import AugmentError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/augment.py:augment_flow"  # also in prefect.yaml
CONCURRENCY = 1  # one run of a deployment at a time: a nightly run that overruns delays the next, never overlaps it


def flow_parameters(config: Config, out_parent: Path, runner: str, dask_address: Optional[str],
                    dask_workers: Optional[int], torch_threads: Optional[int]) -> dict[str, Any]:
    """The deployment's fixed parameters: absolute paths (a worker runs elsewhere), one new folder per run."""
    from pipeline.stages import absolute_inputs

    params = absolute_inputs(config).to_dict()
    return {"params": params, "out_dir": str(out_parent.resolve()), "run_folder": True, "runner": runner,
            "dask_address": dask_address, "dask_workers": dask_workers, "torch_threads": torch_threads}


def check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise AugmentError(f"--cron '{cron}' is not a cron expression; e.g. \"0 3 * * *\" is every day at 03:00") from None


def serve(name: str, cron: str, parameters: dict[str, Any]) -> None:
    """Register deployment augment/<name> with the cron schedule and run its flow runs in this process until Ctrl-C."""
    from prefect import serve as prefect_serve

    from flows.augment import augment_flow

    prefect_serve(augment_flow.to_deployment(name=name, cron=cron, parameters=parameters, concurrency_limit=CONCURRENCY),
                  print_starting_message=True)


def deploy(name: str, cron: str, pool: str, parameters: dict[str, Any]) -> str:
    """Register deployment augment/<name> on work pool `pool` (a process pool is created when missing); the code
    is pulled from this project folder, so the worker must see it (process pools; see README for Docker and
    Kubernetes). Returns the deployment id."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from flows.augment import augment_flow

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    source = augment_flow.from_source(source=str(PROJECT_ROOT), entrypoint=ENTRYPOINT)
    deployment_id = source.deploy(name=name, work_pool_name=pool, cron=cron, parameters=parameters, build=False,
                                  push=False, print_next_steps=False, concurrency_limit=CONCURRENCY)
    return str(deployment_id)
