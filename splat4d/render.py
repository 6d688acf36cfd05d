"""`render`: the one entry point from a Gaussian scene and cameras to images.

It chains the staged rasterizer ops in order: eval_sh → project → intersect_tiles → rasterize, and derives
expected and median depth from the same pass (depth rides along as an extra channel; so do normals when asked). A 4D scene is first sliced
at the render time into 3D Gaussians (slice_4d → cull_by_time → eval_sh_4d), then takes the same 3D path: the
rasterizer ops never see time.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

import cuda_rasterizer as cr
from splat4d.cameras import Cameras, pixel_rays
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.geometry import quat_to_rotmat


@dataclass(frozen=True)
class RenderSettings:
    """How to render: SH degree, filtering, background and backend."""

    sh_degree: int | None = None
    """SH degree to evaluate (None: all the scene has). Lower during warm-up."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """RGB composited behind the Gaussians."""
    near: float = 0.01
    far: float = 1e10
    eps2d: float = 0.3
    antialiased: bool = False
    """Mip-Splatting opacity compensation."""
    absgrad: bool = False
    """Accumulate absolute image-plane gradients (for AbsGS-style densification)."""
    backend: cr.ops.Backend | None = None
    """Force "reference", "cpu" or "cuda"; None picks from the tensors' device."""
    time_degree: int | None = None
    """4D scenes: number of cosine time bases of colour minus one (None: all the scene has)."""
    time_cull_threshold: float = 1.0 / 255.0
    """4D scenes: Gaussians whose temporal weight at t is below this are not projected. At or below 1/255 the image
    is unchanged (project would drop them anyway); above it, each dropped Gaussian changes a pixel by less than
    this times the colour range."""
    normals: bool = False
    """3D scenes: also render each Gaussian's normal (the axis of its smallest scale, turned to face the camera) in
    the camera frame and the depth where the ray meets the composited plane (`RenderOutput.normals`,
    `RenderOutput.planar_depth`). For the geometry regularisers and mesh extraction."""


class RenderOutput(NamedTuple):
    rgb: Float[Tensor, "C H W 3"]
    alpha: Float[Tensor, "C H W 1"]
    depth: Float[Tensor, "C H W 1"]
    """Expected depth, normalised by alpha (0 where nothing was hit)."""
    median_depth: Float[Tensor, "C H W 1"]
    """Depth of the Gaussian where transmittance crosses 0.5 (0 where it never does)."""
    info: dict[str, Any]
    """What densification needs: means2d (in the graph), radii, width, height, n_cameras, gaussian_ids. 4D scenes
    add t, kept_ids ([K] int64: the Gaussians rendered, which means2d and radii [C, K, ...] refer to),
    temporal_weights ([N], all Gaussians) and sliced_means ([K, 3], detached: their positions at t)."""
    normals: Float[Tensor, "C H W 3"] | None = None
    """With `RenderSettings.normals`: composited camera-frame normals (not normalised; length ≈ alpha)."""
    planar_depth: Float[Tensor, "C H W 1"] | None = None
    """With `RenderSettings.normals`: z-depth where the pixel's ray meets the plane of composited normal and
    composited distance to the camera (PGSR's unbiased depth; 0 where nothing faces the camera). Unlike the depth of
    Gaussian centres it follows a surface across a Gaussian's footprint, which matters for large, flat Gaussians
    seen at grazing angles."""


def render(
    gaussians: Gaussians | Gaussians4D,
    cameras: Cameras,
    settings: RenderSettings | None = None,
    t: float | None = None,
) -> RenderOutput:
    """Render `gaussians` from every camera in `cameras` (all at `cameras.width` × `cameras.height`).

    Args:
        t: for a `Gaussians4D`, the time to render; None takes it from `cameras.times`, which must then hold one
            time (split cameras at different times into separate calls). Not allowed for a 3D scene.
    """
    s = settings or RenderSettings()
    if isinstance(gaussians, Gaussians4D):
        return _render_4d(gaussians, cameras, s, _render_time(cameras, t))
    if t is not None:
        raise ValueError("render: t is only meaningful for a Gaussians4D scene")
    covars = cr.quat_scale_to_covar(gaussians.quats, gaussians.scales)
    degree = gaussians.sh_degree if s.sh_degree is None else min(s.sh_degree, gaussians.sh_degree)
    dirs = gaussians.means[None] - cameras.centers[:, None]
    rgb = torch.clamp_min(cr.eval_sh(degree, dirs, gaussians.sh_coeffs, s.backend) + 0.5, 0.0)
    planes = _camera_planes(gaussians, cameras) if s.normals else None
    return _render_3d(gaussians.means, covars, gaussians.opacities, rgb, cameras, s, planes)


def _camera_planes(gaussians: Gaussians, cameras: Cameras) -> Float[Tensor, "C N 4"]:
    """Per camera, each Gaussian's plane in the camera frame: its shortest axis n, signed to point towards the
    camera (the normal of the disc a flattened Gaussian becomes, as in 2DGS / PGSR), and n · mean (<= 0)."""
    R = quat_to_rotmat(gaussians.quats)  # [N, 3, 3], columns are the Gaussian's axes
    shortest = gaussians.scales.argmin(dim=-1)
    n_world = torch.gather(R, 2, shortest[:, None, None].expand(-1, 3, 1))[..., 0]  # [N, 3]
    R_cam_world = cameras.T_cam_world[:, :3, :3]
    n_cam = torch.einsum("cij,nj->cni", R_cam_world, n_world)
    means_cam = (
        torch.einsum("cij,nj->cni", R_cam_world, gaussians.means) + cameras.T_cam_world[:, None, :3, 3]
    )
    dist = (n_cam * means_cam).sum(-1, keepdim=True)
    facing = torch.where(dist > 0, -1.0, 1.0)
    return torch.cat([n_cam * facing, dist * facing], dim=-1)


def _render_time(cameras: Cameras, t: float | None) -> float:
    if t is not None:
        return float(t)
    if cameras.times is None:
        raise ValueError("render: a Gaussians4D scene needs t, or cameras with times")
    times = cameras.times.unique()
    if times.numel() != 1:
        raise ValueError(
            f"render: cameras hold {times.numel()} different times; render each time in its own call (or pass t)"
        )
    return float(times[0])


def _render_4d(gaussians: Gaussians4D, cameras: Cameras, s: RenderSettings, t: float) -> RenderOutput:
    """Slice at t, drop Gaussians that are negligible at t, colour from SH × time bases, then the 3D path."""
    sliced = cr.slice_4d(gaussians.means4, gaussians.covars4, gaussians.opacities, t, s.backend)
    kept = cr.cull_by_time(sliced.temporal_weights, s.time_cull_threshold)
    means, covars, opacities = sliced.means[kept], sliced.covars[kept], sliced.opacities[kept]

    degree = gaussians.sh_degree if s.sh_degree is None else min(s.sh_degree, gaussians.sh_degree)
    time_degree = (
        gaussians.time_degree if s.time_degree is None else min(s.time_degree, gaussians.time_degree)
    )
    dirs = means[None] - cameras.centers[:, None]
    raw = cr.eval_sh_4d(
        degree, time_degree, dirs, gaussians.sh_coeffs[kept], t, gaussians.time_period, s.backend
    )
    rgb = torch.clamp_min(raw + 0.5, 0.0)

    out = _render_3d(means, covars, opacities, rgb, cameras, s)
    out.info.update(
        {
            "t": t,
            "kept_ids": kept,
            "temporal_weights": sliced.temporal_weights,
            "sliced_means": means.detach(),
        }
    )
    return out


def _render_3d(
    means: Float[Tensor, "N 3"],
    covars: Float[Tensor, "N 6"],
    opacities: Float[Tensor, " N"],
    rgb: Float[Tensor, "C N 3"],
    cameras: Cameras,
    s: RenderSettings,
    planes: Float[Tensor, "C N 4"] | None = None,
) -> RenderOutput:
    """project → intersect_tiles → rasterize of activated 3D Gaussians with per-camera colours (and planes)."""
    raster = cr.RasterSettings(
        width=cameras.width,
        height=cameras.height,
        near=s.near,
        far=s.far,
        eps2d=s.eps2d,
        antialiased=s.antialiased,
        absgrad=s.absgrad,
    )
    C = len(cameras)
    proj = cr.project(means, covars, opacities, cameras.T_cam_world, cameras.Ks, raster, s.backend)

    parts = [rgb, proj.depths[..., None]] + ([planes.to(rgb.dtype)] if planes is not None else [])
    channels = torch.cat(parts, dim=-1)
    background = torch.zeros(C, channels.shape[-1], dtype=rgb.dtype, device=rgb.device)
    background[:, :3] = torch.tensor(s.background, dtype=rgb.dtype, device=rgb.device)
    out = cr.rasterize(
        proj.means2d, proj.conics, channels, proj.opacities, proj.depths, proj.radii, raster,
        background=background, backend=s.backend,
    )  # fmt: skip

    depth = out.colors[..., 3:] / out.alphas.clamp_min(1e-10)
    flat_depths = torch.cat([proj.depths.reshape(-1), proj.depths.new_zeros(1)])
    median_depth = flat_depths[out.median_ids][..., None]  # id -1 reads the appended 0
    info = {
        "means2d": proj.means2d,
        "radii": proj.radii,
        "width": cameras.width,
        "height": cameras.height,
        "n_cameras": C,
        "gaussian_ids": None,
    }
    normals = planar = None
    if planes is not None:
        normals = out.colors[..., 4:7]
        planar = _ray_plane_depth(normals, out.colors[..., 7:8], cameras.Ks)
    return RenderOutput(out.colors[..., :3], out.alphas, depth, median_depth, info, normals, planar)


def _ray_plane_depth(
    normals: Float[Tensor, "C H W 3"], dists: Float[Tensor, "C H W 1"], Ks: Float[Tensor, "C 3 3"]
) -> Float[Tensor, "C H W 1"]:
    """z of the point on each pixel centre's ray r = K⁻¹ (u, v, 1) (so r_z = 1) on the plane n · x = d: d / (n · r).
    Both n and d are alpha-weighted sums, so the weighting cancels. 0 where the plane does not face the ray."""
    _, H, W, _ = normals.shape
    n_dot_r = (normals * pixel_rays(Ks.to(normals.dtype), W, H)).sum(dim=-1)
    facing = n_dot_r < -1e-6
    depth = dists[..., 0] / torch.where(facing, n_dot_r, -torch.ones_like(n_dot_r))
    return torch.where(facing & (depth > 0), depth, torch.zeros_like(depth))[..., None]
