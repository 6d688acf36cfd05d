"""`splat4d export hierarchy SCENE`: a trained 4D scene as a temporal Gaussian hierarchy on disk
(`splat4d.hierarchy`), which `splat4d view` streams segment by segment, holding only the segments of the time shown.

    splat4d export hierarchy scene/                  # scene/exports/hierarchy/
    splat4d view scene/exports/hierarchy/            # the same scene, streamed
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import tyro

from splat4d.errors import UsageError
from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy import MANIFEST_NAME, build, save_hierarchy
from splat4d.pipeline import PipelineSpec

FRAMES_PER_LEAF = 8
"""Default depth: the shallowest tree whose leaf segments span at most this many of the scene's frames."""
MAX_DEPTH = 16


def default_depth(num_frames: int, frames_per_leaf: int = FRAMES_PER_LEAF) -> int:
    """Depth of a binary tree whose leaves span at most `frames_per_leaf` frames (0 for a short clip)."""
    if num_frames <= frames_per_leaf:
        return 0
    return min(MAX_DEPTH, math.ceil(math.log2(num_frames / frames_per_leaf)))


@dataclass
class HierarchyExport:
    """Write a 4D scene made by `splat4d reconstruct --pipeline dynamic` as a temporal Gaussian hierarchy: a tree of
    time segments, each Gaussian in the segments of the level its lifespan matches, one 4D PLY per segment and a
    checked manifest (hierarchy.json). `splat4d view OUT` streams it."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder written by `splat4d reconstruct --pipeline dynamic`."""
    out: Path | None = None
    """Hierarchy folder (default: SCENE/exports/hierarchy)."""
    depth: int | None = None
    """Levels below the root (default: leaves of at most 8 of the scene's frames)."""
    overwrite: bool = False
    """Replace an existing hierarchy in OUT."""

    def output_path(self) -> Path:
        return self.out if self.out is not None else self.scene / "exports" / "hierarchy"

    def main(self, pipelines: Mapping[str, PipelineSpec]) -> Path:
        """Build and write the hierarchy; returns its manifest's path. `pipelines` is the registry, passed in by
        the caller (this core module may not import the pipelines layer)."""
        from splat4d.reconstruct import load_trained

        out = self.output_path()
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: is a file; a hierarchy is a folder, name a folder")
        if out.exists() and any(out.iterdir()):
            if not self.overwrite:
                raise UsageError(f"--out {out}: exists; pass --overwrite to replace it")
            if not (out / MANIFEST_NAME).is_file():
                raise UsageError(
                    f"--out {out}: holds files that are not a splat4d hierarchy; not replacing it"
                )
        trained = load_trained(self.scene, dict(pipelines), torch.device("cpu"))
        trained.refuse_streamed(self.scene, "export hierarchy")
        gaussians = trained.pipeline.gaussians
        if not isinstance(gaussians, Gaussians4D):
            raise UsageError(f"{self.scene}: a static scene has no time to split; export hierarchy needs 4D")
        times = trained.scene.cameras.times
        frames = 1 if times is None else len(torch.unique(times))
        depth = default_depth(frames) if self.depth is None else self.depth
        if not 0 <= depth <= MAX_DEPTH:
            raise UsageError(f"--depth: must be in 0..{MAX_DEPTH}, got {depth}")
        hierarchy = build(gaussians, depth)
        manifest = save_hierarchy(out, hierarchy)  # replaces an earlier hierarchy there atomically
        stored = sum(hierarchy.counts().values())
        print(
            f"{out}: {len(hierarchy):,} Gaussians in {len(hierarchy.segments)} segments of a depth-{depth} tree "
            f"({stored - len(hierarchy):,} copies across segment boundaries)"
        )
        return manifest
