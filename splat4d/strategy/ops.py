"""Operations that change a scene's Gaussians together with their optimizer state, and torch versions of the two
CUDA-only functions gsplat's MCMC strategy calls.

gsplat's `gsplat.strategy.ops` does the editing (duplicate, split, remove, reset_opa, relocate, sample_add keep
parameters, Adam moments and per-Gaussian state aligned); splat4d calls it through `gsplat_view`. Two of those
ops call CUDA kernels (`quat_scale_to_covar_preci` for the MCMC position noise, `compute_relocation` for
relocation and sampling); `torch_ops_for_gsplat` swaps in the torch versions below for the duration of a call.
`append` and `remove` add Gaussians with given parameters and drop masked ones, for strategies whose edits gsplat
has no op for (e.g. proximity-guided unpooling); they keep the same three things aligned.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

import gsplat.strategy.ops as gsplat_ops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.geometry import quat_to_rotmat
from splat4d.strategy.base import Optimizers, StrategyState
from splat4d.strategy.gsplat_adapter import gsplat_view


def quat_scale_to_covar_preci(
    quats: Float[Tensor, "*B 4"],
    scales: Float[Tensor, "*B 3"],
    compute_covar: bool = True,
    compute_preci: bool = True,
    triu: bool = False,
) -> tuple[Tensor | None, Tensor | None]:
    """Covariances Σ = R S² Rᵀ and precisions Σ⁻¹ = R S⁻² Rᵀ from quaternions and scales (a drop-in for
    `gsplat.quat_scale_to_covar_preci`, which needs CUDA).

    Args:
        quats: (w, x, y, z) rotations, normalised here.
        scales: activated (positive) scales.
        compute_covar: return the covariances (else None in their place).
        compute_preci: return the precisions (else None in their place).
        triu: pack each symmetric matrix as its upper triangle (xx, xy, xz, yy, yz, zz), [*B, 6].

    Returns:
        (covars, precis), each [*B, 3, 3] ([*B, 6] with `triu`) or None.
    """
    R = quat_to_rotmat(quats)

    def sandwich(diag: Tensor) -> Tensor:
        M = R * diag[..., None, :]  # R diag(d): column j of R scaled by d_j
        out = M @ M.transpose(-1, -2)
        if triu:
            out = out.flatten(-2)[..., [0, 1, 2, 4, 5, 8]]
        return out

    covars = sandwich(scales) if compute_covar else None
    precis = sandwich(1.0 / scales) if compute_preci else None
    return covars, precis


def compute_relocation(
    opacities: Float[Tensor, " N"],
    scales: Float[Tensor, "N 3"],
    ratios: Int[Tensor, " N"],
    binoms: Float[Tensor, "n_max n_max"],
) -> tuple[Float[Tensor, " N"], Float[Tensor, "N 3"]]:
    """Opacity and scale for each of `ratios` copies of a Gaussian that together replace it (a drop-in for
    `gsplat.relocation.compute_relocation`, which needs CUDA).

    3DGS as MCMC (Kheradmand et al. 2024), eq. 9: n copies with opacity o' = 1 - (1 - o)^(1/n) composite to the
    original opacity o at the centre, and scale s' = o s / D with

        D = Σ_{i=1..n} Σ_{k=0..i-1} C(i-1, k) (-1)^k o'^(k+1) / √(k+1)

    make the integral of the composited opacity along each axis equal the original's. Summing over i first
    (hockey stick, Σ_{i=k+1..n} C(i-1, k) = C(n, k+1)) leaves one sum over k, evaluated in float64 because its
    alternating terms cancel.

    Args:
        opacities: activated opacities o in (0, 1).
        scales: activated scales s.
        ratios: number of copies n of each Gaussian, clamped to [1, n_max].
        binoms: binomial table, binoms[j, k] = C(j, k) for k ≤ j (gsplat's MCMC state).

    Returns:
        (new_opacities, new_scales) for each copy.
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()
    o = opacities.double()
    o_new = 1.0 - (1.0 - o) ** (1.0 / n.double())
    k = torch.arange(n_max, device=o.device)
    # C(n, k+1) = Σ_{j=0..n-1} C(j, k): the table's column sums over its first n rows.
    coeffs = binoms.double().cumsum(dim=0)[n - 1]  # [N, n_max]
    signs = torch.where(k % 2 == 0, 1.0, -1.0).double()
    terms = coeffs * signs / torch.sqrt(k + 1.0).double() * o_new[:, None] ** (k + 1)
    denom = torch.where(k < n[:, None], terms, 0.0).sum(dim=-1)
    ratio = torch.where(denom > 0, o / denom, 1.0)
    new_scales = (ratio[:, None] * scales.double()).to(scales.dtype)
    return o_new.to(opacities.dtype), new_scales


def binomial_table(n_max: int = 51) -> Float[Tensor, "n_max n_max"]:
    """binoms[j, k] = C(j, k) for k ≤ j < n_max, else 0 (the table `compute_relocation` takes)."""
    return torch.tensor([[float(math.comb(j, k)) for k in range(n_max)] for j in range(n_max)])


@contextmanager
def torch_ops_for_gsplat(enabled: bool = True) -> Iterator[None]:
    """While open (and `enabled`), gsplat's strategy ops call the torch `quat_scale_to_covar_preci` and
    `compute_relocation` above instead of gsplat's CUDA kernels. The patch is scoped: it is undone on exit."""
    with ExitStack() as stack:
        if enabled:
            stack.enter_context(
                mock.patch.object(gsplat_ops, "quat_scale_to_covar_preci", quat_scale_to_covar_preci)
            )
            stack.enter_context(mock.patch.object(gsplat_ops, "compute_relocation", compute_relocation))
        yield


def reset_opacities(gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, value: float) -> None:
    """Clamp every opacity to at most `value` and zero the opacity logits' optimizer moments (3DGS opacity
    reset)."""
    with gsplat_view(gaussians, optimizers) as (params, opts):
        gsplat_ops.reset_opa(params=params, optimizers=opts, state=state, value=value)


EditFn = Callable[[str, Tensor], Tensor]
"""(name, tensor) → tensor: a parameter's or a per-Gaussian state's new rows."""


@torch.no_grad()
def edit_rows(
    gaussians: Gaussians | Gaussians4D,
    optimizers: Optimizers,
    rows_fn: EditFn,
    state_fn: EditFn,
    state: StrategyState | None = None,
) -> None:
    """Replace every parameter p by rows_fn(name, p), every per-Gaussian tensor s (first dimension N) of the
    optimizers' state (Adam's moments) by state_fn(parameter name, s) and of `state` by state_fn(key, s), keeping
    each optimizer pointed at its new parameter. One row edit for 3D and 4D Gaussians and every strategy."""
    n = len(gaussians)

    def per_gaussian(value: object) -> bool:
        return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n

    for name in list(gaussians.params.keys()):
        old = gaussians.params[name]
        new = torch.nn.Parameter(rows_fn(name, old.data), requires_grad=old.requires_grad)
        optimizer = optimizers.get(name)
        if optimizer is not None:
            moments = optimizer.state.pop(old, {})
            for key, value in moments.items():
                if per_gaussian(value):
                    moments[key] = state_fn(name, value)
            optimizer.param_groups[0]["params"] = [new]
            optimizer.state[new] = moments
        gaussians.params[name] = new
    for key, value in (state or {}).items():
        if per_gaussian(value):
            state[key] = state_fn(key, value)


@torch.no_grad()
def append(
    gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, new: dict[str, Tensor]
) -> None:
    """Add Gaussians with raw parameters `new` (an [M, ...] tensor for every parameter of `gaussians`) after the
    existing ones. Their Adam moments start at zero, and per-Gaussian tensors of `state` (first dimension N, such as
    gradient accumulators) get M zero rows."""
    if set(new) != set(gaussians.params.keys()):
        raise ValueError(f"append: parameters {sorted(new)} do not match {sorted(gaussians.params.keys())}")
    m = len(new["means"])

    def grow(_: str, value: Tensor) -> Tensor:
        return torch.cat([value, value.new_zeros(m, *value.shape[1:])])

    edit_rows(gaussians, optimizers, lambda name, p: torch.cat([p, new[name].to(p)]), grow, state)


@torch.no_grad()
def remove(gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, mask: Tensor) -> None:
    """Remove the Gaussians where `mask` [N] is True, with their rows of the optimizer moments and of the
    per-Gaussian tensors of `state`."""
    keep = ~mask
    edit_rows(gaussians, optimizers, lambda _, p: p[keep], lambda _, value: value[keep], state)
