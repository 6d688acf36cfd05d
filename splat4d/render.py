"""`render`: the one entry point from a Gaussian scene and cameras to images.

It chains the staged rasterizer ops in order: eval_sh → project → intersect_tiles → rasterize, and derives
expected and median depth from the same pass (depth rides along as an extra channel).
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

import cuda_rasterizer as cr
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians


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


class RenderOutput(NamedTuple):
    rgb: Float[Tensor, "C H W 3"]
    alpha: Float[Tensor, "C H W 1"]
    depth: Float[Tensor, "C H W 1"]
    """Expected depth, normalised by alpha (0 where nothing was hit)."""
    median_depth: Float[Tensor, "C H W 1"]
    """Depth of the Gaussian where transmittance crosses 0.5 (0 where it never does)."""
    info: dict[str, Any]
    """What densification needs: means2d (in the graph), radii, width, height, n_cameras, gaussian_ids."""


def render(gaussians: Gaussians, cameras: Cameras, settings: RenderSettings | None = None) -> RenderOutput:
    """Render `gaussians` from every camera in `cameras` (all at `cameras.width` × `cameras.height`)."""
    s = settings or RenderSettings()
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
    covars = cr.quat_scale_to_covar(gaussians.quats, gaussians.scales)
    proj = cr.project(
        gaussians.means, covars, gaussians.opacities, cameras.T_cam_world, cameras.Ks, raster, s.backend
    )

    degree = gaussians.sh_degree if s.sh_degree is None else min(s.sh_degree, gaussians.sh_degree)
    dirs = gaussians.means[None] - cameras.centers[:, None]
    rgb = torch.clamp_min(cr.eval_sh(degree, dirs, gaussians.sh_coeffs, s.backend) + 0.5, 0.0)

    channels = torch.cat([rgb, proj.depths[..., None]], dim=-1)
    background = torch.tensor([*s.background, 0.0], dtype=rgb.dtype, device=rgb.device).expand(C, 4)
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
    return RenderOutput(out.colors[..., :3], out.alphas, depth, median_depth, info)
