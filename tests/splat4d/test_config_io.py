"""Configs survive config.yaml: every preset round-trips, and mismatches are reported with the key."""

import pytest

from pipelines import PIPELINES
from splat4d.config_io import ConfigError, from_dict, from_yaml, to_dict, to_yaml


@pytest.mark.parametrize(("pipeline", "preset"), [(p, k) for p, s in PIPELINES.items() for k in s.presets])
def test_presets_round_trip_through_yaml(pipeline: str, preset: str) -> None:
    cfg = PIPELINES[pipeline].presets[preset]
    assert from_yaml(type(cfg), to_yaml(cfg)) == cfg


def test_unknown_keys_are_named() -> None:
    cfg = PIPELINES["static"].presets["default"]
    data = to_dict(cfg)
    data["trainer"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"config\.trainer: unknown keys \['stepz'\]"):
        from_dict(type(cfg), data)
