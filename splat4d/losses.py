"""Loss terms as pure functions: of rendered and target images ([B, H, W, C] in [0, 1]), and the geometry
regularisers (depth–normal consistency, flattening)."""

import torch
from jaxtyping import Bool, Float
from pytorch_msssim import ssim as _ssim
from torch import Tensor

from splat4d.cameras import pixel_rays


def apply_mask(
    pred: Float[Tensor, "B H W C"], target: Float[Tensor, "B H W C"], mask: Float[Tensor, "B H W 1"] | None
) -> Float[Tensor, "B H W C"]:
    """Masked-out pixels of `pred` replaced by the (constant) target, so every loss ignores them."""
    if mask is None:
        return pred
    return pred * mask + target.detach() * (1.0 - mask)


def l1(pred: Float[Tensor, "B H W C"], target: Float[Tensor, "B H W C"]) -> Float[Tensor, ""]:
    return (pred - target).abs().mean()


def ssim(pred: Float[Tensor, "B H W C"], target: Float[Tensor, "B H W C"]) -> Float[Tensor, ""]:
    """Mean SSIM (11×11 Gaussian window, σ = 1.5, as in 3DGS), differentiable."""
    return _ssim(pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, size_average=True)


def photometric(
    pred: Float[Tensor, "B H W 3"],
    target: Float[Tensor, "B H W 3"],
    ssim_lambda: float,
    mask: Float[Tensor, "B H W 1"] | None = None,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """The 3DGS image loss (1 − λ)·L1 + λ·(1 − SSIM), with its parts for logging."""
    pred = apply_mask(pred, target, mask)
    l1_term = l1(pred, target)
    ssim_term = 1.0 - ssim(pred, target)
    return (1.0 - ssim_lambda) * l1_term + ssim_lambda * ssim_term, {"l1": l1_term, "dssim": ssim_term}


def depth_to_normals(
    depth: Float[Tensor, "B H W 1"], Ks: Float[Tensor, "B 3 3"]
) -> tuple[Float[Tensor, "B H W 3"], Bool[Tensor, "B H W 1"]]:
    """Camera-frame unit normals of the surface a z-depth map describes, pointing towards the camera.

    Each pixel centre is back-projected with its depth, and the normal is the cross product of the central
    differences of those points along x and y. Border pixels, and pixels whose depth or a neighbour's is 0 (no
    surface), are not valid: their normal is 0.
    """
    d = depth[..., 0]
    points = pixel_rays(Ks.to(depth.dtype), d.shape[2], d.shape[1]) * depth  # [B, H, W, 3]
    dx = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    dy = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    # OpenCV axes: x right, y down, z forward, so dy × dx points back towards the camera (negative z).
    inner = torch.nn.functional.normalize(torch.linalg.cross(dy, dx, dim=-1), dim=-1)
    has = d > 0
    ok = has[:, 1:-1, 1:-1] & has[:, 1:-1, 2:] & has[:, 1:-1, :-2] & has[:, 2:, 1:-1] & has[:, :-2, 1:-1]
    normals = torch.nn.functional.pad(inner * ok[..., None], (0, 0, 1, 1, 1, 1))
    valid = torch.nn.functional.pad(ok, (1, 1, 1, 1))[..., None]
    return normals, valid


def edge_aware_weight(image: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 1"]:
    """(1 − g)², g the grey-level gradient magnitude normalised by its maximum per image: near 1 on flat image
    regions, near 0 on strong edges, where depth (and so its normal) may jump (PGSR's weighting)."""
    grey = image.mean(dim=-1)
    gx = torch.nn.functional.pad((grey[:, :, 2:] - grey[:, :, :-2]).abs(), (1, 1))
    gy = torch.nn.functional.pad((grey[:, 2:] - grey[:, :-2]).abs(), (0, 0, 1, 1))
    g = torch.sqrt(gx**2 + gy**2)
    g = g / g.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    return ((1.0 - g).clamp(0.0, 1.0) ** 2)[..., None]


def normal_consistency(
    rendered: Float[Tensor, "B H W 3"],
    from_depth: Float[Tensor, "B H W 3"],
    weight: Float[Tensor, "B H W 1"],
) -> Float[Tensor, ""]:
    """Weighted mean of 1 − cos between rendered normals (normalised here) and normals of the rendered depth: the
    depth–normal consistency of 2DGS / PGSR. Pixels of weight 0 do not count."""
    cos = (torch.nn.functional.normalize(rendered, dim=-1) * from_depth).sum(dim=-1, keepdim=True)
    return ((1.0 - cos) * weight).sum() / weight.sum().clamp_min(1e-8)


def flatten(scales: Float[Tensor, "N 3"], scene_scale: float) -> Float[Tensor, ""]:
    """Mean smallest scale over the scene scale: pulls Gaussians towards discs, whose normal is well defined."""
    return scales.amin(dim=-1).mean() / scene_scale
