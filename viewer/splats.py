"""Scenes as viser's browser-side Gaussian splats (`add_gaussian_splats`: centres, 3×3 covariances, RGB, opacity).

viser's WebGL renderer draws view-independent colour, so only SH band 0 is sent; a 4D scene is sliced at the
viewed time first (`slice_to_gaussians`, exactly what the server renders at that time). Only Gaussians the
browser can draw are sent: viser packs covariances as float16, so scales are capped (`MAX_SPLAT_SCALE`), and a
Gaussian with a non-finite parameter (a diverged one) is left out rather than sent as NaN.
"""

from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float

from splat4d.export.splats import slice_to_gaussians
from splat4d.gaussians import SH_C0, Gaussians, Gaussians4D
from splat4d.geometry import quat_to_rotmat

MAX_SPLAT_SCALE = 200.0
"""Largest standard deviation sent (scene units): viser sends covariances as float16, whose largest value is
65504 = 256², so a larger Gaussian (a far background blob) would arrive as inf; it is drawn at this size instead."""


class BrowserSplats(NamedTuple):
    centers: Float[np.ndarray, "N 3"]
    covariances: Float[np.ndarray, "N 3 3"]
    rgbs: Float[np.ndarray, "N 3"]
    opacities: Float[np.ndarray, "N 1"]


@torch.no_grad()
def browser_splats(gaussians: Gaussians | Gaussians4D, t: float | None = None) -> BrowserSplats:
    """The arrays `add_gaussian_splats` takes, for a 3D scene or a 4D scene at time `t`: finite, with covariances
    that fit float16 (possibly none at all, for an empty scene)."""
    if isinstance(gaussians, Gaussians4D):
        gaussians = slice_to_gaussians(gaussians, 0.0 if t is None else t)
    params = gaussians.params
    drawable = torch.ones(len(gaussians.means), dtype=torch.bool, device=gaussians.means.device)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh0"):
        finite = torch.isfinite(params[name].detach().float())
        drawable &= finite.flatten(1).all(-1) if finite.dim() > 1 else finite
    drawable &= params["quats"].detach().float().norm(dim=-1) > 1e-12
    R = quat_to_rotmat(gaussians.quats[drawable].float())
    S = gaussians.scales[drawable].float().clamp(max=MAX_SPLAT_SCALE)
    covariances = (R * S[:, None, :] ** 2) @ R.transpose(1, 2)
    covariances = 0.5 * (covariances + covariances.transpose(1, 2))  # exactly symmetric
    rgbs = (params["sh0"].detach()[drawable, 0].float() * SH_C0 + 0.5).clamp(0.0, 1.0)
    return BrowserSplats(
        gaussians.means[drawable].float().cpu().numpy(),
        covariances.cpu().numpy(),
        rgbs.cpu().numpy(),
        gaussians.opacities[drawable].float()[:, None].cpu().numpy(),
    )
