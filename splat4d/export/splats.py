"""Splat-file export of a trained scene: the 3DGS PLY, the compact .splat, and for 4D scenes the 4D PLY plus 3D
PLYs of the scene sliced at chosen times (which any 3DGS viewer can show, one frame each).

`splat4d export splats SCENE` (wired in `splat4d/cli.py`) runs `PlyExport.main`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro
from jaxtyping import Float
from torch import Tensor

import cuda_rasterizer as cr
from splat4d.errors import UsageError
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.geometry import rotmat_to_quat
from splat4d.io.atomic import check_output_file
from splat4d.io.ply import write_ply, write_ply_4d
from splat4d.io.splat import write_splat
from splat4d.pipeline import PipelineSpec

# Sliced opacities are clamped into (0, 1) before the logit so that it stays finite in float32.
_OPACITY_EPS = 1e-7
# Smallest variance kept along a principal axis of a sliced covariance (slicing can round a flat axis to ≤ 0).
_MIN_VARIANCE = 1e-20


def unpack_covars(covars: Float[Tensor, "N 6"]) -> Float[Tensor, "N 3 3"]:
    """Symmetric 3x3 matrices from the packed upper triangle (xx, xy, xz, yy, yz, zz)."""
    xx, xy, xz, yy, yz, zz = covars.unbind(-1)
    return torch.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], dim=-1).reshape(-1, 3, 3)


def covars_to_scales_quats(
    covars: Float[Tensor, "N 6"],
) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 4"]]:
    """Scales and unit quaternions (w, x, y, z) with R diag(scales²) Rᵀ = Σ: the eigendecomposition of Σ, its
    eigenvector matrix made a proper rotation (det +1) by flipping the last axis where needed."""
    eigenvalues, R = torch.linalg.eigh(unpack_covars(covars).double())
    R = torch.where(torch.linalg.det(R)[:, None, None] < 0, R * R.new_tensor([1.0, 1.0, -1.0]), R)
    scales = eigenvalues.clamp_min(_MIN_VARIANCE).sqrt()
    return scales.to(covars.dtype), rotmat_to_quat(R).to(covars.dtype)


@torch.no_grad()
def slice_to_gaussians(
    gaussians: Gaussians4D, t: float, cull_threshold: float = 1.0 / 255.0, sh_degree: int | None = None
) -> Gaussians:
    """The 3D scene a 4D scene renders as at time t: what `render` rasterizes at t, as a `Gaussians`.

    `cuda_rasterizer.slice_4d` conditions each Gaussian on t; Gaussians whose temporal weight is below
    `cull_threshold` are dropped (as `render` does; at 1/255 or less the image is unchanged). The sliced covariance
    becomes log-scales and a quaternion by eigendecomposition, the sliced opacity a logit, and the colour the SH
    coefficients summed over the time bases weighted by cos(2π m t / time_period), which `eval_sh` then evaluates
    exactly as `eval_sh_4d` would at t.
    """
    sliced = cr.slice_4d(gaussians.means4, gaussians.covars4, gaussians.opacities, t)
    kept = cr.cull_by_time(sliced.temporal_weights, cull_threshold)
    scales, quats = covars_to_scales_quats(sliced.covars[kept])
    opacities = sliced.opacities[kept].clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
    basis = torch.tensor(
        cr.ops.temporal_basis(gaussians.time_degree, t, gaussians.time_period),
        dtype=gaussians.sh_coeffs.dtype,
    ).to(gaussians.sh_coeffs.device)
    coeffs = (gaussians.sh_coeffs[kept] * basis[None, :, None, None]).sum(1)
    if sh_degree is not None:
        coeffs = coeffs[:, : (sh_degree + 1) ** 2]
    return Gaussians(
        {
            "means": sliced.means[kept].clone(),
            "log_scales": scales.log(),
            "quats": quats,
            "opacity_logits": torch.logit(opacities),
            "sh0": coeffs[:, :1].contiguous(),
            "shN": coeffs[:, 1:].contiguous(),
        }
    )


def frame_times(n: int) -> list[float]:
    """n times spread evenly over [0, 1], both ends included (0.5 for a single frame)."""
    if n == 1:
        return [0.5]
    return [i / (n - 1) for i in range(n)]


@dataclass
class PlyExport:
    """Write a scene's Gaussians as a splat file: the 3DGS PLY (most viewers), the compact .splat (antimatter15's
    web viewer), and for 4D scenes the 4D PLY extension plus, with --times N, N 3D PLYs of the scene at times
    evenly spread over [0, 1] (frame_0000.ply, ... beside OUT)."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder written by `splat4d reconstruct`."""
    out: Path | None = None
    """Output file (default: SCENE/exports/point_cloud.ply, or .splat with --format splat)."""
    format: Literal["ply", "splat"] = "ply"
    """ply: every parameter, exact (4D scenes: the 4D extension); splat: 32 bytes per Gaussian, colour without
    view dependence, quantised. A 4D scene as .splat is its slice at t = 0.5."""
    times: int = 0
    """4D scenes: also write this many per-frame 3D PLYs, sliced at times evenly spread over [0, 1]."""
    overwrite: bool = False
    """Replace existing output files."""

    def output_path(self) -> Path:
        return self.out if self.out is not None else self.scene / "exports" / f"point_cloud.{self.format}"

    def main(self, pipelines: Mapping[str, PipelineSpec]) -> list[Path]:
        """Load the scene on the CPU and write the files. `pipelines` is the registry (`pipelines.PIPELINES`),
        passed in by the caller because this core module may not import the pipelines layer.

        Returns the paths written.
        """
        from splat4d.reconstruct import load_trained

        trained = load_trained(self.scene, dict(pipelines), torch.device("cpu"))
        trained.refuse_streamed(self.scene, "export ply")
        return export_splats(
            trained.pipeline.gaussians, self.output_path(), self.format, self.times, self.overwrite
        )


def export_splats(
    gaussians: Gaussians | Gaussians4D,
    out: Path,
    format: Literal["ply", "splat"] = "ply",
    times: int = 0,
    overwrite: bool = False,
) -> list[Path]:
    """Write `gaussians` to `out` (atomically; never over an existing file unless `overwrite`), and for a 4D scene
    `times` sliced 3D PLYs `frame_XXXX.ply` in `out`'s folder. Returns the paths written."""
    out = Path(out)
    is_4d = isinstance(gaussians, Gaussians4D)
    if times and not is_4d:
        raise UsageError("--times: needs a 4D scene; this one is static")
    frames = [out.parent / f"frame_{i:04d}.ply" for i in range(times)]
    if times < 0:
        raise UsageError(f"--times: must be 0 or more, got {times}")
    for path in (out, *frames):
        check_output_file(path, overwrite)
    if format == "splat":
        write_splat(out, slice_to_gaussians(gaussians, 0.5) if is_4d else gaussians)
    elif is_4d:
        write_ply_4d(out, gaussians)
    else:
        write_ply(out, gaussians)
    for path, t in zip(frames, frame_times(times), strict=True):
        write_ply(path, slice_to_gaussians(gaussians, t))
    return [out, *frames]
