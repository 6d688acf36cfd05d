"""`HierarchicalScene`: render a long 4D video from a hierarchy on disk, keeping only the segments of one time
resident.

For a time t it needs the non-empty segments on `path(t)` (at most depth + 1), takes them from an LRU cache or
reads them from disk, concatenates them root to leaf into one `Gaussians4D` and renders that with
`splat4d.render.render`. The image equals the flat scene's at t (see `splat4d.hierarchy.build`). Resident memory is
the cache (bounded in segments and bytes) plus the concatenation of the current path, which is kept while
consecutive frames share the path: neither grows with the video's length.

The default cache holds depth + 1 segments, exactly one path: playing frames in time order then reads every segment
from disk once (when the path moves on, the segments it leaves are the least recently used). Raise
`max_cached_segments` for scrubbing back and forth.
"""

from pathlib import Path

import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy.build import concat
from splat4d.hierarchy.cache import LRUCache
from splat4d.hierarchy.storage import Manifest, read_manifest, read_segment
from splat4d.hierarchy.tree import Segment, TimeTree
from splat4d.render import RenderOutput, RenderSettings, render


def gaussians_nbytes(gaussians: Gaussians4D) -> int:
    """Bytes of a scene's parameter tensors."""
    return sum(p.numel() * p.element_size() for p in gaussians.params.values())


class HierarchicalScene:
    """A temporal hierarchy streamed from `directory` (written by `save_hierarchy`) onto `device`.

    Args:
        directory: the hierarchy folder (its manifest is read and validated now; segments on demand).
        device: where loaded segments live and rendering happens.
        max_cached_segments: LRU bound on cached segments (None: depth + 1, one path).
        max_cached_bytes: LRU bound on cached parameter bytes (None: unbounded).
    """

    def __init__(
        self,
        directory: Path,
        device: torch.device | str = "cpu",
        max_cached_segments: int | None = None,
        max_cached_bytes: int | None = None,
    ) -> None:
        self.manifest: Manifest = read_manifest(Path(directory))
        self.device = torch.device(device)
        self._template = self.manifest.empty_scene().to(self.device)
        limit = self.tree.depth + 1 if max_cached_segments is None else max_cached_segments
        self.cache: LRUCache[Segment, Gaussians4D] = LRUCache(limit, gaussians_nbytes, max_cached_bytes)
        self.segments_read = 0
        """Segment files read from disk so far."""
        self._current: tuple[tuple[Segment, ...], Gaussians4D] | None = None

    @property
    def tree(self) -> TimeTree:
        return self.manifest.tree

    @property
    def num_gaussians(self) -> int:
        return self.manifest.num_gaussians

    def segments_at(self, t: float) -> list[Segment]:
        """The non-empty segments on `path(t)`, root to leaf."""
        return [s for s in self.tree.path(t) if s in self.manifest.records]

    def gaussians_at(self, t: float) -> Gaussians4D:
        """Every Gaussian that can be drawn at t, as one scene (shares storage with the cache; do not modify)."""
        key = tuple(self.segments_at(t))
        if self._current is None or self._current[0] != key:
            self._current = None  # release the previous path's concatenation before building the next
            parts = [self.cache.get(s, lambda s=s: self._load(s)) for s in key]
            self._current = (key, concat(parts, self._template))
        return self._current[1]

    @torch.no_grad()
    def render(self, cameras: Cameras, t: float, settings: RenderSettings | None = None) -> RenderOutput:
        """`splat4d.render.render` of the scene at time t (no autograd graph: streaming is for playback).

        Raises:
            ValueError: when `settings` culls below the threshold the hierarchy was built for (Gaussians drawn at
                such a low weight may live in segments off the path).
        """
        s = settings or RenderSettings()
        if s.time_cull_threshold < self.manifest.threshold:
            raise ValueError(
                f"HierarchicalScene.render: time_cull_threshold {s.time_cull_threshold} is below the "
                f"{self.manifest.threshold} the hierarchy in {self.manifest.directory} was built for"
            )
        return render(self.gaussians_at(t), cameras, s, t=t)

    def resident_bytes(self) -> int:
        """Parameter bytes held now: the cached segments plus the current path's scene unless it is one of them."""
        held = self.cache.nbytes
        if self._current is not None:
            key, scene = self._current
            if len(key) > 1 or (key and key[0] not in self.cache):
                held += gaussians_nbytes(scene)
        return held

    def _load(self, segment: Segment) -> Gaussians4D:
        self.segments_read += 1
        return read_segment(self.manifest, segment).to(self.device)
