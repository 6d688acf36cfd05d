"""Reconstruction methods: each is a preset config plus a `Pipeline` the shared trainer drives."""

from pipelines import dynamic, static
from splat4d.pipeline import PipelineSpec

PIPELINES: dict[str, PipelineSpec] = {
    "static": PipelineSpec(
        "3DGS photometric training of a static scene", static.PRESETS, static.build, static.with_steps
    ),
    "dynamic": PipelineSpec(
        "native 4D Gaussians for scenes that move (images with capture times)",
        dynamic.PRESETS,
        dynamic.build,
        dynamic.with_steps,
    ),
}
