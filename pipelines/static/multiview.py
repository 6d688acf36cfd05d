"""Multi-view photometric consistency (the patch term of PGSR, Chen et al. 2024, in the spirit of plane-sweep MVS):
the rendered surface of the training view, taken as a local plane per pixel, must map small patches of the view's
photo onto matching patches of a neighbouring training photo.

For a pixel whose rendered plane is n · X = d (camera frame of the reference view r, `RenderOutput.normals` and the
plane distance behind `RenderOutput.planar_depth`), the points of that plane map into the neighbour n by the
homography H = K_n (R + t nᵀ / d) K_r⁻¹, with (R, t) taking r's camera frame to n's. A (2h+1)² patch around the
pixel is warped by H into the neighbour's grey image (bilinear) and compared with the reference patch by
normalised cross-correlation; the loss is the mean 1 − NCC over sampled patches. Only the photos are compared, so
the neighbour is never rendered: a surface at the wrong depth (a floor hovering 10 cm too high, which the photo
of one view cannot reveal) warps the patches to the wrong place and is pulled back. Patches that leave the
neighbour's image, or that are too flat in the reference photo to carry information, are left out.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras, pixel_rays

MIN_PATCH_STD = 0.01
"""Reference patches whose grey values vary less than this (of a [0, 1] range) carry no depth information."""


def neighbours(cameras: Cameras, k: int, max_angle_deg: float = 60.0) -> list[list[int]]:
    """For each camera, the (up to) k nearest others by centre distance among those whose optical axes are within
    `max_angle_deg` of its own (cameras that see the same surfaces from a little aside)."""
    centres = cameras.centers.double()
    axes = torch.nn.functional.normalize(cameras.T_world_cam[:, :3, 2].double(), dim=-1)
    close = (axes @ axes.T) >= torch.cos(torch.deg2rad(torch.tensor(max_angle_deg, dtype=torch.float64)))
    dist = torch.cdist(centres, centres)
    dist[~close] = torch.inf
    dist.fill_diagonal_(torch.inf)
    order = torch.argsort(dist, dim=1)[:, :k]
    return [[int(j) for j in row if torch.isfinite(dist[i, j])] for i, row in enumerate(order)]


def grey(rgb: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W"]:
    return rgb @ torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)


def patch_ncc_loss(
    ref_grey: Float[Tensor, "H W"],
    nbr_grey: Float[Tensor, "h w"],
    K_ref: Float[Tensor, "3 3"],
    K_nbr: Float[Tensor, "3 3"],
    T_nbr_ref: Float[Tensor, "4 4"],
    normals: Float[Tensor, "H W 3"],
    dists: Float[Tensor, "H W"],
    valid: Tensor,
    num_patches: int,
    half: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, ""], int]:
    """Mean 1 − NCC of `num_patches` random (2·half+1)² patches centred on `valid` pixels, warped from the reference
    photo into the neighbour's by each centre pixel's plane (unit `normals`, `dists` = n · X in the reference camera
    frame; both differentiable). Returns the loss (0 when no patch qualifies) and the number of patches used. The
    neighbour's photo may have another size than the reference's (each has its own camera).

    Pixel convention: (i, j) has its centre at (i + 0.5, j + 0.5), as everywhere in splat4d.
    """
    H, W = ref_grey.shape
    candidates = torch.nonzero(valid.reshape(-1)).squeeze(1)
    zero = normals.sum() * 0.0
    if len(candidates) == 0:
        return zero, 0
    pick = torch.randint(len(candidates), (min(num_patches, len(candidates)),), generator=generator)
    centre = candidates[pick.to(candidates.device)]
    cy, cx = centre // W, centre % W
    offsets = torch.arange(-half, half + 1, device=ref_grey.device)
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    py = (cy[:, None] + oy.reshape(1, -1)).clamp(0, H - 1)  # [P, S]
    px = (cx[:, None] + ox.reshape(1, -1)).clamp(0, W - 1)
    ref_patch = ref_grey[py, px]

    n = normals.reshape(-1, 3)[centre]  # [P, 3]
    d = dists.reshape(-1)[centre]  # [P], < 0 for a plane facing the camera
    R, t = T_nbr_ref[:3, :3], T_nbr_ref[:3, 3]
    homography = (
        K_nbr @ (R[None] + t[None, :, None] * n[:, None, :] / d[:, None, None]) @ torch.linalg.inv(K_ref)
    )
    pixels = torch.stack([px + 0.5, py + 0.5, torch.ones_like(px, dtype=ref_grey.dtype)], dim=-1).to(
        ref_grey.dtype
    )
    warped = torch.einsum("pij,psj->psi", homography, pixels)
    z = warped[..., 2]
    uv = warped[..., :2] / z.clamp_min(1e-6)[..., None]
    h, w = nbr_grey.shape
    inside = ((z > 1e-6) & (uv[..., 0] > 0) & (uv[..., 0] < w) & (uv[..., 1] > 0) & (uv[..., 1] < h)).all(
        dim=1
    )
    grid = torch.stack([uv[..., 0] / w * 2 - 1, uv[..., 1] / h * 2 - 1], dim=-1)[None]  # align_corners=False
    nbr_patch = torch.nn.functional.grid_sample(
        nbr_grey[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[0, 0]

    a = ref_patch - ref_patch.mean(dim=1, keepdim=True)
    b = nbr_patch - nbr_patch.mean(dim=1, keepdim=True)
    ncc = (a * b).sum(dim=1) / torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1) + 1e-8)
    used = inside & (ref_patch.std(dim=1) > MIN_PATCH_STD)
    if not used.any():
        return zero, 0
    return (1.0 - ncc[used]).mean(), int(used.sum())


def plane_maps(
    normals: Float[Tensor, "H W 3"], planar_depth: Float[Tensor, "H W"], K: Float[Tensor, "3 3"]
) -> tuple[Float[Tensor, "H W 3"], Float[Tensor, "H W"]]:
    """Unit normals and plane distances n · X of a rendered view, X the planar-depth point of each pixel."""
    unit = torch.nn.functional.normalize(normals, dim=-1)
    H, W = planar_depth.shape
    points = pixel_rays(K[None].to(normals.dtype), W, H)[0] * planar_depth[..., None]
    return unit, (unit * points).sum(dim=-1)
