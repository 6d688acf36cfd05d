"""A tile-based differentiable rasterizer for 3D Gaussians with reference, CPU and CUDA backends."""

from ._backend import has_cuda as has_cuda
from .ops import eval_sh as eval_sh
from .ops import intersect_tiles as intersect_tiles
from .ops import project as project
from .ops import quat_scale_to_covar as quat_scale_to_covar
from .ops import rasterize as rasterize
from .types import Projected as Projected
from .types import RasterOutput as RasterOutput
from .types import RasterSettings as RasterSettings
from .types import TileIntersections as TileIntersections
