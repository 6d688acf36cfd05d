"""Optional learned priors of the sparse pipeline (`pip install 'splat4d[gen]'`): a monocular depth model on the
training photos and a Stable Diffusion model on novel views.

Models are named by `PriorsConfig` (a Hub name or a local folder) and loaded on first use in training; importing
this package imports neither transformers nor diffusers.
"""

from pipelines.sparse_view.priors.config import DepthPriorConfig as DepthPriorConfig
from pipelines.sparse_view.priors.config import DiffusionPriorConfig as DiffusionPriorConfig
from pipelines.sparse_view.priors.config import PriorsConfig as PriorsConfig
from pipelines.sparse_view.priors.learned import LearnedPriors as LearnedPriors
