"""Static scenes from 3 to 9 posed photos: `splat4d reconstruct DATASET -o OUT --pipeline sparse --views 3`.

Weight-free regularisers: CoR-GS co-regularisation of two fields (co-pruning and pseudo-view consistency),
DropGaussian, FSGS proximity-guided unpooling, opacity, scale and floater regularisers; optional learned priors
(`priors`: monocular depth, a diffusion model on pseudo views; `pip install 'splat4d[gen]'`). Poses come from the
dataset (nerfstudio, Blender, COLMAP); photos without poses are refused rather than sent through SfM. Without a
point cloud, points are triangulated from the input photos at their known poses (random ones when too few).
"""

from pipelines.sparse_view.config import PRESETS as PRESETS
from pipelines.sparse_view.config import SparseViewConfig as SparseViewConfig
from pipelines.sparse_view.config import with_steps as with_steps
from pipelines.sparse_view.pipeline import SparseViewPipeline as SparseViewPipeline
from pipelines.sparse_view.pipeline import build as build
from pipelines.sparse_view.views import load_sparse_scene as load_sparse_scene
