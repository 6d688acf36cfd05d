"""Static scenes with 3DGS photometric training: `splat4d reconstruct PHOTOS -o OUT` (the default pipeline)."""

from pipelines.static.config import PRESETS as PRESETS
from pipelines.static.config import StaticConfig as StaticConfig
from pipelines.static.config import with_steps as with_steps
from pipelines.static.pipeline import StaticPipeline as StaticPipeline
from pipelines.static.pipeline import build as build
