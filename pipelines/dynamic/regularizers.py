"""Regularisers of 4D Gaussians, evaluated at the training view's time t.

- Temporal opacity: the mean, over all Gaussians, of opacity × temporal weight at t — the expected number of
  Gaussians visible at t per Gaussian. Minimising it shortens the lifespans of Gaussians that do not earn their
  keep at t, so transient floaters fade instead of lingering across the sequence.
- Motion smoothness: a 4D Gaussian sliced at t moves with constant velocity v = Σ_xyz,t / Σ_tt (the slope of its
  conditional mean). Neighbours in space (among the Gaussians alive at t) should move alike, as points of one
  object do: the mean L1 difference of v to its k nearest neighbours, on a random subset for speed.
- Motion sparsity: most of a scene does not move. The mean |v| of the Gaussians alive at t: a Gaussian moves only
  where the views pay for it, instead of drifting to explain one view each (one moving camera sees each moment once).
- Lifespan floor: a Gaussian whose temporal standard deviation sqrt(Σ_tt) is below a floor lives for about one
  frame, and one camera position sees it: nothing stops it from fitting that view alone, as a floater in the others.
  The mean of max(0, log floor − log sqrt(Σ_tt)) over the Gaussians alive at t makes each one live long enough to be
  seen from several positions (multi-view consistency through time).
- Local rigidity: neighbours in space at t keep their distance as time passes — the rate of change of the distance
  between each sampled Gaussian alive at t and its k nearest neighbours among all those alive at t,
  (x_i − x_j)·(v_i − v_j) / |x_i − x_j|, is zero for any rigid motion of a neighbourhood, rotation included (unlike
  motion smoothness, which asks neighbours for the same velocity and so resists a turning arm). The as-rigid-as-
  possible idea of dynamic 3DGS (Luiten et al. 2024) in the form a Gaussian with constant velocity allows.
"""

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from splat4d.gaussians import Gaussians4D


def temporal_opacity(gaussians: Gaussians4D, temporal_weights: Tensor) -> Tensor:
    return (gaussians.opacities * temporal_weights).mean()


def velocities(gaussians: Gaussians4D, ids: Tensor | None = None) -> Tensor:
    """[N, 3] velocity of each Gaussian's conditional mean (of the Gaussians `ids` only, [M, 3], when given), in
    scene units per unit of normalised time."""
    c = gaussians.covars4_of(ids)  # xx, xy, xz, xt, yy, yz, yt, zz, zt, tt
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
    v = velocities(gaussians, ids)
    return (v[:, None] - v[neighbours]).abs().mean()


def motion_sparsity(gaussians: Gaussians4D, kept_ids: Tensor) -> Tensor:
    """Mean |v| (L1 over x, y, z) of the Gaussians `kept_ids`."""
    if len(kept_ids) == 0:
        return gaussians.means4.new_zeros(())
    return velocities(gaussians, kept_ids).abs().sum(-1).mean()


def lifespan_floor(gaussians: Gaussians4D, kept_ids: Tensor, floor: float) -> Tensor:
    """Mean of max(0, log `floor` − log σ_t) over the Gaussians `kept_ids`, σ_t = sqrt(Σ_tt) their temporal
    standard deviation in normalised time."""
    if len(kept_ids) == 0:
        return gaussians.means4.new_zeros(())
    log_sigma_t = 0.5 * torch.log(gaussians.covars4_of(kept_ids)[:, 9].clamp_min(1e-20))
    return torch.relu(math.log(floor) - log_sigma_t).mean()


def nearest_neighbours(queries: Tensor, points: Tensor, k: int) -> Tensor:
    """[M, k] indices into `points` [K, 3] of the k nearest points of each query [M, 3] (queries drawn from
    `points`: the nearest, itself, is left out). A k-d tree (scipy) on the host: a brute-force cdist over all K
    points costs about 10× more per training step on a CPU."""
    tree = cKDTree(points.detach().cpu().numpy())
    _, ids = tree.query(queries.detach().cpu().numpy(), k=k + 1)
    return torch.from_numpy(ids[:, 1:].astype(np.int64)).to(points.device)


def distance_rate(
    points: Tensor, velocities: Tensor, neighbour_points: Tensor, neighbour_velocities: Tensor
) -> Tensor:
    """[M, k] rate of change of |x_i − x_j| for points [M, 3] moving with velocities [M, 3] and their neighbours
    [M, k, 3] with theirs: (x_i − x_j)·(v_i − v_j) / |x_i − x_j|; zero for a rigid motion (v = ω × x + c)."""
    d = points[:, None] - neighbour_points
    dv = velocities[:, None] - neighbour_velocities
    return (d * dv).sum(-1) / d.norm(dim=-1).clamp_min(1e-8)


def local_rigidity(
    gaussians: Gaussians4D,
    kept_ids: Tensor,
    sliced_means: Tensor,
    k: int = 8,
    max_points: int = 1024,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean |d/dt |x_i − x_j|| over up to `max_points` Gaussians i drawn from those alive at t (`kept_ids`, at
    positions `sliced_means` [K, 3]) and each one's k nearest neighbours j among all of them."""
    n = len(kept_ids)
    if n <= k:
        return sliced_means.new_zeros(())
    points_all = sliced_means.detach()
    pick = torch.randperm(n, generator=generator, device="cpu")[:max_points].to(kept_ids.device)
    neighbours = nearest_neighbours(points_all[pick], points_all, k)  # [M, k] rows of kept_ids
    # each Gaussian's covariance built once, however many samples it neighbours
    unique_rows, inverse = torch.cat([pick, neighbours.reshape(-1)]).unique(return_inverse=True)
    v = velocities(gaussians, kept_ids[unique_rows])
    v_pick, v_nbr = v[inverse[: len(pick)]], v[inverse[len(pick) :]].reshape(len(pick), k, 3)
    rate = distance_rate(points_all[pick], v_pick, points_all[neighbours], v_nbr)
    return rate.abs().mean()
