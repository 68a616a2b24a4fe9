"""Config: params.yaml covers every key, overrides are typed, unknown keys and bad values fail by name."""
from __future__ import annotations

import dataclasses

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
    ("train.steps=many", "config key 'train.steps' needs a int"),
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


def test_round_trip_through_dict():
    config = config_module.load(None, ["train.steps=7"])
    again = config_module.from_dict(config.to_dict())
    assert dataclasses.asdict(again) == dataclasses.asdict(config)
