"""Loss terms of the learned priors as pure functions of rendered and prior maps ([B, H, W, 1]).

Relative monocular depth is known only up to an unknown (per image) monotone map, so neither term compares values:
ranking compares the order of two pixels (SparseNeRF), correlation compares the shape of the maps within a patch,
invariant to scale and shift (DNGaussian, FSGS). Score distillation turns a gradient computed elsewhere into a
loss with the stop-gradient trick.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

PEARSON_EPS = 1e-10
"""Added to the product of the variances (of maps brought to unit spread first), so that a flat patch gives a
finite correlation and gradient."""


def sample_pixel_pairs(
    height: int,
    width: int,
    n: int,
    radius: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Int[Tensor, "n 2"]:
    """`n` random pairs of pixel indices into a flattened H × W image. The first pixel is uniform; with
    `radius` > 0 the second is a uniform offset of at most `radius` pixels along each axis (clamped to the image),
    else uniform too. A pair may repeat a pixel (its ranking term is then 0)."""
    a = torch.randint(height * width, (n,), generator=generator)
    if radius > 0:
        offsets = torch.randint(-radius, radius + 1, (n, 2), generator=generator)
        y = (a // width + offsets[:, 0]).clamp(0, height - 1)
        x = (a % width + offsets[:, 1]).clamp(0, width - 1)
        b = y * width + x
    else:
        b = torch.randint(height * width, (n,), generator=generator)
    return torch.stack([a, b], dim=1).to(device)


def depth_ranking_loss(
    depth: Float[Tensor, "B H W 1"],
    prior_disparity: Float[Tensor, "B H W 1"],
    pairs: Int[Tensor, "P 2"],
    margin: float = 0.0,
    valid: Bool[Tensor, "B H W 1"] | None = None,
) -> Float[Tensor, ""]:
    """SparseNeRF's depth ranking: for each pair (a, b) where the prior puts a strictly nearer than b (larger
    disparity), the hinge max(0, depth_a − depth_b + margin) on the rendered depth; mean over those pairs.

    Args:
        depth: rendered depth (larger is farther).
        prior_disparity: the prior's inverse depth (larger is nearer), any scale.
        pairs: flat pixel indices into H × W (`sample_pixel_pairs`), the same for every image of the batch.
        margin: how much nearer the rendered depth must put a than b before the pair costs nothing.
        valid: pixels that may take part (e.g. covered by the render); None: all.

    Returns:
        0 when the rendered order agrees with the prior's on every ranked pair (by at least `margin`), positive
        otherwise; 0 too when no pair is ranked.
    """
    d = depth.flatten(1)
    p = prior_disparity.flatten(1).to(d)
    a, b = pairs[:, 0], pairs[:, 1]
    # Orient every pair so that `near` is the pixel the prior says is nearer.
    a_nearer = p[:, a] > p[:, b]
    ranked = p[:, a] != p[:, b]
    if valid is not None:
        v = valid.flatten(1)
        ranked = ranked & v[:, a] & v[:, b]
    near = torch.where(a_nearer, d[:, a], d[:, b])
    far = torch.where(a_nearer, d[:, b], d[:, a])
    hinge = torch.relu(near - far + margin) * ranked
    return hinge.sum() / ranked.sum().clamp_min(1)


def _patches(x: Float[Tensor, "B H W 1"], patch: int) -> Float[Tensor, "M K"]:
    """Non-overlapping `patch` × `patch` tiles of x as rows (the image cropped to whole tiles); `patch` 0: the
    whole image per row."""
    B, H, W, _ = x.shape
    if patch <= 0 or patch >= max(H, W):
        return x.reshape(B, H * W)
    h, w = H // patch * patch, W // patch * patch
    tiles = x[:, :h, :w, 0].reshape(B, h // patch, patch, w // patch, patch)
    return tiles.permute(0, 1, 3, 2, 4).reshape(-1, patch * patch)


def patch_pearson_loss(
    pred: Float[Tensor, "B H W 1"],
    prior: Float[Tensor, "B H W 1"],
    patch: int = 0,
    valid: Bool[Tensor, "B H W 1"] | None = None,
    min_valid: float = 0.5,
) -> Float[Tensor, ""]:
    """Mean over patches of 1 − Pearson correlation between `pred` and `prior` (DNGaussian's local depth
    correlation; `patch` 0: FSGS's global one). Invariant to any positive scale and any shift of either map, per
    patch, so a relative prior can supervise metric renders.

    Args:
        pred: the rendered map (e.g. inverse rendered depth).
        prior: the prior's map of the same quantity, any scale and shift.
        patch: side of the square tiles, in pixels; 0: the whole image.
        valid: pixels that count (weighted statistics over them); None: all.
        min_valid: a tile counts only when at least this fraction of its pixels is valid.

    Returns:
        In [0, 2]; 0 where the maps are positively affinely related; 0 when no tile counts.
    """
    w = torch.ones_like(pred) if valid is None else valid.to(pred.dtype)
    prior = prior.to(pred)
    # Pearson is scale invariant, so both maps are first brought to unit spread over the whole batch: then
    # PEARSON_EPS means the same whatever the scene's depth units.
    pred = pred / _spread(pred.detach(), w)
    prior = prior / _spread(prior, w)
    x, y, w = _patches(pred, patch), _patches(prior, patch), _patches(w, patch)
    n = w.sum(dim=1, keepdim=True)
    keep = n[:, 0] >= max(min_valid * w.shape[1], 2.0)
    if not keep.any():
        return pred.sum() * 0.0
    x, y, w, n = x[keep], y[keep], w[keep], n[keep]
    xc = x - (w * x).sum(dim=1, keepdim=True) / n
    yc = y - (w * y).sum(dim=1, keepdim=True) / n
    cov = (w * xc * yc).sum(dim=1) / n[:, 0]
    var = (w * xc**2).sum(dim=1) / n[:, 0] * ((w * yc**2).sum(dim=1) / n[:, 0])
    return (1.0 - cov / torch.sqrt(var + PEARSON_EPS)).mean()


def _spread(x: Float[Tensor, "B H W 1"], w: Float[Tensor, "B H W 1"]) -> Float[Tensor, ""]:
    """Weighted standard deviation of all of x; 1 where x is flat (up to rounding)."""
    n = w.sum().clamp_min(1.0)
    mean = (w * x).sum() / n
    std = torch.sqrt((w * (x - mean) ** 2).sum() / n)
    return torch.where(std > 1e-6 * x.abs().max(), std, torch.ones_like(std))


def score_distillation_loss(
    latents: Float[Tensor, "B C h w"], grad: Float[Tensor, "B C h w"]
) -> Float[Tensor, ""]:
    """0.5 · mean((z − sg(z − g))²): a loss whose gradient with respect to the latents z is g / z.numel() (sg: stop
    gradient), which is how score distillation's gradient, computed without back-propagating through the
    denoiser, enters autograd (DreamFusion). Its value is 0.5 · mean(g²), a measure of the gradient's size only."""
    target = (latents - grad).detach()
    return 0.5 * torch.nn.functional.mse_loss(latents.float(), target.float(), reduction="mean")
