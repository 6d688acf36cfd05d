"""Dynamic scenes with native 4D Gaussians: `splat4d reconstruct DATASET -o OUT --pipeline dynamic`."""

from pipelines.dynamic.config import PRESETS as PRESETS
from pipelines.dynamic.config import DynamicConfig as DynamicConfig
from pipelines.dynamic.config import with_steps as with_steps
from pipelines.dynamic.pipeline import DynamicPipeline as DynamicPipeline
from pipelines.dynamic.pipeline import build as build
from pipelines.dynamic.scene import load_dynamic_scene as load_dynamic_scene
