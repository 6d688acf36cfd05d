"""Configuration and presets of the long-video pipeline: the dynamic pipeline's model and losses, trained streamed
through a temporal Gaussian hierarchy (`splat4d.hierarchy.training`)."""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from pipelines.dynamic.config import PRESETS as DYNAMIC_PRESETS
from pipelines.dynamic.config import DynamicConfig


@dataclass
class StreamingConfig:
    """How the video is cut into time segments and visited."""

    depth: int | None = None
    """Levels of the time tree below the root; None: the fewest that leave at most `frames_per_leaf` capture
    times in each leaf (one more level each time the video doubles)."""
    frames_per_leaf: int = 8
    """With `depth` None: capture times per leaf segment, at most."""
    steps_per_visit: int = 50
    """Training steps on one leaf's path per visit; a sweep visits every leaf, and there are as many sweeps as
    `trainer.steps` needs."""
    points_per_path: int = 10_000
    """Initial Gaussians on any one root-to-leaf path (shared out over its segments), however long the video."""
    order: Literal["shuffle", "time"] = "shuffle"
    """Leaves of a sweep in a random order, or in time order back and forth (fewer reads; the shared segments
    drift towards the last times of each run)."""
    promote: bool = False
    """Move a Gaussian that outlives its segment up to the path segment holding its lifespan (False: it stays,
    drawn only inside its segment; promoting piles every leaf's copies into the shared coarse segments)."""
    densify: Literal["sweep", "visit"] = "sweep"
    """sweep: each segment densified once per sweep, or per few sweeps when a sweep is shorter than
    `strategy.refine_every` steps (memory flat in the video's length); visit: the whole path after every visit
    (coarse segments grow faster, and more in longer videos)."""

    def depth_for(self, capture_times: int) -> int:
        if self.depth is not None:
            return self.depth
        return max(0, math.ceil(math.log2(max(capture_times, 1) / max(self.frames_per_leaf, 1))))


@dataclass
class LongVideoConfig(DynamicConfig):
    """4D Gaussians of a long video, trained one root-to-leaf path of a temporal hierarchy at a time, so that memory
    stays flat as the video gets longer (Xu et al. 2024). `trainer.steps` is the total over all visits; opacity
    resets (`strategy.reset_every`) do not apply (a reset would reach one path only)."""

    streaming: StreamingConfig = field(default_factory=StreamingConfig)


def _from_dynamic(cfg: DynamicConfig, streaming: StreamingConfig) -> LongVideoConfig:
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(DynamicConfig)}
    return LongVideoConfig(**fields, streaming=streaming)


PRESETS: dict[str, LongVideoConfig] = {
    "fast": _from_dynamic(
        DYNAMIC_PRESETS["fast"], StreamingConfig(steps_per_visit=25, points_per_path=4_000)
    ),
    "default": _from_dynamic(DYNAMIC_PRESETS["default"], StreamingConfig()),
}
