"""Reconstruction methods: each is a preset config plus a `Pipeline` the shared trainer drives."""

from pipelines import static
from splat4d.pipeline import PipelineSpec

PIPELINES: dict[str, PipelineSpec] = {
    "static": PipelineSpec(
        "3DGS photometric training of a static scene", static.PRESETS, static.build, static.with_steps
    ),
}
