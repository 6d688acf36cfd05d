"""Depth smoothness on unobserved views (RegNeRF, Niemeyer et al. 2022): renders of pseudo views between the
input cameras should show piecewise-smooth depth.

With three photos, many depth maps explain the photos equally well, and the ones that do it with Gaussians
scattered in depth look right only from the input cameras. Where no photo constrains a pseudo view, rough depth is
the symptom of that scatter; the term penalises it: the total variation of the rendered depth, relative to its mean
(so that it does not depend on the scene's scale), weighted by the opacity of both neighbours (so that silhouette
edges against an empty background cost nothing).
"""

import torch
from jaxtyping import Float
from torch import Tensor


def depth_smoothness(depth: Float[Tensor, "C H W 1"], alpha: Float[Tensor, "C H W 1"]) -> Float[Tensor, ""]:
    """Opacity-weighted mean absolute difference of horizontally and vertically adjacent depths, over the mean
    depth; 0 for a plane facing the camera (constant depth) and for an empty render."""
    d, a = depth[..., 0], alpha[..., 0].detach()
    scale = (d.detach() * a).sum() / a.sum().clamp_min(1e-6)
    if float(scale) <= 0:
        return depth.new_zeros(())
    dx = (d[:, :, 1:] - d[:, :, :-1]).abs() * torch.minimum(a[:, :, 1:], a[:, :, :-1])
    dy = (d[:, 1:] - d[:, :-1]).abs() * torch.minimum(a[:, 1:], a[:, :-1])
    return (dx.mean() + dy.mean()) / scale
