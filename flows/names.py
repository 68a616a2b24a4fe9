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
    sources = "sources"
    evaluate = "evaluate"


# Options every entry point takes (`augment run/stage/serve/deploy` and `python -m flows.distributed`), one help each.
HELP = {
    "params": "params.yaml to read; default: ./params.yaml when present, else built-in defaults.",
    "set": "Override one key, e.g. --set train.steps=300 (repeatable; `augment options` lists every key).",
    "out": "Output folder holding the stage folders (ingest/, gan/, synthetic/, evaluation/).",
}

RUNNERS = tuple(runner.value for runner in Runner)
STAGES = tuple(stage.value for stage in Stage)
