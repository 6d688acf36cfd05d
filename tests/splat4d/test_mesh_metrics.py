"""Mesh metrics: identical meshes are perfect, a shifted mesh is off by exactly the shift."""

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from splat4d.errors import UserError
from splat4d.mesh_metrics import EvalMesh, compare_meshes, crop_mesh, gt_extent

SAMPLES = 20_000


def _square(z: float = 0.0) -> trimesh.Trimesh:
    """The unit square [0, 1]² at height z."""
    vertices = np.array([[0, 0, z], [1, 0, z], [1, 1, z], [0, 1, z]], dtype=float)
    return trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]])


def test_identical_meshes_score_one_and_zero() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    m = compare_meshes(sphere, sphere, samples=SAMPLES)
    assert m.fscore == 1.0 and m.precision == 1.0 and m.recall == 1.0
    # Different samples on the same surface: the residual is the sampling density, far below τ.
    assert m.chamfer < 0.1 * m.threshold
    assert m.extent == pytest.approx(2 * np.sqrt(3), rel=1e-3)
    assert m.threshold == pytest.approx(0.01 * m.extent)


def test_shifted_plane_is_off_by_the_shift() -> None:
    gt = _square(0.0)
    shift = 0.05
    m = compare_meshes(_square(shift), gt, threshold=0.1, samples=SAMPLES)
    # Every point's nearest neighbour is straight across, up to the sample spacing (~0.007 in-plane).
    assert m.accuracy == pytest.approx(shift, rel=0.02)
    assert m.completeness == pytest.approx(shift, rel=0.02)
    assert m.chamfer == pytest.approx(shift, rel=0.02)
    assert m.fscore == 1.0  # shift < τ
    assert compare_meshes(_square(shift), gt, threshold=0.04, samples=SAMPLES).fscore == 0.0  # shift > τ


def test_half_missing_prediction_has_half_recall() -> None:
    gt = _square(0.0)
    half = crop_mesh(
        trimesh.Trimesh(gt.vertices, gt.faces).subdivide().subdivide().subdivide(), [0, 0, -1, 0.5, 1, 1]
    )
    m = compare_meshes(half, gt, threshold=0.01, samples=SAMPLES)
    assert m.precision > 0.99  # random samples of the full square leave a few gaps wider than τ
    assert m.recall == pytest.approx(0.5, abs=0.03)
    assert m.fscore == pytest.approx(2 * 0.5 / 1.5, abs=0.03)
    assert gt_extent(gt) == pytest.approx(np.sqrt(2))


def test_eval_mesh_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    (tmp_path / "a.ply").write_bytes(sphere.export(file_type="ply"))
    (tmp_path / "gt.obj").write_text(sphere.export(file_type="obj"))
    out = tmp_path / "m" / "metrics.json"
    EvalMesh(tmp_path / "a.ply", tmp_path / "gt.obj", samples=5000, out=out).main()
    doc = json.loads(out.read_text())
    assert doc["fscore"] == 1.0 and doc["samples"] == 5000
    assert "F-score 1.000" in capsys.readouterr().out


def test_eval_mesh_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.ply: mesh file not found"):
        EvalMesh(tmp_path / "nope.ply", tmp_path / "nope.ply").main()
