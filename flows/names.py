"""The names the command line offers as choices: where fanned-out tasks run, and the four stages (light to import:
the CLI reads them before anything heavy loads)."""
from __future__ import annotations

from enum import Enum


class Runner(str, Enum):
    local = "local"  # one task at a time in the flow's process
    dask = "dask"    # a Dask cluster: a LocalCluster on this machine or an existing scheduler


class Stage(str, Enum):
    ingest = "ingest"
    train = "train"
    generate = "generate"
    evaluate = "evaluate"


RUNNERS = tuple(runner.value for runner in Runner)
STAGES = tuple(stage.value for stage in Stage)
