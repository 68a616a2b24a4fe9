"""Config: params.yaml covers every key, overrides are typed, unknown keys and bad values fail by name."""
from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml

from conftest import ROOT
from pipeline import config as config_module
from pipeline.errors import AugmentError


def test_params_yaml_lists_every_key_with_the_code_defaults():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    defaults = config_module.Config().to_dict()
    assert set(params) == set(defaults)
    for section, values in defaults.items():
        assert set(params[section]) == set(values), section
        for key, value in values.items():
            if key != "dataset":
                assert params[section][key] == value, f"{section}.{key}"


def test_overrides_are_typed():
    config = config_module.load(None, ["train.steps=300", "evaluate.seeds=2", "train.lr_generator=1e-3", "train.compile=true"])
    assert config.train.steps == 300 and isinstance(config.train.steps, int)
    assert config.evaluate.seeds == 2
    assert config.train.lr_generator == pytest.approx(1e-3)
    assert config.train.compile is True


@pytest.mark.parametrize("override, message", [
    ("train.stpes=3", "unknown config key 'train.stpes'"),
    ("trian.steps=3", "unknown config section 'trian'"),
    ("train.steps=many", "config key 'train.steps' needs an integer"),
    ("train.steps", "must look like section.key=value"),
    ("generate.per_class=0", "generate.per_class must be at least 1"),
    ("generate.per_class=-5", "generate.per_class must be at least 1"),
    ("ingest.image_size=30", "ingest.image_size must be a multiple of 4"),
    ("train.augment=flip", "train.augment has unknown parts"),
    ("evaluate.augment=affine,warp", "evaluate.augment must name any of affine, elastic, flip"),
    ("evaluate.augment=photo,affine", "or one of the policies trivialaugment"),
    ("evaluate.augment_probability=0", "evaluate.augment_probability must be in (0, 1]"),
    ("evaluate.augment_probability=1.5", "evaluate.augment_probability must be in (0, 1]"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(AugmentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_module.load(None, [override])


def test_unknown_key_in_params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  steps: 10\n  learning_rate: 0.1\n")
    with pytest.raises(AugmentError, match="unknown config key 'train.learning_rate'"):
        config_module.load(path)


def test_unquoted_on_and_off_in_a_params_file_are_the_choices_not_booleans(tmp_path):
    # PyYAML reads `off` as false; DVC's `exp run -S` and hand edits write it unquoted
    path = tmp_path / "params.yaml"
    path.write_text("evaluate:\n  rebalance: off\n  long_tail_loss: off\n  batched: on\n")
    config = config_module.load(path)
    assert (config.evaluate.rebalance, config.evaluate.long_tail_loss, config.evaluate.batched) == ("off", "off", "on")
    path.write_text("evaluate:\n  long_tail_loss: on\n")  # not one of its choices: still a one-line error
    with pytest.raises(AugmentError, match="evaluate.long_tail_loss"):
        config_module.load(path)


def test_round_trip_through_dict():
    config = config_module.load(None, ["train.steps=7"])
    again = config_module.from_dict(config.to_dict())
    assert dataclasses.asdict(again) == dataclasses.asdict(config)


def test_params_yaml_is_generated_from_the_declarations():
    """params.yaml's keys, values and comments come from pipeline/config.py; regenerate with
    `python -m pipeline.config params ingest.dataset=data/digits > params.yaml`."""
    expected = config_module.params_yaml(config_module.apply_overrides(config_module.Config(), ["ingest.dataset=data/digits"]))
    assert (ROOT / "params.yaml").read_text() == expected


def test_the_options_table_is_generated_from_the_declarations():
    """docs/options.md holds the table `python -m pipeline.config options` prints, row for row."""
    assert config_module.options_markdown() in (ROOT / "docs" / "options.md").read_text()


def test_every_key_is_declared_with_help():
    for section in config_module.SECTIONS:
        for field, _ in config_module.fields(section):
            assert field.metadata.get("help", "").strip(), f"{section}.{field.name}"


def _just_outside(meta: dict, kind: type) -> list:
    """A value just outside each declared bound (an int field's nearest integer, a float field's nearest float)."""
    step = 1 if kind is int else 1e-6
    return [bound + offset for bound, offset in ((meta["at_least"], -step), (meta["above"], 0), (meta["at_most"], step),
                                                 (meta["below"], 0)) if bound is not None]


KEYS = [f"{s}.{f.name}" for s in config_module.SECTIONS for f, _ in config_module.fields(s)]


@pytest.mark.parametrize("key", KEYS)
def test_every_declared_bound_and_choice_is_enforced(key):
    section, name = key.split(".")
    field, kind = next((f, k) for f, k in config_module.fields(section) if f.name == name)
    bad = ["not-a-choice"] if typing.get_origin(kind) is typing.Literal else _just_outside(field.metadata, kind)
    for value in bad:
        with pytest.raises(AugmentError, match=re.escape(key)):
            config_module.load(None, [f"{key}={int(value) if kind is int else value}"])
        assert config_module.load(None, [f"{key}={field.default}"])  # the default itself passes


def test_augment_options_lists_every_key_with_its_default():
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["options"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for key in KEYS:
        assert key in result.output, key
    assert "auto | gray | rgb" in result.output  # the choices of ingest.channels, from its Literal
