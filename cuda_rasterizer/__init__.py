"""A tile-based differentiable rasterizer for 3D Gaussians with reference, CPU and CUDA backends."""

from ._backend import has_cuda as has_cuda
from .ops import covar4d_from_quats as covar4d_from_quats
from .ops import covar4d_from_rotors as covar4d_from_rotors
from .ops import cull_by_time as cull_by_time
from .ops import eval_sh as eval_sh
from .ops import eval_sh_4d as eval_sh_4d
from .ops import intersect_tiles as intersect_tiles
from .ops import project as project
from .ops import quat_scale_to_covar as quat_scale_to_covar
from .ops import rasterize as rasterize
from .ops import rotors_to_quats_lr as rotors_to_quats_lr
from .ops import slice_4d as slice_4d
from .ops import spatial_quats_to_quats_lr as spatial_quats_to_quats_lr
from .types import Projected as Projected
from .types import RasterOutput as RasterOutput
from .types import RasterSettings as RasterSettings
from .types import Sliced4D as Sliced4D
from .types import TileIntersections as TileIntersections
