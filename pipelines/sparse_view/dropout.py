"""DropGaussian (Park et al. 2025, "DropGaussian: Structural Regularization for Sparse-view Gaussian Splatting"):
each training render leaves out a random share of the Gaussians and scales up the others' opacities to make up
for them.

With few photos, 3DGS overfits by letting many small Gaussians in front of the surface each explain a few pixels
of one photo; they fit that photo and cloud the views in between. Rendered with random Gaussians missing, a photo
can only be reproduced by Gaussians that still fit it when their neighbours are gone, which favours fewer, larger
and more opaque Gaussians on the surface, and the Gaussians behind the front layer receive gradient through the
gaps. Like dropout in a network it acts in training only: evaluation and export render every Gaussian as is.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.gaussians import Gaussians


class DroppedGaussians(Gaussians):
    """A view of `gaussians` for one render: the very same parameters (gradients reach them), opacities multiplied
    by `factor` (0 for a dropped Gaussian)."""

    def __init__(self, gaussians: Gaussians, factor: Float[Tensor, " N"]) -> None:
        torch.nn.Module.__init__(self)
        self.params = gaussians.params
        self.factor = factor

    @property
    def opacities(self) -> Float[Tensor, " N"]:
        return torch.sigmoid(self.params["opacity_logits"]) * self.factor


def drop_gaussians(gaussians: Gaussians, rate: float, generator: torch.Generator | None = None) -> Gaussians:
    """`gaussians` with each one dropped with probability `rate` and the others' opacities divided by 1 − rate
    (so that the expected opacity is unchanged); `gaussians` itself when rate is 0."""
    if rate <= 0:
        return gaussians
    means = gaussians.means
    keep = torch.rand(
        len(gaussians), generator=generator, device=means.device if generator is None else "cpu"
    )
    factor = (keep.to(means.device) >= rate).to(means.dtype) / (1.0 - rate)
    return DroppedGaussians(gaussians, factor)
