"""Public differentiable ops: validate inputs, pick a backend, call it.

Every op takes `backend=None` (choose from the tensors' device: `cpu` kernels for CPU tensors, `cuda` kernels for
CUDA tensors) or a forced `"reference" | "cpu" | "cuda"`. All three compute the same function (../README.md).
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import _backend, reference, reference_4d
from ._autograd import EvalSHFn, ProjectFn, RasterizeFn, Slice4DFn
from ._backend import Backend
from .types import Projected, RasterOutput, RasterSettings, Sliced4D, TileIntersections


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


# ----------------------------------------------------------------------------------------------- 4D Gaussians -----
# 4D Gaussians (Yang et al. 2024, "Real-time Photorealistic Dynamic Scene Representation and Rendering with 4D
# Gaussian Splatting") are conditioned on a time t by `slice_4d` into ordinary 3D Gaussians; `project`,
# `intersect_tiles` and `rasterize` never see time.


def _isoclinic_left(q: Float[Tensor, "N 4"]) -> Float[Tensor, "N 4 4"]:
    """L(q): the matrix of v ↦ q ⊗ v, i.e. of left quaternion multiplication (Yang et al. 2024)."""
    a, b, c, d = q.unbind(-1)
    return torch.stack([a, -b, -c, -d, b, a, -d, c, c, d, a, -b, d, -c, b, a], dim=-1).reshape(-1, 4, 4)


def _isoclinic_right(q: Float[Tensor, "N 4"]) -> Float[Tensor, "N 4 4"]:
    """R(q): the matrix of v ↦ v ⊗ q, i.e. of right quaternion multiplication (Yang et al. 2024)."""
    p, q_, r, s = q.unbind(-1)
    return torch.stack([p, -q_, -r, -s, q_, p, s, -r, r, -s, p, q_, s, r, -q_, p], dim=-1).reshape(-1, 4, 4)


def covar4d_from_quats(
    quats_l: Float[Tensor, "N 4"], quats_r: Float[Tensor, "N 4"], scales4: Float[Tensor, "N 4"]
) -> Float[Tensor, "N 10"]:
    """4D covariances Σ₄ = R S Sᵀ Rᵀ with R = L(q_l) R(q_r) (Yang et al. 2024), packed
    (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt).

    Args:
        quats_l, quats_r: left and right (w, x, y, z) quaternions, normalised here. q_l = q_r = (1, 0, 0, 0) is no
            rotation (a 3D Gaussian with a lifespan); `spatial_quats_to_quats_lr` gives the pair of a purely spatial
            rotation.
        scales4: activated scales along the rotated (x, y, z, t) axes.
    Plain torch on every backend (autograd gives the backward), like `quat_scale_to_covar`.
    """
    q_l = torch.nn.functional.normalize(quats_l, dim=-1)
    q_r = torch.nn.functional.normalize(quats_r, dim=-1)
    M = _isoclinic_left(q_l) @ _isoclinic_right(q_r) * scales4[:, None, :]
    S = M @ M.transpose(1, 2)
    rows, cols = torch.triu_indices(4, 4, device=S.device)
    return S[:, rows, cols]


def spatial_quats_to_quats_lr(
    quats: Float[Tensor, "N 4"],
) -> tuple[Float[Tensor, "N 4"], Float[Tensor, "N 4"]]:
    """The (q_l, q_r) pair whose 4D rotation is the 3D rotation of `quats` (as in `quat_scale_to_covar`) on
    (x, y, z) and leaves t fixed: for q = (w, a, b, c), q_l = (w, c, -b, a) and q_r = (w, c, -b, -a).

    Yang et al. read (x, y, z, t) as the quaternion x + y i + z j + t k, so a spatial rotation is not the
    plain conjugation q ⊗ v ⊗ q̄ (that would fix x, not t); this is that conjugation moved to the (x, y, z) axes.
    """
    w, a, b, c = quats.unbind(-1)
    return torch.stack([w, c, -b, a], dim=-1), torch.stack([w, c, -b, -a], dim=-1)


def rotors_to_quats_lr(rotors: Float[Tensor, "N 8"]) -> tuple[Float[Tensor, "N 4"], Float[Tensor, "N 4"]]:
    """The (q_l, q_r) pair with the same 4D rotation as the rotor r = s + Σ b_ij e_ij + p e_xyzt, acting as
    v ↦ r v r̃ (Duan et al. 2024, "4D-Rotor Gaussian Splatting"); `rotors` = (s, b_xy, b_xz, b_yz, b_xt, b_yt, b_zt, p).

    The even subalgebra of Cl(4, 0) is H ⊕ H, so this map is linear:
    q_l = (s - p, -b_xy - b_zt, -b_xz + b_yt, -b_yz - b_xt), q_r = (s + p, -b_xy + b_zt, -b_xz - b_yt, b_yz - b_xt).
    Normalising q_l and q_r separately (as `covar4d_from_quats` does) projects any 8-vector onto a true rotor.
    """
    s, b_xy, b_xz, b_yz, b_xt, b_yt, b_zt, p = rotors.unbind(-1)
    quats_l = torch.stack([s - p, -b_xy - b_zt, -b_xz + b_yt, -b_yz - b_xt], dim=-1)
    quats_r = torch.stack([s + p, -b_xy + b_zt, -b_xz - b_yt, b_yz - b_xt], dim=-1)
    return quats_l, quats_r


def covar4d_from_rotors(rotors: Float[Tensor, "N 8"], scales4: Float[Tensor, "N 4"]) -> Float[Tensor, "N 10"]:
    """4D covariances from 4D rotors (Duan et al. 2024) and scales: `covar4d_from_quats` of `rotors_to_quats_lr`."""
    quats_l, quats_r = rotors_to_quats_lr(rotors)
    return covar4d_from_quats(quats_l, quats_r, scales4)


def slice_4d(
    means4: Float[Tensor, "N 4"],
    covars4: Float[Tensor, "N 10"],
    opacities: Float[Tensor, " N"],
    t: float,
    backend: Backend | None = None,
    check_finite: bool = True,
) -> Sliced4D:
    """Condition 4D Gaussians on time t (Yang et al. 2024): the 3D Gaussians rendered at t.

    Args:
        means4: centres (x, y, z, t).
        covars4: packed 4D covariances (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt), see `covar4d_from_quats`.
        opacities: activated opacities in [0, 1].
        t: the time to render (not differentiated).
        check_finite: raise a clear error when an input holds NaN or Inf.
    Returns:
        `Sliced4D(means [N,3], covars [N,6], opacities [N], temporal_weights [N])`, differentiable in the inputs.
        Gaussians with Σ_tt <= 0 pass through unchanged in space with temporal weight 0.
    """
    device = _same_device(means4=means4, covars4=covars4, opacities=opacities)
    N = means4.shape[0]
    _check("means4", means4, (N, 4), check_finite)
    _check("covars4", covars4, (N, 10), check_finite)
    _check("opacities", opacities, (N,), check_finite)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t}")
    if _backend.resolve(backend, device) == "reference":
        return Sliced4D(*reference_4d.slice_4d(means4, covars4, opacities, t))
    return Sliced4D(*Slice4DFn.apply(means4.contiguous(), covars4.contiguous(), opacities.contiguous(), t))


def cull_by_time(temporal_weights: Float[Tensor, " N"], threshold: float) -> Int[Tensor, " K"]:
    """Indices (ascending, int64) of the Gaussians whose temporal weight is at least `threshold`.

    A dropped Gaussian has sliced opacity < threshold, so with threshold <= 1/255 `project` would cull it anyway and
    the image is unchanged; above that each dropped Gaussian changes a pixel by less than threshold × colour range.
    """
    with torch.no_grad():
        return torch.nonzero(temporal_weights >= threshold).squeeze(1)


def temporal_basis(time_degree: int, t: float, period: float = 1.0) -> list[float]:
    """The cosine basis cos(2π m t / period), m = 0..time_degree, of 4D colour (Yang et al. 2024)."""
    return [math.cos(2 * math.pi * m * t / period) for m in range(time_degree + 1)]


def eval_sh_4d(
    degree: int,
    time_degree: int,
    dirs: Float[Tensor, "C N 3"],
    coeffs: Float[Tensor, "N M K D"],
    t: float,
    period: float = 1.0,
    backend: Backend | None = None,
) -> Float[Tensor, "C N D"]:
    """Raw 4D colour Σ_m cos(2π m t / period) Σ_k Y_k(dir/|dir|) coeffs[:, m, k] ("4D spherindrical harmonics",
    Yang et al. 2024) for m = 0..time_degree; time_degree 0 is a static colour.

    Args:
        coeffs: per Gaussian, M >= time_degree + 1 time bases of K >= (degree + 1)² SH coefficients.
        t: the time (not differentiated); period: the scene's time span (Yang et al. use the sequence length).
    Because t is shared by every Gaussian, the time bases are summed into one [N, K, D] set first and `eval_sh` runs
    once: the same function as one `eval_sh` per basis, M times cheaper.
    """
    N = coeffs.shape[0]
    _check("coeffs", coeffs, (N, None, None, None))
    if not 0 <= time_degree < coeffs.shape[1]:
        raise ValueError(
            f"coeffs has {coeffs.shape[1]} time bases, time_degree {time_degree} needs {time_degree + 1}"
        )
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    basis = torch.tensor(temporal_basis(time_degree, t, period), dtype=coeffs.dtype, device=coeffs.device)
    coeffs_t = torch.einsum("m,nmkd->nkd", basis, coeffs[:, : time_degree + 1])
    return eval_sh(degree, dirs, coeffs_t, backend)
