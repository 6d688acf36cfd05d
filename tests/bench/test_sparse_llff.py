"""bench/sparse.py's LLFF suite: the figure keys issue 21 names, from rows of both schedules or of one."""

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def sparse(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("sparse")


def _row(scene: str, method: str, preset: str, psnr: float) -> dict:
    return {"scene": scene, "k": 3, "method": method, "preset": preset, "test_psnr": psnr, "test_ssim": 0.5,
            "train_seconds": 10.0}  # fmt: skip


def test_the_default_schedule_gives_the_unsuffixed_keys_and_their_mean(sparse) -> None:
    rows = [
        _row(scene, method, preset, psnr)
        for scene, base in (("llff_fern", 20.0), ("llff_flower", 21.0))
        for preset, extra in (("default", 1.0), ("fast", 0.0))
        for method, psnr in (("sparse", base + extra), ("vanilla", base - 3.0))
    ]
    figures, missing = sparse.llff_figures_of(rows, ["fast", "default"])
    assert missing == {}
    assert figures["llff_fern_k3_psnr"] == 21.0 and figures["llff_flower_k3_psnr"] == 22.0
    assert figures["llff_k3_psnr_mean"] == 21.5 and figures["llff_k3_fast_psnr_mean"] == 20.5
    assert figures["llff_fern_k3_vanilla_psnr"] == 17.0 and figures["llff_fern_k3_vanilla_fast_psnr"] == 17.0
    assert figures["llff_flower_k3_seconds"] == 10.0


def test_a_schedule_not_run_is_listed_as_missing(sparse) -> None:
    rows = [_row(scene, "sparse", "fast", 18.0) for scene in ("llff_fern", "llff_flower")]
    figures, missing = sparse.llff_figures_of(rows, ["fast"])
    assert figures["llff_k3_fast_psnr_mean"] == 18.0
    assert {"llff_fern_k3_psnr", "llff_k3_psnr_mean", "llff_flower_k3_vanilla_psnr"} <= set(missing)
    assert not any(key.startswith("llff_fern_k3_psnr") for key in figures)


def test_a_method_not_run_at_a_schedule_is_listed_as_missing(sparse) -> None:
    rows = [_row(scene, "sparse", "default", 20.0) for scene in ("llff_fern", "llff_flower")]
    figures, missing = sparse.llff_figures_of(rows, ["default"])
    assert figures["llff_k3_psnr_mean"] == 20.0
    assert "llff_fern_k3_vanilla_psnr" in missing and "llff_fern_k3_psnr" not in missing


def test_a_run_replaces_its_own_cases_and_keeps_the_others(sparse, tmp_path) -> None:
    old = [_row("llff_fern", "sparse", "fast", 18.0), _row("llff_fern", "vanilla", "fast", 17.0)]
    path = tmp_path / "sparse_llff-cpu.json"
    path.write_text(
        json.dumps({"command": "python bench/sparse.py --schedule fast", "rows": [*old, {"command": "x"}]})
    )
    new = [
        {**_row("llff_fern", "sparse", "fast", 19.0), "command": "python bench/sparse.py --methods sparse"}
    ]
    rows = sparse.merged_llff_rows(path, new)
    assert [(r["method"], r["test_psnr"], r["command"]) for r in rows] == [
        ("vanilla", 17.0, "python bench/sparse.py --schedule fast"),
        ("sparse", 19.0, "python bench/sparse.py --methods sparse"),
    ]
    assert sparse.merged_llff_rows(tmp_path / "absent.json", new) == new
