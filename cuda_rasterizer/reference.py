"""Dense pure-PyTorch reference of the rasterizer ops: the oracle the CPU and CUDA kernels are tested against.

Every function implements the contract in ``cuda_rasterizer/README.md`` (same clamps, thresholds, culling
and tie-breaking) with a different, deliberately obvious algorithm: projection is batched tensor algebra,
tile intersection tests every (camera, tile, Gaussian) triple, and rasterization evaluates every Gaussian at
every pixel, sorts by depth and composites with a cumulative product. It shares no code with the kernels and
is only meant for tests. Everything is plain differentiable torch, so autograd provides the backward; it runs
in float32 and float64 on any device.
"""

import math

import torch
from jaxtyping import Float, Int, Int32, Int64
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Skip contributions below 1/255 (3DGS, Kerbl et al. 2023, appendix C on numerical stability).
ALPHA_MIN = 1.0 / 255.0
# Clamp alpha at 0.99 so that 1 - alpha stays invertible in backward (3DGS, appendix C).
ALPHA_MAX = 0.99
# Stop compositing a pixel once its transmittance would drop to or below this (3DGS, appendix C).
TRANSMITTANCE_MIN = 1e-4
# Transmittance at which the median depth is read (the Gaussian that crosses 50% coverage).
MEDIAN_TRANSMITTANCE = 0.5
# Guard band of the perspective Jacobian, as a fraction of the half field of view
# (Inria diff-gaussian-rasterization, computeCov2D).
FOV_GUARD = 0.3
# Tile edge in pixels (3DGS, sec. 6: 16x16 tiles).
TILE_SIZE = 16
# Elements of live intermediates per rasterization chunk: 2^23 float64 values are 64 MB.
CHUNK_ELEMENTS = 1 << 23

# Normalisation constants of the real spherical-harmonics basis, band by band (Sloan 2008, "Stupid Spherical
# Harmonics (SH) Tricks"), with the signs and coefficient order of 3DGS's SH colours.
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

# Packed upper triangle (xx, xy, xz, yy, yz, zz) <-> symmetric 3x3.
_TRIU_ROWS = (0, 0, 0, 1, 1, 2)
_TRIU_COLS = (0, 1, 2, 1, 2, 2)
_TRIU_OF_ENTRY = ((0, 1, 2), (1, 3, 4), (2, 4, 5))


def _pack_symmetric(matrices: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 6"]:
    return matrices[..., _TRIU_ROWS, _TRIU_COLS]


def _unpack_symmetric(packed: Float[Tensor, "... 6"]) -> Float[Tensor, "... 3 3"]:
    return packed[..., torch.tensor(_TRIU_OF_ENTRY, device=packed.device)]


def _quat_to_rotmat(quats: Float[Tensor, "N 4"]) -> Float[Tensor, "N 3 3"]:
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def quat_scale_to_covar(quats: Float[Tensor, "N 4"], scales: Float[Tensor, "N 3"]) -> Float[Tensor, "N 6"]:
    """Covariances `Σ = R S Sᵀ Rᵀ` from rotations and scales.

    Args:
        quats: [N, 4] rotations as (w, x, y, z) quaternions; normalised here, so any non-zero length works.
        scales: [N, 3] activated (positive) scales along the rotated axes.

    Returns:
        covars: [N, 6] packed upper triangle (xx, xy, xz, yy, yz, zz).
    """
    rs = _quat_to_rotmat(quats) * scales[:, None, :]  # R S: column j of R times scale j
    return _pack_symmetric(rs @ rs.mT)


def project(
    means: Float[Tensor, "N 3"],
    covars: Float[Tensor, "N 6"],
    opacities: Float[Tensor, " N"],
    T_cam_world: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
    antialiased: bool = False,
) -> tuple[
    Float[Tensor, "C N 2"],
    Float[Tensor, "C N 3"],
    Float[Tensor, "C N"],
    Int32[Tensor, "C N 2"],
    Float[Tensor, "C N"],
]:
    """EWA projection of 3D Gaussians to image-plane Gaussians (Zwicker et al. 2001; 3DGS eq. 5).

    Args:
        means: [N, 3] world-frame centres.
        covars: [N, 6] packed world-frame covariances (xx, xy, xz, yy, yz, zz).
        opacities: [N] activated opacities in [0, 1].
        T_cam_world: [C, 4, 4] world -> camera transforms (OpenCV: x right, y down, z forward).
        Ks: [C, 3, 3] pinhole intrinsics.
        width: image width in pixels.
        height: image height in pixels.
        eps2d: low-pass dilation added to the 2D covariance's diagonal, in pixels².
        near: Gaussians with camera depth below this are culled.
        far: Gaussians with camera depth above this are culled.
        antialiased: scale opacities by the Mip-Splatting compensation `sqrt(det Σ2d / det Σ')`.

    Returns:
        means2d: [C, N, 2] projected centres in pixels.
        conics: [C, N, 3] inverse dilated 2D covariances, packed (a, b, c) of [[a, b], [b, c]].
        depths: [C, N] camera-frame z.
        radii: [C, N, 2] int32 half extents of the box where alpha can reach 1/255; 0 where culled.
        opacities: [C, N] opacities after the antialiasing compensation (unchanged otherwise).
        Culled Gaussians get zeros in every output and zero gradients.
    """
    C, N = T_cam_world.shape[0], means.shape[0]
    R = T_cam_world[:, None, :3, :3]  # [C, 1, 3, 3]
    p = (R @ means[None, :, :, None])[..., 0] + T_cam_world[:, None, :3, 3]  # [C, N, 3]
    cov_cam = R @ _unpack_symmetric(covars)[None] @ R.mT  # [C, N, 3, 3]
    fx, fy = Ks[:, None, 0, 0], Ks[:, None, 1, 1]  # [C, 1]
    cx, cy = Ks[:, None, 0, 2], Ks[:, None, 1, 2]

    # Every culled entry is replaced by a harmless value before it can reach a division, log or sqrt, so the
    # zero gradient that torch.where sends there is never multiplied by inf or NaN.
    x, y, z_raw = p.unbind(-1)
    in_depth = (z_raw >= near) & (z_raw <= far)
    z = torch.where(in_depth, z_raw, torch.ones_like(z_raw))

    # Clamped perspective Jacobian: x/z and y/z limited to the image plus a 30% guard band of the half FoV.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + FOV_GUARD * tan_x, cx / fx + FOV_GUARD * tan_x
    lim_y_pos, lim_y_neg = (height - cy) / fy + FOV_GUARD * tan_y, cy / fy + FOV_GUARD * tan_y
    tx = z * torch.clamp(x / z, -lim_x_neg, lim_x_pos)
    ty = z * torch.clamp(y / z, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], dim=-1)
    J = J.reshape(C, N, 2, 3)
    cov2d = J @ cov_cam @ J.mT  # [C, N, 2, 2]

    # Low-pass dilation Σ' = Σ2d + eps2d I; a non-positive determinant culls.
    a, b, c = cov2d[..., 0, 0] + eps2d, cov2d[..., 0, 1], cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    valid = in_depth & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))

    opacities_out = opacities.expand(C, N)
    if antialiased:  # Mip-Splatting (Yu et al. 2024) eq. 9: opacity' = opacity sqrt(max(0, det Σ2d/det Σ')).
        ratio = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] ** 2) / det
        positive = ratio > 0
        compensation = torch.where(positive, torch.where(positive, ratio, 1.0).sqrt(), 0.0)
        opacities_out = opacities_out * compensation

    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    with torch.no_grad():
        # Opacity-aware extent: alpha >= 1/255 only where the Mahalanobis d² <= 2 ln(opacity' / (1/255)),
        # whose bounding box has half extents d sqrt(Σ'xx), d sqrt(Σ'yy).
        valid = valid & (opacities_out >= ALPHA_MIN)
        d2 = 2.0 * torch.log(opacities_out.clamp(min=ALPHA_MIN) / ALPHA_MIN)
        radii = torch.ceil(d2.sqrt()[..., None] * torch.stack([a, c], dim=-1).clamp(min=0).sqrt())
        valid = valid & (radii > 0).all(dim=-1)
        mx, my = means2d.unbind(-1)
        rx, ry = radii.unbind(-1)
        valid = valid & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(valid[..., None], radii, 0).to(torch.int32)

    keep = valid[..., None]
    return (
        torch.where(keep, means2d, 0.0),
        torch.where(keep, conics, 0.0),
        torch.where(valid, z_raw, 0.0),
        radii,
        torch.where(valid, opacities_out, 0.0),
    )


def _sh_basis(degree: int, dirs: Float[Tensor, "... 3"]) -> Float[Tensor, "... K"]:
    """The (degree + 1)² real SH basis functions of 3DGS at dirs / |dirs|, in 3DGS coefficient order."""
    basis = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = (dirs / dirs.norm(dim=-1, keepdim=True)).unbind(-1)
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        basis += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(basis, dim=-1)


def eval_sh(
    degree: int, dirs: Float[Tensor, "C N 3"], coeffs: Float[Tensor, "N K D"]
) -> Float[Tensor, "C N D"]:
    """Colours from real spherical harmonics, `colors = Σ_k Y_k(dir / |dir|) coeffs[n, k]`.

    No +0.5 offset and no clamp: those belong to `splat4d.render`.

    Args:
        degree: SH degree to use, 0 to 3.
        dirs: [C, N, 3] viewing directions (camera centre -> Gaussian); need not be unit length, must be
            non-zero for degree >= 1 (a zero direction gives NaN). Unused for degree 0.
        coeffs: [N, K, D] coefficients with K >= (degree + 1)²; only the first (degree + 1)² are used.

    Returns:
        colors: [C, N, D] raw SH colours.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    num_bases = (degree + 1) ** 2
    if coeffs.shape[1] < num_bases:
        raise ValueError(f"degree {degree} needs {num_bases} coefficients, got {coeffs.shape[1]}")
    return (_sh_basis(degree, dirs)[..., None] * coeffs[:, :num_bases]).sum(dim=-2)  # [C, N, K, D] -> sum k


def _tile_bits(num_tiles: int) -> int:
    """Width of the tile field of a key: the fewest bits (at least 1) that hold every id in [0, num_tiles)."""
    return max(1, (num_tiles - 1).bit_length())


@torch.no_grad()
def intersect_tiles(
    means2d: Float[Tensor, "C N 2"],
    radii: Int[Tensor, "C N 2"],
    depths: Float[Tensor, "C N"],
    width: int,
    height: int,
    tile_size: int = TILE_SIZE,
) -> tuple[Int64[Tensor, " M"], Int32[Tensor, " M"], Int32[Tensor, "C th tw"]]:
    """Depth-sorted (camera, tile, Gaussian) pairs, by testing every triple against every Gaussian's tile box.

    The coverage test is a dense [C, tiles_h, tiles_w, N] mask, so keep test scenes small.

    Args:
        means2d: [C, N, 2] projected centres.
        radii: [C, N, 2] pixel half extents; a Gaussian takes part only if both are > 0.
        depths: [C, N] camera depths; their float32 bit pattern is the low half of the sort key.
        width: image width in pixels.
        height: image height in pixels.
        tile_size: tile edge in pixels.

    Returns:
        isect_ids: [M] int64 sorted keys `camera << (32 + tile_bits) | tile << 32 | float32_bits(depth)`,
            with `tile = tile_y * tiles_w + tile_x` and tile_bits the fewest bits (at least 1) holding every
            tile id.
        flatten_ids: [M] int32 `camera * N + gaussian` of each key; equal keys keep ascending Gaussian order.
        tile_offsets: [C, tiles_h, tiles_w] int32 start of each tile's run in the sorted list.
    """
    C, N = depths.shape
    device = means2d.device
    tiles_w, tiles_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    tile_bits = _tile_bits(tiles_w * tiles_h)

    # Tile box [floor((m - r) / 16), ceil((m + r) / 16)) per axis, clamped to the grid.
    r = radii.to(means2d.dtype)
    grid = torch.tensor([tiles_w, tiles_h], device=device)
    box_min = torch.minimum(torch.floor((means2d - r) / tile_size).long().clamp(min=0), grid)  # [C, N, 2]
    box_max = torch.minimum(torch.ceil((means2d + r) / tile_size).long().clamp(min=0), grid)
    visible = (radii > 0).all(dim=-1)  # [C, N]

    tile_x = torch.arange(tiles_w, device=device)[:, None]  # [tiles_w, 1] against [..., N]
    tile_y = torch.arange(tiles_h, device=device)[:, None, None]  # [tiles_h, 1, 1]
    covers = (
        visible[:, None, None, :]
        & (box_min[:, None, None, :, 0] <= tile_x)
        & (tile_x < box_max[:, None, None, :, 0])
        & (box_min[:, None, None, :, 1] <= tile_y)
        & (tile_y < box_max[:, None, None, :, 1])
    )  # [C, tiles_h, tiles_w, N]
    cam, ty, tx, gauss = covers.nonzero(as_tuple=True)  # row-major, so Gaussian order within a (camera, tile)

    depth_bits = depths.float().view(torch.int32).long() & 0xFFFFFFFF  # [C, N] float32 bits, zero-extended
    keys = (cam << (32 + tile_bits)) | ((ty * tiles_w + tx) << 32) | depth_bits[cam, gauss]
    isect_ids, order = torch.sort(keys, stable=True)
    flatten_ids = (cam * N + gauss)[order].to(torch.int32)

    # Each (camera, tile) run starts at the first key >= its smallest possible key.
    tile_starts = (torch.arange(C, device=device)[:, None] << (32 + tile_bits)) | (
        torch.arange(tiles_w * tiles_h, device=device)[None, :] << 32
    )
    tile_offsets = torch.searchsorted(isect_ids, tile_starts.flatten()).reshape(C, tiles_h, tiles_w)
    return isect_ids, flatten_ids, tile_offsets.to(torch.int32)


def _composite(
    pixel_centres: Float[Tensor, "P 2"],
    means2d: Float[Tensor, "G 2"],
    conics: Float[Tensor, "G 3"],
    colors: Float[Tensor, "G D"],
    opacities: Float[Tensor, " G"],
    smooth_cutoff: bool,
) -> tuple[Float[Tensor, "P D"], Float[Tensor, " P"], Int64[Tensor, " P"]]:
    """Front-to-back compositing of depth-sorted Gaussians at some pixels: colour, final T, median (or -1)."""
    dx, dy = (means2d[None] - pixel_centres[:, None]).unbind(-1)  # [P, G]
    a, b, c = conics.unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    # sigma < 0 is skipped; clamping it first keeps exp() finite there, so its zero gradient stays zero.
    alpha = torch.clamp(opacities * torch.exp(-sigma.clamp(min=0)), max=ALPHA_MAX)
    if smooth_cutoff:  # C¹ ramp s(t) = 3t² - 2t³ over alpha in [1/255, 2/255] instead of the hard skip.
        t = ((alpha - ALPHA_MIN) / ALPHA_MIN).clamp(0, 1)
        alpha = alpha * t * t * (3 - 2 * t)
        skipped = sigma < 0
    else:
        skipped = (sigma < 0) | (alpha < ALPHA_MIN)
    alpha = torch.where(skipped, 0.0, alpha)

    # Early termination: the first Gaussian with T' <= 1e-4 and everything after it are dropped. Skipped
    # Gaussians leave T unchanged and T never rises, so these are exactly the entries whose running T' is
    # <= 1e-4.
    with torch.no_grad():
        reached = torch.cumprod(1 - alpha, dim=1) > TRANSMITTANCE_MIN
    alpha = torch.where(reached, alpha, 0.0)

    # T[:, i] is the transmittance in front of entry i; T[:, -1] the final one (1 for an empty list).
    T = torch.cumprod(torch.cat([alpha.new_ones(len(alpha), 1), 1 - alpha], dim=1), dim=1)  # [P, G + 1]
    T_before, T_after = T[:, :-1], T[:, 1:]
    # A broadcast sum rather than a matmul: BLAS threads stall on tiny matrices when the CPU is shared.
    rgb = ((alpha * T_before)[:, :, None] * colors).sum(dim=1)

    with torch.no_grad():
        # T only falls, so the first entry with T' <= 0.5 has T > 0.5 >= T' (none if all T' > 0.5).
        median = (T_after > MEDIAN_TRANSMITTANCE).sum(dim=1)
        median = torch.where(median < len(opacities), median, -1)
    return rgb, T[:, -1], median


def _pixels_per_chunk(num_gaussians: int, channels: int) -> int:
    """Pixels per chunk: _composite keeps ~16 [pixels, Gaussians] and one [pixels, Gaussians, D] alive."""
    return max(1, CHUNK_ELEMENTS // (max(1, num_gaussians) * (16 + channels)))


def rasterize(
    means2d: Float[Tensor, "C N 2"],
    conics: Float[Tensor, "C N 3"],
    colors: Float[Tensor, "C N D"],
    opacities: Float[Tensor, "C N"],
    depths: Float[Tensor, "C N"],
    radii: Int[Tensor, "C N 2"],
    width: int,
    height: int,
    background: Float[Tensor, "C D"] | None = None,
    smooth_cutoff: bool = False,
) -> tuple[Float[Tensor, "C H W D"], Float[Tensor, "C H W 1"], Int64[Tensor, "C H W"]]:
    """Front-to-back alpha compositing (3DGS eq. 3), every Gaussian with radii > 0 against every pixel.

    Gaussians are ordered per camera by float32 depth (the sort key of `intersect_tiles`), ties by index.
    Pixel (u, v) samples (u + 0.5, v + 0.5). Pixels are processed in chunks that keep about CHUNK_ELEMENTS
    intermediate values alive; with several chunks and autograd on, each chunk is checkpointed, so backward
    memory stays bounded too.

    Args:
        means2d: [C, N, 2] projected centres.
        conics: [C, N, 3] packed inverse 2D covariances (a, b, c).
        colors: [C, N, D] per-camera colours.
        opacities: [C, N] opacities.
        depths: [C, N] depths, used only for ordering.
        radii: [C, N, 2] a Gaussian is drawn only if both are > 0.
        width: image width in pixels.
        height: image height in pixels.
        background: [C, D] colour behind everything, composited with the final transmittance; None for zeros.
        smooth_cutoff: replace the hard alpha < 1/255 skip with a C¹ ramp (for finite-difference checks).

    Returns:
        render_colors: [C, H, W, D] composited colours plus T · background.
        render_alphas: [C, H, W, 1] 1 - final transmittance.
        median_ids: [C, H, W] int64 flatten id `c * N + n` of the Gaussian where T crosses 0.5, -1 if none.
    """
    C, N, D = colors.shape
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pixel_centres = torch.stack([u, v], dim=-1).reshape(-1, 2).to(means2d) + 0.5  # [H W, 2]

    images, alphas, medians = [], [], []
    for cam in range(C):
        ids = (radii[cam] > 0).all(dim=-1).nonzero()[:, 0]
        ids = ids[torch.sort(depths[cam, ids].float(), stable=True).indices]  # front to back, ties by index
        inputs = (means2d[cam, ids], conics[cam, ids], colors[cam, ids], opacities[cam, ids])
        chunk = _pixels_per_chunk(len(ids), D)
        # With several chunks, keep one chunk's intermediates alive at a time: backward recomputes them.
        recompute_in_backward = (
            chunk < height * width and torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
        )
        rgb, T, median = [], [], []
        for start in range(0, height * width, chunk):
            centres = pixel_centres[start : start + chunk]
            if recompute_in_backward:
                out = checkpoint(_composite, centres, *inputs, smooth_cutoff, use_reentrant=False)
            else:
                out = _composite(centres, *inputs, smooth_cutoff)
            rgb.append(out[0])
            T.append(out[1])
            median.append(out[2])
        rgb, T, median = torch.cat(rgb), torch.cat(T), torch.cat(median)
        if background is not None:
            rgb = rgb + T[:, None] * background[cam]
        flat_ids = torch.cat([cam * N + ids, ids.new_full((1,), -1)])  # local -1 picks the -1 at the end
        median = flat_ids[median]
        images.append(rgb.reshape(height, width, D))
        alphas.append((1 - T).reshape(height, width, 1))
        medians.append(median.reshape(height, width))
    return torch.stack(images), torch.stack(alphas), torch.stack(medians)
