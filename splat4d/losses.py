"""Loss terms as pure functions of rendered and target images ([B, H, W, C] in [0, 1])."""

from jaxtyping import Float
from pytorch_msssim import ssim as _ssim
from torch import Tensor


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
