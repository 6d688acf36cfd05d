"""Scenes as viser's browser-side Gaussian splats (`add_gaussian_splats`: centres, 3×3 covariances, RGB, opacity).

viser's WebGL renderer draws view-independent colour, so only SH band 0 is sent; a 4D scene is sliced at the
viewed time first (`slice_to_gaussians`, exactly what the server renders at that time).
"""

from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float

from splat4d.export.splats import slice_to_gaussians
from splat4d.gaussians import SH_C0, Gaussians, Gaussians4D
from splat4d.geometry import quat_to_rotmat


class BrowserSplats(NamedTuple):
    centers: Float[np.ndarray, "N 3"]
    covariances: Float[np.ndarray, "N 3 3"]
    rgbs: Float[np.ndarray, "N 3"]
    opacities: Float[np.ndarray, "N 1"]


@torch.no_grad()
def browser_splats(gaussians: Gaussians | Gaussians4D, t: float | None = None) -> BrowserSplats:
    """The arrays `add_gaussian_splats` takes, for a 3D scene or a 4D scene at time `t`."""
    if isinstance(gaussians, Gaussians4D):
        gaussians = slice_to_gaussians(gaussians, 0.0 if t is None else t)
    R = quat_to_rotmat(gaussians.quats.float())
    S = gaussians.scales.float()
    covariances = (R * S[:, None, :] ** 2) @ R.transpose(1, 2)
    covariances = 0.5 * (covariances + covariances.transpose(1, 2))  # exactly symmetric
    rgbs = (gaussians.sh_coeffs[:, 0].float() * SH_C0 + 0.5).clamp(0.0, 1.0)
    return BrowserSplats(
        gaussians.means.float().cpu().numpy(),
        covariances.cpu().numpy(),
        rgbs.cpu().numpy(),
        gaussians.opacities.float()[:, None].cpu().numpy(),
    )
