"""Training state of a temporal hierarchy, one segment at a time: the few segments being trained are resident (an LRU
cache), every other one lives in its own file, and a commit makes the folder a consistent checkpoint.

A segment's state is a flat dict of tensors: each Gaussian parameter under its own name and its Adam moments under
`exp_avg/<name>` and `exp_avg_sq/<name>` (plus what the trainer keeps per Gaussian), all with the segment's
Gaussians as first dimension (an absent segment is empty). Files are `torch.save`d by this process and read back
only by it (`weights_only=True`), like the trainer's checkpoints.

Crash safety follows `splat4d.hierarchy.storage`: a segment written back (evicted, or at a commit) goes to a file
named with the current generation, never over a file the last commit refers to; `commit` then writes every modified
resident segment, atomically replaces `state.pt` (which lists each segment's file, plus whatever the trainer adds:
its position, step, RNG), and only then deletes files no longer listed. A run killed at any moment therefore
resumes from the last commit exactly.
"""

import io
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from splat4d.errors import UserError
from splat4d.hierarchy.cache import LRUCache
from splat4d.hierarchy.tree import Segment, TimeTree
from splat4d.io.atomic import atomic_write_bytes

STATE_NAME = "state.pt"
MOMENTS = ("exp_avg", "exp_avg_sq")
"""Adam moments kept per parameter, each with the parameter's shape."""
_FILE = re.compile(r"^L\d+_S\d+_[0-9a-f]{8}\.pt$")

SegmentState = dict[str, Tensor]
"""Parameters and Adam moments of one segment's Gaussians (see the module docstring)."""


def state_nbytes(state: SegmentState) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def state_len(state: SegmentState) -> int:
    return next(iter(state.values())).shape[0]


class StoreError(UserError):
    """A file of a streamed-training store is missing or unreadable; the message names it."""


def load_state_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A file of the store (`state.pt` or a segment's state), read with `torch.load` (tensors only).

    Raises:
        StoreError: naming the file, when it is missing, damaged or not a mapping.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise StoreError(f"{path}: training state missing; rerun with --overwrite to start over") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise StoreError(
            f"{path}: not a readable training state ({type(exc).__name__}); rerun with --overwrite to start over"
        ) from exc
    if not isinstance(payload, dict):
        raise StoreError(f"{path}: not a training state; rerun with --overwrite to start over")
    return payload


class SegmentStore:
    """Per-segment training state in `directory`, at most `max_resident` segments in memory (on `device`).

    Args:
        directory: the store's folder (created); a committed state there is its `STATE_NAME` file.
        tree: the hierarchy's segments.
        layout: name → (trailing shape, dtype) of every tensor of a segment state, for empty segments.
        max_resident: LRU bound in segments; streamed training needs one path, depth + 1.
    """

    def __init__(
        self,
        directory: Path,
        tree: TimeTree,
        layout: dict[str, tuple[tuple[int, ...], torch.dtype]],
        max_resident: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if max_resident < 1:
            raise ValueError(f"SegmentStore: max_resident must be at least 1, got {max_resident}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tree = tree
        self.layout = layout
        self.device = torch.device(device)
        self.files: dict[Segment, str] = {}
        """The file holding each segment's newest written state (committed or not)."""
        self.counts: dict[Segment, int] = {}
        """Gaussians in each non-empty segment now (resident or not)."""
        self._dirty: set[Segment] = set()
        self._generation = secrets.token_hex(4)
        self._cache: LRUCache[Segment, SegmentState] = LRUCache(
            max_resident, state_nbytes, None, self._evicted
        )
        self.reads = 0
        """Segment files read so far."""
        self.writes = 0
        """Segment files written so far."""
        self.resident_max = 0
        """Most segments resident at once so far."""

    # -- what is stored ---------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.directory / STATE_NAME

    def empty_state(self) -> SegmentState:
        return {k: torch.zeros(0, *shape, dtype=dtype, device=self.device) for k, (shape, dtype) in
                self.layout.items()}  # fmt: skip

    def segments(self) -> list[Segment]:
        """Segments holding Gaussians now (resident or on disk), in the tree's canonical order."""
        return sorted(self.counts, key=self.tree.canonical_index)

    def __len__(self) -> int:
        """Gaussians in all segments."""
        return sum(self.counts.values())

    # -- reading and writing segments -------------------------------------------------------------------------
    def get(self, segment: Segment) -> SegmentState:
        """`segment`'s state (resident from now on; do not modify it in place, `put` a new one)."""
        state = self._cache.get(segment, lambda: self._load(segment))
        self.resident_max = max(self.resident_max, len(self._cache))
        return state

    def put(self, segment: Segment, state: SegmentState) -> None:
        """Replace `segment`'s state (it becomes resident; its stored state is not read)."""
        missing = self.layout.keys() - state.keys()
        if missing or len({t.shape[0] for t in state.values()}) != 1:
            raise ValueError(
                f"SegmentStore.put: {segment} lacks {sorted(missing)} or its tensors' lengths differ"
            )
        self._dirty.add(segment)
        n = state_len(state)
        if n:
            self.counts[segment] = n
        else:
            self.counts.pop(segment, None)
        if segment in self._cache:
            self._cache.put(segment, state)
        else:
            self._cache.get(segment, lambda: state)
        self.resident_max = max(self.resident_max, len(self._cache))

    def commit(self, extra: dict[str, Any]) -> None:
        """Write every modified resident segment, then `state.pt` (the file of each segment, plus `extra`), then
        delete the files of earlier states."""
        for segment, state in self._cache.items():
            if segment in self._dirty:
                self._write(segment, state)
        payload = {
            "files": {(s.level, s.index): f for s, f in self.files.items()},
            "counts": {(s.level, s.index): n for s, n in self.counts.items()},
            **extra,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.state_path, buffer.getvalue())
        keep = set(self.files.values())
        for old in self.directory.iterdir():
            if _FILE.match(old.name) and old.name not in keep:
                old.unlink(missing_ok=True)
        self._generation = secrets.token_hex(4)

    def restore(self) -> dict[str, Any]:
        """Go back to the last commit (resident segments are dropped); returns the `extra` it was given."""
        payload = load_state_file(self.state_path)
        self._cache.clear()
        self._dirty.clear()
        self.files = {Segment(level, index): name for (level, index), name in payload.pop("files").items()}
        self.counts = {Segment(level, index): n for (level, index), n in payload.pop("counts").items()}
        return payload

    def states(self) -> Iterator[tuple[Segment, SegmentState]]:
        """Every non-empty segment's state in canonical order, loaded one at a time through the cache."""
        for segment in self.segments():
            yield segment, self.get(segment)

    # -- internals --------------------------------------------------------------------------------------------
    def _load(self, segment: Segment) -> SegmentState:
        name = self.files.get(segment)
        if name is None:
            return self.empty_state()
        path = self.directory / name
        if not path.is_file():
            raise StoreError(
                f"{path}: segment state missing (listed in {self.state_path.name}); rerun with --overwrite to "
                "start over"
            )
        self.reads += 1
        state = load_state_file(path, self.device)
        if set(state) != set(self.layout):
            raise StoreError(f"{path}: holds {sorted(state)}, expected {sorted(self.layout)}")
        return state

    def _evicted(self, segment: Segment, state: SegmentState) -> None:
        if segment in self._dirty:
            self._write(segment, state)

    def _write(self, segment: Segment, state: SegmentState) -> None:
        self._dirty.discard(segment)
        if state_len(state) == 0:
            self.files.pop(segment, None)
            return
        width = len(str(self.tree.num_leaves - 1))
        name = f"L{segment.level:02d}_S{segment.index:0{width}d}_{self._generation}.pt"
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        atomic_write_bytes(self.directory / name, buffer.getvalue())
        self.files[segment] = name
        self.writes += 1
