"""Settings and output types shared by every op and backend."""

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


@dataclass(frozen=True)
class RasterSettings:
    """Scalars of one rasterization: image size, culling planes, filtering and test-only switches."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    tile_size: int = 16
    """Tile edge in pixels (only 16 is implemented by the kernels)."""
    near: float = 0.01
    """Gaussians whose camera-space depth is below this are culled."""
    far: float = 1e10
    """Gaussians whose camera-space depth is above this are culled."""
    eps2d: float = 0.3
    """Low-pass filter added to the diagonal of every 2D covariance, in px² (3DGS)."""
    antialiased: bool = False
    """Mip-Splatting opacity compensation, so Gaussians keep their energy when dilated."""
    smooth_cutoff: bool = False
    """Replace the hard 1/255 alpha cut-off by a C¹ ramp (for gradcheck and finite differences only)."""
    absgrad: bool = False
    """Also accumulate the sum of absolute per-pixel image-plane gradients into `means2d.absgrad`."""
    check_finite: bool = True
    """Raise a clear error when an input holds NaN or Inf (one device sync per op)."""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"RasterSettings: image size must be positive, got {self.width}x{self.height}")
        if not 0 < self.near < self.far:
            raise ValueError(f"RasterSettings: need 0 < near < far, got near={self.near}, far={self.far}")

    @property
    def tiles_w(self) -> int:
        return (self.width + self.tile_size - 1) // self.tile_size

    @property
    def tiles_h(self) -> int:
        return (self.height + self.tile_size - 1) // self.tile_size


class Projected(NamedTuple):
    """Per-camera 2D Gaussians from `project`. Culled entries have `radii == 0` and zeros elsewhere."""

    means2d: Tensor  # [C, N, 2] pixel coordinates
    conics: Tensor  # [C, N, 3] inverse dilated 2D covariance (a, b, c)
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 half extents in pixels
    opacities: Tensor  # [C, N] opacities (compensated in antialiased mode)


class TileIntersections(NamedTuple):
    """Depth-sorted (camera, tile, Gaussian) pairs from `intersect_tiles`."""

    isect_ids: Tensor  # [M] int64 sort keys: camera | tile | depth bits
    flatten_ids: Tensor  # [M] int32 index c * N + n
    tile_offsets: Tensor  # [C, tiles_h, tiles_w] int32 start of each tile's run


class RasterOutput(NamedTuple):
    """Images from `rasterize`."""

    colors: Tensor  # [C, H, W, D] composited channels, background included
    alphas: Tensor  # [C, H, W, 1] accumulated opacity 1 - T
    median_ids: Tensor  # [C, H, W] int64 flatten id of the Gaussian where T crosses 0.5, -1 if none


class Sliced4D(NamedTuple):
    """3D Gaussians from `slice_4d`: 4D Gaussians conditioned on one time t."""

    means: Tensor  # [N, 3] conditional means μ_xyz + Σ_xyz,t Σ_tt⁻¹ (t - μ_t)
    covars: Tensor  # [N, 6] conditional covariances Σ_xyz - Σ_xyz,t Σ_tt⁻¹ Σ_t,xyz, packed (xx, xy, xz, yy, yz, zz)
    opacities: Tensor  # [N] opacity × temporal weight
    temporal_weights: Tensor  # [N] exp(-½ (t - μ_t)² / Σ_tt), 1 at t = μ_t
