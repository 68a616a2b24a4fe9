"""The stages by name, the one dispatch table: each stage runs as `run(config, dirs)`, and says which units it
can fan out over (per-class generators, per-class generation, classifier seeds), how one unit runs and how the units'
outputs are merged. `augment stage`, dvc.yaml and the Prefect flow all go through here; the flow only maps."""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline import runfolder, storage
from pipeline.config import Config, parse_sources
from pipeline.errors import AugmentError, environment_errors

Dirs = dict[str, Path]


class _OnUse:
    """A stage's module, imported when the table first uses it: `augment stage ingest` (a process per stage under
    dvc.yaml) then loads ingest's imports alone, not every stage's (torch, scikit-learn, matplotlib)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # pickling and copying probe dunders, before _name exists when unpickling
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self._name), attribute)

    def __reduce__(self):  # a Dask worker unpickles the table's functions with their globals: by name, not module
        return _OnUse, (self._name,)


ingest, generate, sources = _OnUse("pipeline.ingest"), _OnUse("pipeline.generate"), _OnUse("pipeline.sources")
evaluate, per_class, train = _OnUse("pipeline.evaluate.stage"), _OnUse("pipeline.gan.per_class"), _OnUse("pipeline.gan.train")


@dataclass(frozen=True)
class Stage:
    run: Callable[[Config, Dirs], dict]                            # the whole stage, units one after another
    units: Callable[[Config, Dirs], list] = lambda config, dirs: []  # what it fans out over here ([]: nothing)
    run_unit: Callable[[Config, Dirs, Any], Any] | None = None     # one unit, in any process
    merge: Callable[[Config, Dirs], dict] | None = None            # the stage's outputs from its units'


def _train(config: Config, dirs: Dirs) -> dict:
    if config.train.mode == "per_class":
        return per_class.run(config.train, dirs["ingest"], dirs["gan"])
    return train.run(config.train, dirs["ingest"], dirs["gan"])


def _generate_units(config: Config, dirs: Dirs) -> list[str]:
    """Per-class generators write each class apart, unless a step plans across classes (the teacher filter scores
    every class with one classifier, balancing counts against the largest class)."""
    if config.train.mode != "per_class" or config.generate.filter != "none" or config.generate.balance:
        return []
    return per_class.class_names(dirs["ingest"])


STAGES: dict[str, Stage] = {
    "ingest": Stage(run=lambda config, dirs: ingest.run(config.ingest, dirs["ingest"])),
    "train": Stage(
        run=_train,
        units=lambda config, dirs: per_class.class_names(dirs["ingest"]) if config.train.mode == "per_class" else [],
        run_unit=lambda config, dirs, name: per_class.train_class(config.train, dirs["ingest"], dirs["gan"], name),
        merge=lambda config, dirs: per_class.merge(config.train, dirs["ingest"], dirs["gan"])),
    "generate": Stage(
        run=lambda config, dirs: generate.run(config.generate, dirs["gan"], dirs["synthetic"], dirs["ingest"]),
        units=_generate_units,
        run_unit=lambda config, dirs, name: generate.run_class(config.generate, dirs["gan"], dirs["synthetic"], name),
        merge=lambda config, dirs: generate.merge_classes(config.generate, dirs["gan"], dirs["synthetic"], dirs["ingest"])),
    # Outside synthetic sources (evaluate.sources), read like the dataset and checked for copies of held-out images.
    "sources": Stage(run=lambda config, dirs: sources.run(config, dirs["ingest"], dirs["sources"])),
    "evaluate": Stage(
        run=lambda config, dirs: evaluate.run(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["gan"],
                                              dirs["evaluation"], dirs["sources"]),
        units=lambda config, dirs: list(range(config.evaluate.seeds)),
        run_unit=lambda config, dirs, seed: str(evaluate.run_seed(config.evaluate, dirs["ingest"], dirs["synthetic"],
                                                                  dirs["evaluation"], seed, dirs["sources"])),
        merge=lambda config, dirs: evaluate.aggregate(config.evaluate, dirs["ingest"], dirs["synthetic"], dirs["gan"],
                                                      dirs["evaluation"], dirs["sources"])),
}
# `augment evaluate`: the measurement alone, on outside sources, without training a generator.
WITHOUT_GAN = ("ingest", "sources", "evaluate")


def inputs(config: Config) -> dict[str, str]:
    """What a run reads and must never overlap its output folder: the dataset and every outside source."""
    return {"dataset": config.ingest.dataset,
            **{f"synthetic source '{name}'": folder for name, folder in parse_sources(config.evaluate.sources).items()}}


def absolute_inputs(config: Config) -> Config:
    """The config with the dataset and every outside source named by absolute path (what config.json records)."""
    folders = ", ".join(f"{name}={Path(folder).resolve()}" for name, folder in parse_sources(config.evaluate.sources).items())
    return dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, dataset=str(Path(config.ingest.dataset).resolve())),
                               evaluate=dataclasses.replace(config.evaluate, sources=folders))


def run_stage(name: str, config: Config, out_dir: str | Path) -> dict:
    """Run one stage, whole, in out_dir's fixed layout (it reads what earlier stages wrote there): what `augment
    stage` and dvc.yaml call. An entry point: the folder is checked, claimed and locked first."""
    if name not in STAGES:
        raise AugmentError(f"unknown stage '{name}'; choose one of {', '.join(STAGES)}")
    with environment_errors(), runfolder.open_run(out_dir, inputs(config)):
        return STAGES[name].run(config, storage.stage_dirs(out_dir))
