"""Truncated signed distance (TSDF) fusion of depth maps on a dense voxel grid, in torch, and its zero level set
as a triangle mesh.

The fusion is the projective TSDF of KinectFusion (Newcombe et al. 2011) with the running weighted average of
Curless & Levoy (1996): every voxel centre is projected into each depth map, its signed distance is the depth
difference along the camera's z axis, truncated to [-truncation, truncation] and normalised to [-1, 1], and the
observations are averaged with weight 1 each. Voxels more than `truncation` behind the observed surface are left
alone (they may be free space seen from elsewhere). The surface is extracted with scikit-image's marching cubes;
faces touching a voxel that no camera observed are dropped, so holes stay holes instead of closing into walls.

`fuse_open3d` does the same with open3d's `UniformTSDFVolume`, for comparison; open3d is an optional extra
(`splat4d[o3d]`) and is imported only there. Its `ScalableTSDFVolume` is not used: it returns empty meshes.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras

DEFAULT_CHUNK_VOXELS = 1 << 21
"""Voxels processed at once during integration: about 2M × ~60 bytes of temporaries ≈ 120 MB."""
NEAR = 1e-4
"""Voxels closer to the camera than this (along z) are not projected."""


def _as_bounds(bounds: Sequence[float | int] | Tensor | np.ndarray) -> np.ndarray:
    b = np.asarray(bounds.cpu() if isinstance(bounds, Tensor) else bounds, dtype=np.float64).reshape(-1)
    if b.shape != (6,):
        raise ValueError(f"bounds must be 6 numbers (xmin, ymin, zmin, xmax, ymax, zmax), got {b.shape[0]}")
    lo, hi = b[:3], b[3:]
    if not np.all(hi > lo):
        raise ValueError(f"bounds: max {hi.tolist()} must exceed min {lo.tolist()} on every axis")
    return b


class TSDFVolume:
    """A dense TSDF grid over an axis-aligned box.

    Voxel (i, j, k) has its centre at `origin + (i, j, k) * voxel_size`, where `origin` is the box's minimum
    corner plus half a voxel. `tsdf` holds normalised distances in [-1, 1] (positive in front of the surface),
    `weight` the number of observations, `color` their running mean colour.

    Args:
        bounds: (xmin, ymin, zmin, xmax, ymax, zmax) in world units.
        voxel_size: edge of a voxel, world units.
        truncation: distance beyond which the signed distance is clamped (typically 3-5 voxels).
        device: where the grid lives; a 256³ grid takes 320 MB (float32 tsdf, weight and colour).
    """

    def __init__(
        self,
        bounds: Sequence[float | int] | Tensor | np.ndarray,
        voxel_size: float,
        truncation: float,
        device: torch.device | str = "cpu",
    ) -> None:
        if voxel_size <= 0 or truncation <= 0:
            raise ValueError(f"voxel_size ({voxel_size}) and truncation ({truncation}) must be positive")
        b = _as_bounds(bounds)
        self.voxel_size = float(voxel_size)
        self.truncation = float(truncation)
        self.shape = tuple(
            max(2, math.ceil((hi - lo) / voxel_size)) for lo, hi in zip(b[:3], b[3:], strict=True)
        )
        self.origin = torch.tensor(b[:3] + voxel_size / 2, dtype=torch.float32, device=device)
        self.tsdf = torch.ones(self.shape, dtype=torch.float32, device=device)
        self.weight = torch.zeros(self.shape, dtype=torch.float32, device=device)
        self.color = torch.zeros((*self.shape, 3), dtype=torch.float32, device=device)
        self.has_color = False

    @property
    def device(self) -> torch.device:
        return self.tsdf.device

    def integrate(
        self,
        depth: Float[Tensor, "H W"],
        T_world_cam: Float[Tensor, "4 4"],
        K: Float[Tensor, "3 3"],
        rgb: Float[Tensor, "H W 3"] | None = None,
        chunk_voxels: int = DEFAULT_CHUNK_VOXELS,
    ) -> None:
        """Fuse one z-depth map (0 = no measurement) seen by a pinhole camera (OpenCV axes, pixel centres at +0.5).

        Args:
            depth: camera z-depth per pixel; pixels <= 0 are ignored.
            T_world_cam: camera-to-world transform.
            K: intrinsics in pixels.
            rgb: colours in [0, 1] to average into the voxels, if any.
            chunk_voxels: voxels processed at once (memory vs. speed).
        """
        device = self.device
        depth = depth.to(device, torch.float32)
        H, W = depth.shape
        T_cam_world = torch.linalg.inv(T_world_cam.to(device, torch.float64)).float()
        R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
        K = K.to(device, torch.float32)
        if rgb is not None:
            rgb = rgb.to(device, torch.float32).reshape(H * W, 3)
            self.has_color = True
        X, Y, Z = self.shape
        # p_cam(i, j, k) = R (origin + voxel (i, j, k)) + t: affine in the indices, so one slab of x-rows at a
        # time is three broadcast additions.
        base = R @ self.origin + t
        steps = R * self.voxel_size  # column a: the camera-frame step along world axis a
        j_term = torch.arange(Y, device=device, dtype=torch.float32)[:, None, None] * steps[:, 1]
        k_term = torch.arange(Z, device=device, dtype=torch.float32)[None, :, None] * steps[:, 2]
        jk = (j_term + k_term).reshape(Y * Z, 3)
        rows = max(1, chunk_voxels // (Y * Z))
        depth_flat = depth.reshape(-1)
        for i0 in range(0, X, rows):
            i1 = min(X, i0 + rows)
            i_term = torch.arange(i0, i1, device=device, dtype=torch.float32)[:, None, None] * steps[:, 0]
            p_cam = (base + i_term + jk[None]).reshape(-1, 3)
            z = p_cam[:, 2]
            z_safe = z.clamp_min(NEAR)
            u = torch.floor(K[0, 0] * p_cam[:, 0] / z_safe + K[0, 2])
            v = torch.floor(K[1, 1] * p_cam[:, 1] / z_safe + K[1, 2])
            inside = (z > NEAR) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            pixel = (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long()
            d = depth_flat[pixel]
            sdf = d - z
            update = (inside & (d > 0) & (sdf >= -self.truncation)).nonzero().squeeze(1)
            if update.numel() == 0:
                continue
            tsdf = self.tsdf[i0:i1].view(-1)
            weight = self.weight[i0:i1].view(-1)
            w_old = weight[update]
            w_new = w_old + 1.0
            observed = (sdf[update] / self.truncation).clamp(max=1.0)
            tsdf[update] = (tsdf[update] * w_old + observed) / w_new
            weight[update] = w_new
            if rgb is not None:
                color = self.color[i0:i1].view(-1, 3)
                color[update] = (color[update] * w_old[:, None] + rgb[pixel[update]]) / w_new[:, None]

    def integrate_cameras(
        self,
        depths: Float[Tensor, "C H W"] | Sequence[Float[Tensor, "_ _"]],
        cameras: Cameras,
        rgbs: Float[Tensor, "C H W 3"] | Sequence[Float[Tensor, "_ _ 3"]] | None = None,
        chunk_voxels: int = DEFAULT_CHUNK_VOXELS,
    ) -> None:
        """`integrate` every view of `cameras` (each view's depth and colour at its camera's size: one stacked
        tensor when the views share a size, else a list)."""
        for c in range(len(cameras)):
            rgb = None if rgbs is None else rgbs[c]
            self.integrate(depths[c], cameras.T_world_cam[c], cameras.Ks[c], rgb, chunk_voxels)

    def extract_mesh(self, min_weight: float = 0.0) -> trimesh.Trimesh:
        """The zero level set as a mesh in world coordinates, with vertex colours when colours were fused.

        Args:
            min_weight: voxels with at most this many observations count as unobserved; faces touching them
                are dropped.

        Returns:
            The surface (empty when the volume holds no zero crossing); normals point to free space.
        """
        from skimage.measure import marching_cubes

        tsdf = self.tsdf.cpu().numpy()
        observed = (self.weight > min_weight).cpu().numpy()
        if not observed.any() or tsdf[observed].min() >= 0 or tsdf[observed].max() <= 0:
            return trimesh.Trimesh()
        # The TSDF descends towards the object (negative inside): skimage's "descent" case, whose normals then
        # point out of the object, into free space.
        verts, faces, _, _ = marching_cubes(tsdf, level=0.0, gradient_direction="descent")
        # Each vertex lies on a grid edge; keep it only if both of that edge's voxels were observed.
        lo = np.floor(verts).astype(np.int64)
        hi = np.minimum(np.ceil(verts).astype(np.int64), np.array(self.shape) - 1)
        vertex_ok = observed[lo[:, 0], lo[:, 1], lo[:, 2]] & observed[hi[:, 0], hi[:, 1], hi[:, 2]]
        faces = faces[vertex_ok[faces].all(axis=1)]
        colors = self._colors_at(verts) if self.has_color else None
        origin = self.origin.cpu().numpy().astype(np.float64)
        mesh = trimesh.Trimesh(
            vertices=origin + verts.astype(np.float64) * self.voxel_size,
            faces=faces,
            vertex_colors=colors,
            process=False,
        )
        mesh.remove_unreferenced_vertices()
        return mesh

    def _colors_at(self, verts: np.ndarray) -> np.ndarray:
        """Trilinear colour at grid coordinates, averaging only over observed voxels. Returns uint8 RGBA."""
        from scipy.ndimage import map_coordinates

        observed = (self.weight > 0).float().cpu().numpy()
        color = self.color.cpu().numpy()
        coords = verts.T.astype(np.float64)
        norm = map_coordinates(observed, coords, order=1, mode="nearest")
        rgb = np.stack(
            [map_coordinates(color[..., c] * observed, coords, order=1, mode="nearest") for c in range(3)], 1
        )
        rgb = rgb / np.maximum(norm, 1e-6)[:, None]
        alpha = np.ones((len(verts), 1))
        return (np.clip(np.concatenate([rgb, alpha], 1), 0, 1) * 255).round().astype(np.uint8)


def keep_largest_components(mesh: trimesh.Trimesh, keep: int, min_faces: int = 0) -> trimesh.Trimesh:
    """The `keep` connected components with the most faces (all when keep <= 0), dropping those with fewer than
    `min_faces` faces. Vertex colours are kept."""
    if len(mesh.faces) == 0 or (keep <= 0 and min_faces <= 0):
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] >= max(min_faces, 1)]
    if keep > 0:
        order = order[:keep]
    out = mesh.copy()
    out.update_faces(np.isin(labels, order))
    out.remove_unreferenced_vertices()
    return out


def fuse_open3d(
    depths: Float[Tensor, "C H W"] | Sequence[Float[Tensor, "_ _"]],
    cameras: Cameras,
    bounds: Sequence[float | int] | Tensor | np.ndarray,
    voxel_size: float,
    truncation: float,
    rgbs: Float[Tensor, "C H W 3"] | Sequence[Float[Tensor, "_ _ 3"]] | None = None,
) -> trimesh.Trimesh:
    """The same fusion with open3d's `UniformTSDFVolume` (a cube: the box's longest side sets its size).

    Raises:
        ImportError: open3d is not installed (`pip install splat4d[o3d]`).
    """
    import open3d as o3d

    b = _as_bounds(bounds)
    length = float((b[3:] - b[:3]).max())
    integration = o3d.pipelines.integration
    volume = integration.UniformTSDFVolume(
        length=length,
        resolution=max(2, math.ceil(length / voxel_size)),
        sdf_trunc=float(truncation),
        color_type=integration.TSDFVolumeColorType.RGB8,
        origin=b[:3].reshape(3, 1),
    )
    T_cam_world = cameras.T_cam_world.detach().cpu().double().numpy()
    Ks = cameras.Ks.detach().cpu().double().numpy()
    for c in range(len(cameras)):
        depth = np.ascontiguousarray(depths[c].detach().cpu().numpy().astype(np.float32))
        rgb = np.zeros((*depth.shape, 3)) if rgbs is None else rgbs[c].detach().cpu().numpy()
        color = np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(color),
            o3d.geometry.Image(depth),
            depth_scale=1.0,
            depth_trunc=1e9,
            convert_rgb_to_intensity=False,
        )
        K = Ks[c]
        # open3d puts pixel centres at integers, we at +0.5.
        intrinsic = o3d.camera.PinholeCameraIntrinsic(
            cameras.widths[c], cameras.heights[c], K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5
        )
        volume.integrate(rgbd, intrinsic, T_cam_world[c])
    o3d_mesh = volume.extract_triangle_mesh()
    vertices = np.asarray(o3d_mesh.vertices)
    colors = np.asarray(o3d_mesh.vertex_colors) if rgbs is not None and o3d_mesh.has_vertex_colors() else None
    if colors is not None:
        colors = (np.clip(colors, 0, 1) * 255).round().astype(np.uint8)
    return trimesh.Trimesh(vertices, np.asarray(o3d_mesh.triangles), vertex_colors=colors, process=False)
