"""Task runners for the fanned-out tasks: local (one at a time in this process) or Dask (a LocalCluster or an
existing cluster), and the torch thread count each task should use."""
from __future__ import annotations

import os
from typing import Optional

from flows.names import RUNNERS
from pipeline.errors import AugmentError



def task_runner(runner: str, dask_address: Optional[str] = None, dask_workers: Optional[int] = None,
                torch_threads: Optional[int] = None):
    """The Prefect task runner for `runner`, and the torch threads per task (None: leave torch's default)."""
    if runner == "local":
        if dask_address:
            raise AugmentError("--dask-address needs --runner dask")
        from prefect.task_runners import ThreadPoolTaskRunner

        # One task at a time: two trainings in threads of one process would fight over the same cores.
        return ThreadPoolTaskRunner(max_workers=1), torch_threads
    if runner != "dask":
        raise AugmentError(f"unknown runner '{runner}'; choose one of {', '.join(RUNNERS)}")
    from prefect_dask import DaskTaskRunner

    if dask_address:  # an existing cluster (dask-kubernetes, dask-jobqueue, Coiled, `dask scheduler` ...)
        return DaskTaskRunner(address=dask_address), torch_threads or 1
    # Default: one single-threaded worker process per core, so per-class trainings run side by side without
    # oversubscription.
    workers = dask_workers if dask_workers is not None else max(1, os.cpu_count() or 1)
    if workers < 1:
        raise AugmentError(f"--dask-workers must be at least 1, got {workers}")
    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    return DaskTaskRunner(cluster_kwargs=cluster), torch_threads or 1


def limit_torch_threads(threads: Optional[int]) -> None:
    """Set torch's intra-op threads in the process running a task (a Dask worker), so that workers sharing a
    machine do not oversubscribe its cores (OpenMP threads spinning against each other)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # only settable before the first parallel work in a process; intra-op is what matters
            pass
