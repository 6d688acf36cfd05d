"""Image quality metrics for evaluation: PSNR and SSIM (LPIPS only with locally provided weights)."""

import torch
from jaxtyping import Float
from pytorch_msssim import ssim as _ssim
from torch import Tensor

LPIPS_UNAVAILABLE = "LPIPS needs ImageNet backbone weights, which splat4d never downloads; it is not computed"


def psnr(pred: Float[Tensor, "B H W C"], target: Float[Tensor, "B H W C"]) -> Float[Tensor, " B"]:
    """Peak signal-to-noise ratio per image, for images in [0, 1] (predictions are clamped first)."""
    mse = ((pred.clamp(0, 1) - target) ** 2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def ssim(pred: Float[Tensor, "B H W C"], target: Float[Tensor, "B H W C"]) -> Float[Tensor, " B"]:
    """SSIM per image (11×11 Gaussian window, σ = 1.5, valid region), for images in [0, 1]."""
    x = pred.clamp(0, 1).permute(0, 3, 1, 2)
    y = target.permute(0, 3, 1, 2)
    return _ssim(x, y, data_range=1.0, size_average=False)
