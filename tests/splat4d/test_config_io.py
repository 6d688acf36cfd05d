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


# --- command-line overrides (`splat4d reconstruct --set NAME=VALUE`) ---------------------------------------------


def test_overrides_replace_one_nested_setting_with_its_type() -> None:
    from splat4d.config_io import with_override

    cfg = PIPELINES["sparse"].presets["fast"]
    out = with_override(cfg, "co_reg.pseudo_weight=2")
    assert out.co_reg.pseudo_weight == 2.0 and isinstance(out.co_reg.pseudo_weight, float)
    assert (
        out.co_reg.pseudo_start == cfg.co_reg.pseudo_start and out.drop_rate == cfg.drop_rate
    )  # nothing else
    assert cfg.co_reg.pseudo_weight == 1.0  # the preset itself is untouched
    assert with_override(cfg, "strategy.densify.grow_grad2d=4e-4").strategy.densify.grow_grad2d == 4e-4
    assert with_override(cfg, "co_reg.enabled=false").co_reg.enabled is False
    assert with_override(cfg, "init.random-points=5000").init.random_points == 5000  # dashes as in flags
    assert with_override(cfg, "background=[1, 1, 1]").background == (1.0, 1.0, 1.0)
    assert with_override(cfg, "background=null").background is None
    assert with_override(cfg, "triangulation.mode=never").triangulation.mode == "never"
    dynamic = PIPELINES["dynamic"].presets["fast"]
    assert with_override(dynamic, "data.multiview.test_cameras=[0, 3]").data.multiview.test_cameras == (0, 3)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "co_reg.pseudo_wieght=2",
            r"--set co_reg\.pseudo_wieght: unknown setting; CoRegConfig has enabled, ",
        ),
        ("drop_rate=abc", r"--set drop_rate: expected a number, got 'abc'"),
        ("init.random_points=2.5", r"--set init\.random_points: expected an integer, got 2\.5"),
        ("co_reg.enabled=1", r"--set co_reg\.enabled: expected true or false"),
        ("co_reg=1", r"--set co_reg: is a group of settings"),
        ("trainer.steps.x=1", r"--set trainer\.steps: is a single setting, not a group"),
        ("triangulation.mode=sometimes", r"'sometimes' is not one of \('auto', 'always', 'never'\)"),
        ("background=[1, 1]", r"--set background: expected 3 values, got 2"),
        ("drop_rate", r"expected NAME=VALUE"),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_setting(assignment: str, message: str) -> None:
    from splat4d.config_io import with_override

    with pytest.raises(ConfigError, match=message) as exc:
        with_override(PIPELINES["sparse"].presets["fast"], assignment)
    assert "\n" not in str(exc.value)


def test_set_flag_reaches_the_pipeline_config_and_bad_names_exit_2(tmp_path, monkeypatch, capsys) -> None:
    import splat4d.reconstruct
    from splat4d.cli import Reconstruct
    from splat4d.data.base import DatasetError

    seen = {}

    def fake(spec, name, preset, cfg, *args, **kwargs):
        seen.update(cfg=cfg)
        raise DatasetError("stop here")

    monkeypatch.setattr(splat4d.reconstruct, "reconstruct", fake)
    args = dict(input=tmp_path, out=tmp_path / "s", pipeline="sparse", preset="fast", steps=500)
    with pytest.raises(DatasetError, match="stop here"):
        Reconstruct(**args, set=("drop_rate=0.3", "co_reg.pseudo_start=10")).main()
    cfg = seen["cfg"]
    assert cfg.drop_rate == 0.3 and cfg.co_reg.pseudo_start == 10  # after --steps scaled the schedule
    assert cfg.trainer.steps == 500 and cfg.data.path == tmp_path
    with pytest.raises(ConfigError, match="--set drop_rat: unknown setting"):
        Reconstruct(**args, set=("drop_rat=0.3",)).main()
