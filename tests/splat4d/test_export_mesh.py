"""`MeshExport` on a reconstructed sample scene: writes meshes trimesh reloads, never overwrites by accident."""

from pathlib import Path

import numpy as np
import pytest
import trimesh

from pipelines import PIPELINES
from splat4d.errors import UsageError, UserError
from splat4d.export.mesh import MeshExport, orbit_cameras
from splat4d.reconstruct import load_trained

VOXEL = 0.08
"""Coarse enough for a fast test (the room is about 10 × 10 × 4 units)."""


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_export_writes_a_mesh_trimesh_reloads(
    reconstructed_sample: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / "exports" / f"mesh{suffix}"
    extra = 2 if suffix == ".ply" else 0
    depth = "planar" if suffix == ".obj" else "auto"  # the fixture's round Gaussians: auto is median
    written = MeshExport(
        reconstructed_sample, out=out, voxel_size=VOXEL, extra_views=extra, depth=depth, device="cpu"
    ).main(PIPELINES)
    assert written == out
    mesh = trimesh.load(out, force="mesh")
    assert len(mesh.faces) > 100
    assert np.isfinite(mesh.vertices).all()
    assert not list(tmp_path.joinpath("exports").glob(".*.tmp"))


def test_mesh_export_refuses_to_overwrite(reconstructed_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "mesh.ply"
    out.write_text("keep me")
    with pytest.raises(UsageError, match=r"exists; pass --overwrite"):
        MeshExport(reconstructed_sample, out=out, voxel_size=VOXEL, device="cpu").main(PIPELINES)
    assert out.read_text() == "keep me"


def test_mesh_export_rejects_an_unknown_format(reconstructed_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown mesh format"):
        MeshExport(reconstructed_sample, out=tmp_path / "mesh.stl", device="cpu").main(PIPELINES)


def test_mesh_export_names_a_folder_that_is_not_a_scene(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a scene"):
        MeshExport(tmp_path, out=tmp_path / "mesh.ply", device="cpu").main(PIPELINES)


def test_orbit_cameras_look_at_the_centre(reconstructed_sample: Path) -> None:
    import torch

    trained = load_trained(reconstructed_sample, PIPELINES, torch.device("cpu"))
    cameras = trained.scene.cameras
    centre = torch.tensor([0.0, 0.0, 0.4])
    extra = orbit_cameras(cameras, 5, centre)
    assert len(extra) == 5
    forward = extra.T_world_cam[:, :3, 2]
    to_centre = torch.nn.functional.normalize(centre - extra.centers, dim=-1)
    assert torch.allclose(forward, to_centre, atol=1e-5)
    rotations = extra.T_world_cam[:, :3, :3]
    assert torch.allclose(rotations.det(), torch.ones(5), atol=1e-5)
    radius = (cameras.centers - centre).norm(dim=-1).median()
    assert torch.allclose((extra.centers - centre).norm(dim=-1), radius.expand(5), rtol=1e-4)


def test_auto_depth_is_planar_only_for_flattened_3d_gaussians() -> None:
    import torch

    from splat4d.export.mesh import auto_depth
    from splat4d.gaussians import Gaussians, Gaussians4D

    points = torch.rand(50, 3)
    round_ = Gaussians.from_points(points, torch.rand(50, 3), sh_degree=0)
    assert auto_depth(round_) == "median"
    with torch.no_grad():
        round_.params["log_scales"][:, 1] -= 3.0  # one axis 20x shorter than the others: discs
    assert auto_depth(round_) == "planar"
    four_d = Gaussians4D.from_points(points, torch.rand(50, 3), torch.rand(50), sh_degree=0)
    assert auto_depth(four_d) == "median"
