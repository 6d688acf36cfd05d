"""bench/dynamic.py's D-NeRF scene (split, time span, figures, merging with the committed results) and
bench/dynamic_ablation.py's lever table, on tiny runs."""

import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def benches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread) -> SimpleNamespace:
    """bench/dynamic.py and bench/dynamic_ablation.py imported as `python bench/<script>.py` would, their results
    going to tmp_path."""
    monkeypatch.syspath_prepend(str(BENCH))
    modules = {name: importlib.import_module(name) for name in ("common", "dynamic", "dynamic_ablation")}
    for module in modules.values():
        monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench/test"])
    return SimpleNamespace(**modules)


def _scene(train_times: list[float], test_times: list[float]) -> SimpleNamespace:
    times = torch.tensor(train_times + test_times)
    n = len(train_times)
    return SimpleNamespace(
        cameras=SimpleNamespace(times=times),
        train_indices=list(range(n)),
        test_indices=list(range(n, len(times))),
    )


def test_test_frames_outside_the_training_times_are_scored_apart(benches) -> None:
    scene = _scene([0.2, 0.5, 0.9], [0.0, 0.2, 0.6, 0.95])
    assert benches.dynamic.in_span(scene) == [False, True, True, False]
    views = [{"psnr": p} for p in (10.0, 30.0, 26.0, 12.0)]
    row = benches.dynamic._time_span_row(scene, views)
    assert row["train_time_span"] == [0.2, 0.9]
    assert row["num_test_views_in_span"] == 2
    assert row["test_psnr_in_span"] == pytest.approx(28.0)
    assert row["test_psnr_out_of_span"] == pytest.approx(11.0)
    row.update(
        test_psnr=19.5, test_ssim=0.8, train_seconds=12.3, num_gaussians=1000, val_psnr=24.25, val_ssim=0.9
    )
    figures = benches.dynamic.scene_figures("dnerf_lego_partial", "dynamic", row)
    assert figures == {
        "dnerf_lego_partial_psnr": 19.5,
        "dnerf_lego_partial_seconds": 12.3,
        "dnerf_lego_partial_ssim": 0.8,
        "dnerf_lego_partial_psnr_in_span": 28.0,
        "dnerf_lego_partial_num_gaussians": 1000,
        "dnerf_lego_partial_val_psnr": 24.25,
        "dnerf_lego_partial_val_ssim": 0.9,
    }
    # the procedural scenes keep their two figures
    assert set(benches.dynamic.scene_figures("monocular", "long", row)) == {
        "procedural_monocular_long_psnr",
        "procedural_monocular_long_seconds",
    }


def test_a_run_replaces_its_scenes_figures_and_keeps_the_others(benches, tmp_path: Path) -> None:
    old = {
        "figures": {"procedural_monocular_psnr": 24.0, "dnerf_lego_partial_psnr": 11.0, "hierarchy_x": 1.0},
        "rows": [
            {"part": "training", "scene": "dnerf_lego_partial", "pipeline": "dynamic"},
            {"part": "hierarchy"},
        ],
        "missing": {"dnerf_psnr": "no D-NeRF data", "dnerf_lego_partial_ssim": "not found"},
    }
    (tmp_path / "dynamic-cpu.json").write_text(json.dumps(old))
    new_row = {"part": "training", "scene": "dnerf_lego_partial", "pipeline": "dynamic", "test_psnr": 25.0}
    path = benches.dynamic._merge_and_write(
        torch.device("cpu"),
        ["dnerf_lego_partial"],
        "dynamic",
        {"dnerf_lego_partial_psnr": 25.0, "dnerf_lego_partial_ssim": 0.9},
        [new_row],
        {},
    )
    doc = json.loads(path.read_text())
    assert doc["figures"] == {
        "dnerf_lego_partial_psnr": 25.0,
        "dnerf_lego_partial_ssim": 0.9,
        "procedural_monocular_psnr": 24.0,
        "hierarchy_x": 1.0,
    }
    assert "missing" not in doc  # the obsolete entry is dropped, the re-run scene's is replaced
    assert doc["rows"] == [{"part": "hierarchy"}, new_row]


def test_the_ablation_trains_each_lever_with_its_settings_and_writes_its_figure(
    benches, tmp_path: Path
) -> None:
    levers = ["baseline", "lifespan_floor"]
    path = benches.dynamic_ablation.main(
        ["--device", "cpu", "--scenes", "monocular", "--levers", *levers, "--steps", "6", "--downscale", "8"]
    )
    doc = json.loads(path.read_text())
    assert path.name == "dynamic-ablation-cpu.json"
    assert set(doc["figures"]) == {f"ablation_monocular_{lever}_psnr" for lever in levers}
    rows = {r["lever"]: r for r in doc["rows"]}
    base = list(benches.dynamic_ablation.BASES["original"])
    assert rows["lifespan_floor"]["overrides"] == [*base, "lifespan_floor=0.06"]  # the last assignment wins
    assert rows["baseline"]["overrides"] == base and rows["baseline"]["resolution"] == [40, 30]
    # a second run of one lever replaces its row and keeps the other
    benches.dynamic_ablation.main(
        [
            "--device",
            "cpu",
            "--scenes",
            "monocular",
            "--levers",
            "baseline",
            "--steps",
            "4",
            "--downscale",
            "8",
        ]
    )
    doc = json.loads(path.read_text())
    assert sorted(r["lever"] for r in doc["rows"]) == levers
    assert {r["lever"]: r["steps"] for r in doc["rows"]} == {"baseline": 4, "lifespan_floor": 6}
    # another base: its own figure key and row, beside the original base's
    benches.dynamic_ablation.main(
        ["--device", "cpu", "--scenes", "monocular", "--levers", "space_only_growth", "--base", "sparsity_floor",
         "--steps", "4", "--downscale", "8"]
    )  # fmt: skip
    doc = json.loads(path.read_text())
    assert "ablation_sparsity_floor_monocular_space_only_growth_psnr" in doc["figures"]
    row = next(r for r in doc["rows"] if r["base"] == "sparsity_floor")
    assert row["overrides"] == [
        "strategy.split_in_time=True",
        "rigidity_weight=0",
        "strategy.split_in_time=False",
    ]
    assert len(doc["rows"]) == 3


def test_the_dnerf_scene_trains_on_train_only_and_scores_the_test_frames(
    benches, shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "dnerf_lego_partial"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    data = benches.dynamic._data("dnerf_lego_partial", None, tmp_path, downscale=8)
    sets = ("init.random_points=500",)
    row = benches.dynamic.run_scene(
        "dnerf_lego_partial", data, 3, torch.device("cpu"), tmp_path, "dynamic", sets
    )
    assert row["scene"] == "dnerf_lego_partial" and row["resolution"] == [50, 50]
    assert row["split_counts"] == {"train": 34, "val": 11, "test": 18}  # val is held out of training
    assert row["images"] == 34 + 18 and row["num_test_views"] == 18 and row["background"] == "white"
    assert row["train_time_span"] == [0.1616, 0.9495]
    assert len(row["test_times"]) == 18 and row["test_times"][0] == 0.0
    assert 0 < row["num_test_views_in_span"] < 18
    figures = benches.dynamic.scene_figures("dnerf_lego_partial", "dynamic", row)
    assert figures["dnerf_lego_partial_psnr_in_span"] == round(row["test_psnr_in_span"], 3)
    # the 11 held-out val frames (one fixed camera sweeping time) are scored apart, into the scene's val/ folder
    assert row["num_val_views"] == 11 and len(row["val_psnr_per_view"]) == 11
    assert (
        row["val_times"] == sorted(row["val_times"])
        and row["val_times"][0] < 0.1 < 0.9 < row["val_times"][-1]
    )
    assert figures["dnerf_lego_partial_val_psnr"] == round(row["val_psnr"], 3)
    assert (tmp_path / "dnerf_lego_partial" / "val" / "metrics.json").is_file()
