"""Public differentiable ops: validate inputs, pick a backend, call it.

Every op takes `backend=None` (choose from the tensors' device: `cpu` kernels for CPU tensors, `cuda` kernels for
CUDA tensors) or a forced `"reference" | "cpu" | "cuda"`. All three compute the same function (../README.md).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import _backend, reference
from ._autograd import EvalSHFn, ProjectFn, RasterizeFn
from ._backend import Backend
from .types import Projected, RasterOutput, RasterSettings, TileIntersections


def _check(name: str, x: Tensor, shape: tuple[int | None, ...], finite: bool = False) -> None:
    """Raise a one-line ValueError naming `name` when `x` has the wrong shape or holds NaN/Inf."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} has shape {list(x.shape)}, expected {want}")
    if finite and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def _same_device(**tensors: Tensor | None) -> torch.device:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    first = next(iter(devices.values()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"{name} is on {dev} but other inputs are on {first}")
    return first


def quat_scale_to_covar(quats: Float[Tensor, "N 4"], scales: Float[Tensor, "N 3"]) -> Float[Tensor, "N 6"]:
    """Covariances Σ = R S Sᵀ Rᵀ from (w, x, y, z) quaternions (normalised here) and scales, packed
    (xx, xy, xz, yy, yz, zz). Plain torch (autograd gives the backward) on every backend: it is elementwise
    and cheap next to projection."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip
    M = R * scales[:, None, :]
    S = M @ M.transpose(1, 2)
    return torch.stack([S[:, 0, 0], S[:, 0, 1], S[:, 0, 2], S[:, 1, 1], S[:, 1, 2], S[:, 2, 2]], dim=-1)


def project(
    means: Float[Tensor, "N 3"],
    covars: Float[Tensor, "N 6"],
    opacities: Float[Tensor, " N"],
    T_cam_world: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    settings: RasterSettings,
    backend: Backend | None = None,
) -> Projected:
    """Project 3D Gaussians into C pinhole cameras (EWA splatting with 0.3 px dilation, near/far culling).

    Args:
        means: world-space centres.
        covars: packed world-space covariances, see `quat_scale_to_covar`.
        opacities: activated opacities in [0, 1].
        T_cam_world: world-to-camera transforms (OpenCV camera axes).
        Ks: pinhole intrinsics.
        settings: image size, near/far, eps2d, antialiased.
    Returns:
        `Projected(means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32, opacities [C,N])`.
    """
    device = _same_device(means=means, covars=covars, opacities=opacities, T_cam_world=T_cam_world, Ks=Ks)
    N, C = means.shape[0], T_cam_world.shape[0]
    f = settings.check_finite
    _check("means", means, (N, 3), f)
    _check("covars", covars, (N, 6), f)
    _check("opacities", opacities, (N,), f)
    _check("T_cam_world", T_cam_world, (C, 4, 4), f)
    _check("Ks", Ks, (C, 3, 3), f)
    s = settings
    if _backend.resolve(backend, device) == "reference":
        out = reference.project(
            means,
            covars,
            opacities,
            T_cam_world,
            Ks,
            s.width,
            s.height,
            s.eps2d,
            s.near,
            s.far,
            s.antialiased,
        )
        return Projected(*out)
    args = (x.contiguous() for x in (means, covars, opacities, T_cam_world, Ks))
    return Projected(*ProjectFn.apply(*args, settings))


def eval_sh(
    degree: int,
    dirs: Float[Tensor, "C N 3"],
    coeffs: Float[Tensor, "N K D"],
    backend: Backend | None = None,
) -> Float[Tensor, "C N D"]:
    """Raw spherical-harmonics colour `Σ_k Y_k(dir/|dir|) coeffs[:, k]` for degrees 0..3 (3DGS basis).

    The +0.5 offset and clamp of 3DGS are applied by `splat4d.render`, not here.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    C, N = dirs.shape[0], coeffs.shape[0]
    _check("dirs", dirs, (C, N, 3))
    _check("coeffs", coeffs, (N, None, None))
    if coeffs.shape[1] < (degree + 1) ** 2:
        raise ValueError(
            f"coeffs has {coeffs.shape[1]} SH coefficients, degree {degree} needs {(degree + 1) ** 2}"
        )
    device = _same_device(dirs=dirs, coeffs=coeffs)
    if _backend.resolve(backend, device) == "reference":
        return reference.eval_sh(degree, dirs, coeffs)
    return EvalSHFn.apply(degree, dirs.contiguous(), coeffs.contiguous())


def intersect_tiles(
    means2d: Float[Tensor, "C N 2"],
    radii: Int[Tensor, "C N 2"],
    depths: Float[Tensor, "C N"],
    settings: RasterSettings,
    backend: Backend | None = None,
) -> TileIntersections:
    """Depth-sorted (camera, tile, Gaussian) pairs for 16×16 tiles, and each tile's start in that list."""
    C, N = means2d.shape[:2]
    _check("means2d", means2d, (C, N, 2))
    _check("radii", radii, (C, N, 2))
    _check("depths", depths, (C, N))
    device = _same_device(means2d=means2d, radii=radii, depths=depths)
    s = settings
    with torch.no_grad():
        if _backend.resolve(backend, device) == "reference":
            return TileIntersections(
                *reference.intersect_tiles(means2d, radii, depths, s.width, s.height, s.tile_size)
            )
        out = _backend.ops().intersect_tiles(
            means2d.detach().contiguous(), radii.int().contiguous(), depths.detach().contiguous(),
            s.width, s.height, s.tile_size,
        )  # fmt: skip
    return TileIntersections(*out)


def rasterize(
    means2d: Float[Tensor, "C N 2"],
    conics: Float[Tensor, "C N 3"],
    colors: Float[Tensor, "C N D"],
    opacities: Float[Tensor, "C N"],
    depths: Float[Tensor, "C N"],
    radii: Int[Tensor, "C N 2"],
    settings: RasterSettings,
    background: Float[Tensor, "C D"] | None = None,
    isect: TileIntersections | None = None,
    backend: Backend | None = None,
) -> RasterOutput:
    """Front-to-back alpha compositing of projected Gaussians (3DGS eq. 3), any number of channels D.

    Args:
        means2d, conics, opacities, depths, radii: from `project`.
        colors: per-camera per-Gaussian channels (RGB, features, depth, ...).
        background: colour composited behind, per camera; None means zeros.
        isect: precomputed `intersect_tiles` result (computed here if None; ignored by the reference backend).
    Returns:
        `RasterOutput(colors [C,H,W,D], alphas [C,H,W,1], median_ids [C,H,W])`. With `settings.absgrad`, the backward
        pass also stores the summed absolute image-plane gradients in `means2d.absgrad`.
    """
    device = _same_device(
        means2d=means2d, conics=conics, colors=colors, opacities=opacities, background=background
    )
    C, N = means2d.shape[:2]
    D = colors.shape[-1] if colors.dim() == 3 else -1
    f = settings.check_finite
    _check("means2d", means2d, (C, N, 2), f)
    _check("conics", conics, (C, N, 3), f)
    _check("colors", colors, (C, N, D), f)
    _check("opacities", opacities, (C, N), f)
    _check("depths", depths, (C, N), f)
    _check("radii", radii, (C, N, 2))
    if background is not None:
        _check("background", background, (C, D), f)
    s = settings
    chosen = _backend.resolve(backend, device)
    if chosen == "reference":
        out = reference.rasterize(
            means2d, conics, colors, opacities, depths, radii, s.width, s.height, background, s.smooth_cutoff
        )
        return RasterOutput(*out)
    if isect is None:
        isect = intersect_tiles(means2d, radii, depths, settings, chosen)
    bg = None if background is None else background.contiguous()
    rgb, alpha, median_ids = RasterizeFn.apply(
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(), bg,
        isect.tile_offsets, isect.flatten_ids, settings,
    )  # fmt: skip
    return RasterOutput(rgb, alpha, median_ids.long())
