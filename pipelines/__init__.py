"""Reconstruction methods: each is a preset config plus a `Pipeline` the shared trainer drives."""

from pipelines import dynamic, long_video, sparse_view, static
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
        dynamic.load_dynamic_scene,
    ),
    "long": PipelineSpec(
        "long videos: 4D Gaussians trained streamed through a temporal hierarchy, memory flat in the length",
        long_video.PRESETS,
        None,
        dynamic.with_steps,
        dynamic.load_dynamic_scene,
        train=long_video.train,
        load=long_video.load,
        state_folders=(long_video.STORE, long_video.HIERARCHY),
    ),
    "sparse": PipelineSpec(
        "static scenes from 3 to 9 posed photos (co-regularised fields, unpooling; optional learned priors)",
        sparse_view.PRESETS,
        sparse_view.build,
        sparse_view.with_steps,
        sparse_view.load_sparse_scene,
    ),
}
