"""The benchmark scripts run end to end on a tiny CPU case and write the figure keys their docstrings document."""

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
DOC_KEYS = {"bench", "command", "machine", "device", "versions", "date", "figures", "rows"}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread) -> ModuleType:
    """Imports a script from bench/ (as `python bench/<script>.py` would) with its results going to tmp_path."""
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("common")
    assert Path(common.__file__).parent == BENCH, "another module named `common` shadows bench/common.py"
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench/test"])
    return importlib.import_module


def test_stage_bench_writes_every_stage_and_the_pair_count(bench, tmp_path: Path) -> None:
    stages = bench("rasterizer_stages")
    path = stages.main(["--device", "cpu", "--cases", "300@48x32", "--repeats", "1", "--threads", "1"])

    assert path == tmp_path / "rasterizer-stages-cpu.json"
    doc = json.loads(path.read_text())
    assert doc.keys() >= DOC_KEYS and doc["bench"] == "rasterizer-stages" and doc["device"] == "cpu"
    figures = doc["figures"]
    for stage in stages.STAGES:
        assert f"\n    {stage} " in stages.__doc__  # each stage is documented
        assert figures[f"stage_ms.300_48x32.cpu.{stage}"] > 0
    assert isinstance(figures["pairs.300_48x32.cpu"], int) and figures["pairs.300_48x32.cpu"] > 0
    assert {"stage_ms.300_48x32.gsplat", "stage_ms.300_48x32.cuda", "stage_ms.1m_1920x1080"} <= doc[
        "missing"
    ].keys()
    assert doc["rows"][0]["pairs"] == figures["pairs.300_48x32.cpu"]


def test_stage_bench_case_names_round_trip(bench) -> None:
    stages = bench("rasterizer_stages")
    assert stages.parse_case("1m@1920x1080") == (1_000_000, 1920, 1080)
    assert stages.parse_case("10k@256") == (10_000, 256, 256)
    assert [stages.case_name(*c) for c in stages.DEFAULT_CASES] == [
        "10k_256x256",
        "100k_800x800",
        "1m_1920x1080",
    ]


def test_slice4d_bench_compares_fused_and_torch_slicing_and_measures_render_fps(
    bench, tmp_path: Path
) -> None:
    slice4d = bench("slice4d")
    argv = ["--device", "cpu", "--n", "2k", "--frames", "4", "--fps-cases", "300@48x32:2", "--threads", "1"]
    path = slice4d.main(argv)

    assert path == tmp_path / "slice4d-cpu.json"
    doc = json.loads(path.read_text())
    assert doc.keys() >= DOC_KEYS and doc["bench"] == "slice4d"
    figures = doc["figures"]
    assert figures["slice4d_speedup_vs_torch_slicing_2k_4f"] == pytest.approx(
        figures["slice4d_torch_seconds_2k_4f"] / figures["slice4d_fused_seconds_2k_4f"]
    )
    assert figures["slice4d_fps_48x32_300_2f"] > 0
    assert {"slice4d_fps_1080p_1m_300f", "slice4d_speedup_vs_torch_slicing_1m_300f"} <= doc["missing"].keys()
    fused = next(row for row in doc["rows"] if row.get("method") == "fused")
    assert fused["max_abs_diff_vs_torch"] < 1e-4


@pytest.mark.slow  # three training subprocesses and torchrun's launcher: about 20 s of start-up alone
def test_distributed_bench_compares_two_ranks_with_one_on_the_same_views(bench, tmp_path: Path) -> None:
    distributed = bench("distributed")
    path = distributed.main(
        ["--device", "cpu", "--steps", "16", "--repeats", "1", "--views", "2", "--size", "16x12"]
    )

    assert path == tmp_path / "distributed-cpu.json"
    doc = json.loads(path.read_text())
    assert doc.keys() >= DOC_KEYS and doc["bench"] == "distributed" and doc["device"] == "cpu"
    figures = doc["figures"]
    rate = {name: figures[f"views_per_s_{name}"] for name in distributed.CASES}
    assert figures["cpu_2rank_speedup"] == pytest.approx(rate["two_ranks"] / rate["two_views"], rel=1e-2)
    assert figures["cpu_2rank_speedup_vs_one_view"] == pytest.approx(
        rate["two_ranks"] / rate["one_view"], rel=1e-2
    )
    assert "gpu_2rank_speedup" in doc["missing"] and figures["cpu_2rank_efficiency"] > 0
    two_ranks = next(row for row in doc["rows"] if row["case"] == "two_ranks")
    assert two_ranks["ranks"] == 2 and two_ranks["views_per_step"] == 2
    assert two_ranks["max_abs_param_diff_vs_two_views"] < 1e-5  # the same computation
