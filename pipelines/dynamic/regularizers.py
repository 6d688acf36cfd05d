"""Regularisers of 4D Gaussians, evaluated at the training view's time t.

- Temporal opacity: the mean, over all Gaussians, of opacity × temporal weight at t — the expected number of
  Gaussians visible at t per Gaussian. Minimising it shortens the lifespans of Gaussians that do not earn their
  keep at t, so transient floaters fade instead of lingering across the sequence.
- Motion smoothness: a 4D Gaussian sliced at t moves with constant velocity v = Σ_xyz,t / Σ_tt (the slope of its
  conditional mean). Neighbours in space (among the Gaussians alive at t) should move alike, as points of one
  object do: the mean L1 difference of v to its k nearest neighbours, on a random subset for speed.
"""

import torch
from torch import Tensor

from splat4d.gaussians import Gaussians4D


def temporal_opacity(gaussians: Gaussians4D, temporal_weights: Tensor) -> Tensor:
    return (gaussians.opacities * temporal_weights).mean()


def velocities(gaussians: Gaussians4D) -> Tensor:
    """[N, 3] velocity of each Gaussian's conditional mean, in scene units per unit of normalised time."""
    c = gaussians.covars4  # xx, xy, xz, xt, yy, yz, yt, zz, zt, tt
    return c[:, [3, 6, 8]] / c[:, 9:10].clamp_min(1e-12)


def motion_smoothness(
    gaussians: Gaussians4D,
    kept_ids: Tensor,
    sliced_means: Tensor,
    k: int = 4,
    max_points: int = 2048,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean |v_i − v_j| over each sampled Gaussian i alive at t and its k nearest neighbours j (positions at t)."""
    n = len(kept_ids)
    if n <= k:
        return sliced_means.new_zeros(())
    pick = torch.randperm(n, generator=generator, device="cpu")[:max_points].to(kept_ids.device)
    ids, points = kept_ids[pick], sliced_means[pick].detach()
    neighbours = (
        torch.cdist(points, points).topk(k + 1, largest=False).indices[:, 1:]
    )  # [M, k], self excluded
    v = velocities(gaussians)[ids]
    return (v[:, None] - v[neighbours]).abs().mean()
