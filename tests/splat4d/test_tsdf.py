"""TSDF fusion recovers analytic surfaces from exact depth maps."""

import math

import numpy as np
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.export.tsdf import TSDFVolume, fuse_open3d, keep_largest_components

W, H, F = 64, 48, 60.0
RADIUS = 0.6


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world, OpenCV axes (x right, y down, z forward), world z up."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = eye
    return T


def _orbit(n: int, distance: float = 2.5) -> Cameras:
    poses = []
    for i in range(n):
        az, el = 2 * math.pi * i / n, (0.5 if i % 2 else -0.4)
        eye = distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(_look_at(eye, np.zeros(3)))
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], dtype=torch.float32)
    return Cameras(torch.tensor(np.stack(poses), dtype=torch.float32), K.expand(n, 3, 3).clone(), W, H)


def _rays(cameras: Cameras, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World origin and camera-frame directions with z = 1, per pixel centre."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    K = cameras.Ks[c]
    dirs = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    return cameras.T_world_cam[c, :3, 3], dirs


def _sphere_depths(cameras: Cameras) -> torch.Tensor:
    """Exact z-depth of the sphere |x| = RADIUS (0 where the ray misses)."""
    depths = []
    for c in range(len(cameras)):
        origin, dirs = _rays(cameras, c)
        d_world = dirs @ cameras.T_world_cam[c, :3, :3].T  # t along this ray is the z-depth
        a = (d_world**2).sum(-1)
        b = 2 * (d_world @ origin)
        disc = b**2 - 4 * a * ((origin**2).sum() - RADIUS**2)
        t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
        depths.append(torch.where(disc > 0, t, torch.zeros_like(t)))
    return torch.stack(depths)


def test_fused_sphere_has_the_right_radius_and_outward_normals() -> None:
    cameras = _orbit(8)
    volume = TSDFVolume([-1, -1, -1, 1, 1, 1], voxel_size=0.04, truncation=0.12)
    volume.integrate_cameras(_sphere_depths(cameras), cameras, chunk_voxels=10_000)
    mesh = volume.extract_mesh()
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert len(mesh.faces) > 1000
    assert abs(radii.mean() - RADIUS) < 0.01
    assert np.abs(radii - RADIUS).max() < 0.05
    outward = (mesh.face_normals * mesh.triangles_center).sum(1) > 0
    assert outward.mean() > 0.99


def test_plane_colour_is_fused_into_vertex_colours() -> None:
    # One camera looking down -z at a plane 1 unit away, left half red, right half blue.
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T[2, 3] = 1.0
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], dtype=torch.float32)
    cameras = Cameras(torch.tensor(T, dtype=torch.float32)[None], K[None], W, H)
    depth = torch.ones(1, H, W)
    rgb = torch.zeros(1, H, W, 3)
    rgb[:, :, : W // 2, 0] = 1.0
    rgb[:, :, W // 2 :, 2] = 1.0
    volume = TSDFVolume([-0.3, -0.3, -0.2, 0.3, 0.3, 0.2], voxel_size=0.02, truncation=0.06)
    volume.integrate_cameras(depth, cameras, rgb)
    mesh = volume.extract_mesh()
    assert len(mesh.faces) > 100
    assert np.abs(mesh.vertices[:, 2]).max() < 1e-3  # the plane z = 0
    colors = mesh.visual.vertex_colors[:, :3].astype(int)
    left, right = mesh.vertices[:, 0] < -0.05, mesh.vertices[:, 0] > 0.05
    assert (colors[left] == [255, 0, 0]).all()
    assert (colors[right] == [0, 0, 255]).all()


def test_unobserved_volume_yields_an_empty_mesh() -> None:
    volume = TSDFVolume([0, 0, 0, 1, 1, 1], voxel_size=0.1, truncation=0.3)
    assert len(volume.extract_mesh().faces) == 0


def test_keep_largest_components_drops_the_small_ones() -> None:
    import trimesh

    big = trimesh.creation.icosphere(subdivisions=3)
    small = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    small.apply_translation([3, 0, 0])
    both = trimesh.util.concatenate([big, small])
    assert len(keep_largest_components(both, keep=1).faces) == len(big.faces)
    assert len(keep_largest_components(both, keep=0, min_faces=13).faces) == len(big.faces)
    assert len(keep_largest_components(both, keep=0).faces) == len(both.faces)


def test_open3d_backend_recovers_the_sphere() -> None:
    pytest.importorskip("open3d")
    cameras = _orbit(8)
    mesh = fuse_open3d(_sphere_depths(cameras), cameras, [-1, -1, -1, 1, 1, 1], 0.04, 0.12)
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - RADIUS) < 0.02
