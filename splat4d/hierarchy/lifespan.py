"""The lifespan of a 4D Gaussian: the times at which the renderer draws it.

`cuda_rasterizer.slice_4d` gives each Gaussian the temporal weight w(t) = exp(-½ (t − μ_t)² / Σ_tt) (the
unnormalised marginal of the 4D Gaussian in t; Σ_tt is the tt entry of the 4D covariance, which a space-time
rotation mixes with the spatial scales, so it is not simply exp(scale_t)²), and `splat4d.render` culls it at t when
w(t) < threshold (`RenderSettings.time_cull_threshold`, 1/255). Solving w(t) >= threshold:

    (t − μ_t)² / Σ_tt <= 2 ln(1 / threshold)   ⇔   |t − μ_t| <= σ_t √(2 ln(1 / threshold)),   σ_t = √Σ_tt,

so the lifespan is μ_t ± 3.33 σ_t at 1/255. A Gaussian with Σ_tt <= 0 (no temporal extent) has w = 0 at every t and
an empty lifespan.

The kernels compute w in float32, so a Gaussian can pass the cull a few float32 ulps outside the exact interval;
`lifespans` widens it by a margin far larger than that rounding (and far smaller than any segment), so a Gaussian
drawn at t always has t inside its lifespan.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.gaussians import Gaussians4D
from splat4d.render import RenderSettings

DEFAULT_THRESHOLD: float = RenderSettings.time_cull_threshold
"""The renderer's default temporal cull threshold (1/255): Gaussians below it at t are not drawn."""

MARGIN_RELATIVE = 1e-5
"""Relative widening of the half-width: float32 rounding of w(t) moves the crossing by ~1e-7 of the half-width."""
MARGIN_ABSOLUTE = 1e-6
"""Absolute widening per unit of |μ_t| + 1: float32 rounding of t − μ_t is ~6e-8 · max(|t|, |μ_t|)."""


def lifespan_factor(threshold: float = DEFAULT_THRESHOLD) -> float:
    """k such that w(t) >= threshold ⇔ |t − μ_t| <= k σ_t: k = √(2 ln(1 / threshold)) (≈ 3.33 at 1/255)."""
    if not 0 < threshold < 1:
        raise ValueError(f"lifespan_factor: threshold must be in (0, 1), got {threshold}")
    return math.sqrt(2.0 * math.log(1.0 / threshold))


@torch.no_grad()
def lifespans(
    gaussians: Gaussians4D, threshold: float = DEFAULT_THRESHOLD, margin: bool = True
) -> tuple[Float[Tensor, " N"], Float[Tensor, " N"]]:
    """[start, end] of the times at which each Gaussian's temporal weight is at least `threshold`.

    Args:
        threshold: the render cull threshold the lifespan is for.
        margin: widen by `MARGIN_RELATIVE` / `MARGIN_ABSOLUTE` to cover float32 rounding in the kernels (what
            assignment to segments needs); False gives the exact μ_t ± k σ_t.
    Returns:
        (starts [N], ends [N]) in float64 on the scene's device; an empty lifespan (Σ_tt <= 0 or not finite) is
        (+inf, −inf).
    """
    mu_t = gaussians.means4[:, 3].detach().to(torch.float64)
    var_t = gaussians.covars4[:, 9].detach().to(torch.float64)
    valid = (var_t > 0) & torch.isfinite(var_t) & torch.isfinite(mu_t)
    half = torch.sqrt(var_t.clamp_min(0.0)) * lifespan_factor(threshold)
    if margin:
        half = half * (1.0 + MARGIN_RELATIVE) + MARGIN_ABSOLUTE * (1.0 + mu_t.abs())
    starts = torch.where(valid, mu_t - half, torch.full_like(mu_t, math.inf))
    ends = torch.where(valid, mu_t + half, torch.full_like(mu_t, -math.inf))
    return starts, ends
