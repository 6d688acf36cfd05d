"""A temporal hierarchy on disk: one 4D PLY per non-empty segment plus a JSON manifest, read back one segment at a
time.

Layout of a hierarchy folder:

    hierarchy.json                 the manifest (below)
    L00_S0000_<gen>.ply            root segment, `splat4d.io.ply.write_ply_4d` format
    L03_S0005_<gen>.ply            level 3, segment 5, ...

Segment files are 4D PLYs rather than `torch.save` pickles: the format is already ours, documented and tested
(exact float32 round trip, errors that name the file), every segment opens on its own in `splat4d view` and in
other 4D PLY tools, and reading it never unpickles code. Parameters are stored as float32.

The manifest (JSON, `FORMAT_VERSION`) records the tree (depth, branching), the scene's time period, the temporal
cull threshold the assignment was made for, the per-Gaussian shape of every parameter (so an empty path still
renders), and per segment: level, index, time bounds, file, Gaussian count, how many of those are primaries (the
rest are copies of Gaussians that straddle the boundary with the previous segment, see `splat4d.hierarchy.build`),
byte size and SHA-256.

Writing is crash-safe: each save writes its segment files under fresh names (`<gen>` is a random token of that
save), then atomically replaces the manifest, then deletes segment files of earlier saves. A reader therefore sees
either the old or the new hierarchy, never a mix. Every read validates, and every error is one line that starts
with the offending file: the manifest's values (types, finite numbers, a tree small enough to hold, a parameter
layout a `Gaussians4D` can have) and that every segment file it lists is there at its recorded size when it is read;
each segment's hash, count, layout and values (`splat4d.io.ply.read_ply_4d`) when the segment is loaded.
"""

import hashlib
import json
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from splat4d.errors import UserError
from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy.build import Hierarchy
from splat4d.hierarchy.tree import MAX_LEAVES, Segment, TimeTree
from splat4d.io.atomic import atomic_write_bytes, atomic_write_text
from splat4d.io.ply import PlyError, gaussians4d_to_ply_bytes, read_ply_4d

FORMAT = "splat4d-temporal-hierarchy"
FORMAT_VERSION = 1
MANIFEST_NAME = "hierarchy.json"
_SEGMENT_FILE = re.compile(r"^L\d+_S\d+_[0-9a-f]{8}\.ply$")
_HASH_CHUNK = 1 << 20
_REWRITE = "write the hierarchy again with `splat4d export hierarchy`"
"""What to do about a damaged hierarchy folder (the end of its error messages)."""


class HierarchyFormatError(UserError):
    """A hierarchy folder cannot be read; the one-line message starts with the offending file."""


@dataclass(frozen=True)
class SegmentRecord:
    """The manifest's entry for one non-empty segment."""

    segment: Segment
    file: str
    """File name inside the hierarchy folder."""
    count: int
    primary: int
    """The first `primary` Gaussians of the file are its own; the others are copies (see `Hierarchy.primary`)."""
    nbytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: what `read_segment` needs to load and check any segment."""

    path: Path
    tree: TimeTree
    time_period: float
    threshold: float
    param_shapes: dict[str, tuple[int, ...]]
    """Per-Gaussian (trailing) shape of every parameter, e.g. {"means4": (4,), "sh0": (2, 1, 3), ...}."""
    records: dict[Segment, SegmentRecord]
    """Non-empty segments in canonical order; a segment absent here holds no Gaussians."""

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def num_gaussians(self) -> int:
        """Distinct Gaussians (copies not counted)."""
        return sum(r.primary for r in self.records.values())

    def empty_scene(self) -> Gaussians4D:
        """Zero Gaussians with this hierarchy's parameter layout."""
        return Gaussians4D(
            {k: torch.zeros(0, *shape) for k, shape in self.param_shapes.items()}, self.time_period
        )


def save_hierarchy(directory: Path, hierarchy: Hierarchy) -> Path:
    """Write `hierarchy` into `directory` (created if needed; an earlier hierarchy there is replaced).

    Returns:
        The manifest's path.
    """
    items = ((s, g, hierarchy.primary_count(s)) for s, g in hierarchy.segments.items())
    return write_segments(directory, hierarchy.tree, hierarchy.template, hierarchy.threshold, items)


def write_segments(
    directory: Path,
    tree: TimeTree,
    template: Gaussians4D,
    threshold: float,
    items: Iterable[tuple[Segment, Gaussians4D, int]],
) -> Path:
    """Write a hierarchy given one (segment, Gaussians, primary count) at a time, so that a hierarchy larger than
    memory (streamed training, `splat4d.hierarchy.training`) is written holding one segment; empty segments are
    skipped. `template` gives the parameter layout and time period, as `Hierarchy.template` does.

    Returns:
        The manifest's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generation = secrets.token_hex(4)
    width = len(str(tree.num_leaves - 1))
    entries = []
    for segment, gaussians, primary in items:
        if len(gaussians) == 0:
            continue
        data = gaussians4d_to_ply_bytes(gaussians)
        name = f"L{segment.level:02d}_S{segment.index:0{width}d}_{generation}.ply"
        atomic_write_bytes(directory / name, data)
        start, end = tree.bounds(segment)
        entries.append(
            {
                "level": segment.level,
                "index": segment.index,
                "start": start,
                "end": end,
                "file": name,
                "count": len(gaussians),
                "primary": primary,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "depth": tree.depth,
        "branching": tree.branching,
        "time_period": template.time_period,
        "time_cull_threshold": threshold,
        "num_gaussians": sum(e["primary"] for e in entries),
        "param_shapes": {k: list(v.shape[1:]) for k, v in template.params.items()},
        "segments": sorted(entries, key=lambda e: tree.canonical_index(Segment(e["level"], e["index"]))),
    }
    path = directory / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    keep = {e["file"] for e in entries}
    for old in directory.iterdir():
        if _SEGMENT_FILE.match(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)
    return path


def read_manifest(directory: Path) -> Manifest:
    """Read and validate `directory`/hierarchy.json.

    Raises:
        HierarchyFormatError: missing, not JSON, another format or version, inconsistent entries, or a listed
            segment file that is missing or not of its recorded size.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise HierarchyFormatError(f"{path}: hierarchy manifest not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (
        ValueError,
        RecursionError,
    ) as exc:  # JSONDecodeError, UnicodeDecodeError, 4300-digit numbers, ...
        raise HierarchyFormatError(f"{path}: not valid JSON ({_one_line(exc)}); {_REWRITE}") from None
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise HierarchyFormatError(f"{path}: cannot be read ({reason})") from None
    try:
        manifest = _parse_manifest(path, doc)
    except HierarchyFormatError:
        raise
    except KeyError as exc:
        raise HierarchyFormatError(f"{path}: malformed manifest (missing key {exc}); {_REWRITE}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise HierarchyFormatError(f"{path}: malformed manifest ({_one_line(exc)}); {_REWRITE}") from None
    for record in manifest.records.values():
        _check_segment_file(manifest, record)
    return manifest


def read_segment(manifest: Manifest, segment: Segment) -> Gaussians4D:
    """Load one segment's Gaussians, checking the file against the manifest (size, SHA-256, count, layout).

    Raises:
        KeyError: `segment` is empty (not in the manifest).
        HierarchyFormatError: the file is missing, corrupt or does not match the manifest.
    """
    record = manifest.records[segment]
    path = _check_segment_file(manifest, record)
    if _sha256(path) != record.sha256:
        raise HierarchyFormatError(
            f"{path}: SHA-256 does not match the manifest (file corrupt or replaced); {_REWRITE}"
        )
    try:
        gaussians = read_ply_4d(path)
    except PlyError as exc:
        raise HierarchyFormatError(_one_line(exc)) from None
    layout = {k: tuple(v.shape[1:]) for k, v in gaussians.params.items()}
    if len(gaussians) != record.count or layout != manifest.param_shapes:
        raise HierarchyFormatError(
            f"{path}: holds {len(gaussians)} Gaussians with parameters {layout}, the manifest says "
            f"{record.count} with {manifest.param_shapes}"
        )
    if gaussians.time_period != manifest.time_period:
        raise HierarchyFormatError(
            f"{path}: time_period {gaussians.time_period}, the manifest says {manifest.time_period}"
        )
    return gaussians


def _check_segment_file(manifest: Manifest, record: SegmentRecord) -> Path:
    """The path of `record`'s file, after checking that it is a file of the size the manifest records."""
    path = manifest.directory / record.file
    if not path.is_file():
        raise HierarchyFormatError(
            f"{path}: segment file not found (listed in {manifest.path.name}); {_REWRITE}"
        )
    size = path.stat().st_size
    if size != record.nbytes:
        raise HierarchyFormatError(
            f"{path}: {size} bytes, the manifest says {record.nbytes} (file cut short or replaced); {_REWRITE}"
        )
    return path


def load_hierarchy(directory: Path) -> Hierarchy:
    """Read a whole hierarchy into memory (for editing or flattening; `HierarchicalScene` streams instead)."""
    manifest = read_manifest(directory)
    segments = {segment: read_segment(manifest, segment) for segment in manifest.records}
    primary = {segment: record.primary for segment, record in manifest.records.items()}
    return Hierarchy(manifest.tree, segments, manifest.empty_scene(), manifest.threshold, primary)


def _parse_manifest(path: Path, doc: Any) -> Manifest:
    def fail(why: str) -> HierarchyFormatError:
        return HierarchyFormatError(f"{path}: {why}; {_REWRITE}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise fail(f"not a {FORMAT} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise fail(f"format_version {doc.get('format_version')!r} is not the supported {FORMAT_VERSION}")
    depth, branching = _int(doc["depth"]), _int(doc["branching"])
    if not 0 <= depth <= MAX_LEAVES.bit_length() or not 2 <= branching <= MAX_LEAVES:
        raise fail(f"depth {depth} or branching {branching} does not make a tree splat4d can hold")
    try:
        tree = TimeTree(depth, branching)
    except ValueError as exc:
        raise fail(_one_line(exc)) from None
    time_period = _number(doc["time_period"], "time_period")
    if not (math.isfinite(time_period) and time_period > 0):
        raise fail(f"time_period {time_period} must be a positive finite number")
    threshold = _number(doc["time_cull_threshold"], "time_cull_threshold")
    if not 0 < threshold < 1:
        raise fail(f"time_cull_threshold {threshold} must be in (0, 1)")
    shapes = doc["param_shapes"]
    if not isinstance(shapes, dict):
        raise fail("param_shapes must be an object")
    param_shapes = {str(k): tuple(_int(d) for d in _list(v)) for k, v in shapes.items()}
    layout_problem = _layout_problem(param_shapes)
    if layout_problem:
        raise fail(f"param_shapes do not describe a Gaussians4D ({layout_problem})")
    records: dict[Segment, SegmentRecord] = {}
    for entry in _list(doc["segments"]):
        if not isinstance(entry, dict):
            raise fail(f"segments must hold objects, found {entry!r:.40}")
        segment = Segment(_int(entry["level"]), _int(entry["index"]))
        name = str(entry["file"])
        if not tree.contains_segment(segment):
            raise fail(f"segment {segment} is outside a tree of depth {tree.depth}")
        if segment in records:
            raise fail(f"segment {segment} is listed twice")
        if Path(name).name != name or not name.endswith(".ply"):
            raise fail(f"segment file {name!r} must be a plain .ply file name inside the folder")
        count, nbytes, sha = _int(entry["count"]), _int(entry["bytes"]), str(entry["sha256"])
        primary = _int(entry["primary"])
        if count < 1 or not 0 <= primary <= count or nbytes < 0 or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise fail(f"segment {segment}: bad count, primary, bytes or sha256")
        records[segment] = SegmentRecord(segment, name, count, primary, nbytes, sha)
    records = dict(sorted(records.items(), key=lambda item: tree.canonical_index(item[0])))
    manifest = Manifest(path, tree, time_period, threshold, param_shapes, records)
    if manifest.num_gaussians != _int(doc["num_gaussians"]):
        raise fail(
            f"segments hold {manifest.num_gaussians} Gaussians, num_gaussians says {doc['num_gaussians']}"
        )
    try:
        manifest.empty_scene()
    except ValueError as exc:
        raise fail(f"param_shapes do not describe a Gaussians4D ({_one_line(exc)})") from None
    return manifest


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {value!r:.40}")
    return float(value)


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r:.40}")
    return value


def _layout_problem(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What is wrong with `shapes` as the per-Gaussian parameter shapes of a `Gaussians4D`, or None."""
    rotation = {"rotors": (8,)} if "rotors" in shapes else {"quats_l": (4,), "quats_r": (4,)}
    expected = {"means4": (4,), "log_scales4": (4,), "opacity_logits": (), **rotation}
    if shapes.keys() != expected.keys() | {"sh0", "shN"}:
        return f"parameters {sorted(shapes)}, expected {sorted(expected.keys() | {'sh0', 'shN'})}"
    wrong = [k for k, shape in expected.items() if shapes[k] != shape]
    if wrong:
        return f"{wrong[0]} has shape {list(shapes[wrong[0]])}, expected {list(expected[wrong[0]])}"
    sh0, shN = shapes["sh0"], shapes["shN"]
    if (
        len(sh0) != 3
        or len(shN) != 3
        or sh0[0] < 1
        or sh0[1:] != (1, 3)
        or shN[0] != sh0[0]
        or shN[1] < 0
        or shN[2] != 3
    ):
        return f"sh0 {list(sh0)} and shN {list(shN)} are not [M, 1, 3] and [M, K - 1, 3]"
    if math.isqrt(shN[1] + 1) ** 2 != shN[1] + 1:
        return f"shN has {shN[1]} higher SH bases, not a full degree"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
