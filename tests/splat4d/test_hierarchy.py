"""Temporal Gaussian hierarchy: segment tree, lifespans against the rasterizer's temporal weights, assignment rule,
rendering through the hierarchy equal to the flat scene, exact storage round trip, one-line errors naming the file,
and a streaming cache that stays within its bounds."""

import json
import math
from pathlib import Path

import pytest
import torch

import cuda_rasterizer as cr
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D
from splat4d.geometry import look_at
from splat4d.hierarchy import (
    MANIFEST_NAME,
    HierarchicalScene,
    HierarchyFormatError,
    LRUCache,
    Segment,
    TimeTree,
    assign,
    build,
    flatten,
    lifespan_factor,
    lifespans,
    load_hierarchy,
    read_manifest,
    save_hierarchy,
)
from splat4d.render import RenderOutput, RenderSettings, render

THRESHOLD = 1.0 / 255.0


def _gaussians(mu_t: list[float], half_widths: list[float], seed: int = 0) -> Gaussians4D:
    """Unrotated Gaussians with the given temporal centres and exact lifespan half-widths at 1/255."""
    n = len(mu_t)
    g = torch.Generator().manual_seed(seed)
    gaussians = Gaussians4D.from_points(
        (torch.rand(n, 3, generator=g) - 0.5), torch.rand(n, 3, generator=g), torch.tensor(mu_t), sh_degree=0
    )
    sigma = torch.tensor(half_widths, dtype=torch.float64) / lifespan_factor(THRESHOLD)
    with torch.no_grad():
        gaussians.params["log_scales4"][:, 3] = sigma.log().float()
    return gaussians


def _scene(n: int = 300, seed: int = 0) -> Gaussians4D:
    """Space-time rotated Gaussians in front of the cameras: a third long-lived, the rest short-lived, with
    time-varying colour, plus opaque Gaussians whose lifespans end exactly on segment boundaries."""
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    times = torch.rand(n, generator=g) * 1.2 - 0.1
    scene = Gaussians4D.from_points(
        points, torch.rand(n, 3, generator=g), times, sh_degree=1, time_degree=1, init_time_scale=0.01
    )
    with torch.no_grad():
        p = scene.params
        p["log_scales4"][: n // 3, 3] = 1.0
        p["log_scales4"][n // 3 :, 3] += torch.randn(n - n // 3, generator=g) * 0.7
        for name in ("quats_l", "quats_r"):  # small space-time rotations: motion, and Σ_tt ≠ exp(scale_t)²
            p[name].add_(torch.randn(n, 4, generator=g) * 0.02)
        p["opacity_logits"].uniform_(-1, 3, generator=g)
        p["sh0"][:, 1:].normal_(0, 0.3, generator=g)
        p["shN"].normal_(0, 0.1, generator=g)
    # Lifespans [0.4, 0.5], [0.5, 0.6], [0.65, 0.75], widened by 2e-7 so the first two are drawn at t = 0.5.
    edge = _gaussians([0.45, 0.55, 0.7], [0.05 + 2e-7] * 3)
    with torch.no_grad():
        edge.params["means4"][:, :3] = 0.0
        edge.params["log_scales4"][:, :3] = math.log(0.4)
        edge.params["opacity_logits"].fill_(6.0)
    edge = Gaussians4D(
        {
            **{k: v.detach() for k, v in edge.params.items()},
            "sh0": torch.cat([edge.params["sh0"].detach(), torch.zeros(3, 1, 1, 3)], 1),
            "shN": torch.zeros(3, 2, 3, 3),
        }
    )
    return Gaussians4D({k: torch.cat([scene.params[k].detach(), edge.params[k]]) for k in scene.params})


def _cameras() -> Cameras:
    eyes = [torch.tensor([3.0 * math.cos(a), 0.5, 3.0 * math.sin(a)]) for a in (0.3, 1.9)]
    T = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]]).expand(2, 3, 3).clone()
    return Cameras(T, K, width=80, height=60)


def test_path_holds_one_segment_per_level_root_to_leaf() -> None:
    tree = TimeTree(depth=3)
    assert tree.path(0.3) == [Segment(0, 0), Segment(1, 0), Segment(2, 1), Segment(3, 2)]
    assert tree.path(0.5) == [Segment(0, 0), Segment(1, 1), Segment(2, 2), Segment(3, 4)]  # [start, end)
    last = [Segment(0, 0), Segment(1, 1), Segment(2, 3), Segment(3, 7)]
    assert tree.path(1.0) == last  # the last segment of a level is closed
    assert tree.path(-0.2) == tree.path(0.0) and tree.path(1.5) == tree.path(1.0)
    assert tree.bounds(Segment(2, 1)) == (0.25, 0.5)
    segments = tree.segments()
    assert len(segments) == 15 and segments[tree.canonical_index(Segment(3, 2))] == Segment(3, 2)
    ternary = TimeTree(depth=2, branching=3)
    assert ternary.path(0.5) == [Segment(0, 0), Segment(1, 1), Segment(2, 4)]


def test_each_gaussian_goes_to_the_level_of_its_lifespan_into_the_segments_it_touches() -> None:
    cases = {
        # (mu_t, half-width): expected (level, first, last) in a depth-3 binary tree (leaves 1/8 long)
        (0.30, 0.02): (3, 2, 2),  # short-lived, inside leaf [0.25, 0.375)
        (0.50, 3.00): (0, 0, 0),  # long-lived: root
        (0.375, 0.02): (3, 2, 3),  # straddles the leaf boundary 0.375: both leaves
        (0.50, 0.01): (3, 3, 4),  # tiny and straddles 0.5: stays a leaf Gaussian, not a root one
        (0.30, 0.07): (2, 0, 1),  # 0.14 long: too long for a leaf (0.125), fits a quarter, straddles 0.25
        (0.30, 0.10): (2, 0, 1),  # [0.2, 0.4]: touches three leaves, two quarters
        (0.60, 0.20): (1, 0, 1),  # [0.4, 0.8]: level 1, both halves
        (0.98, 0.05): (3, 7, 7),  # sticks out past 1: the clipped [0.93, 1] is in the last leaf
        (-0.5, 0.01): (3, 0, 0),  # entirely before 0: clipped to [0, 0], first leaf
    }
    gaussians = _gaussians([mu for mu, _ in cases], [hw for _, hw in cases])
    levels, first, last = assign(gaussians, TimeTree(depth=3))
    assert list(zip(levels.tolist(), first.tolist(), last.tolist(), strict=True)) == list(cases.values())


def test_empty_lifespans_go_to_the_root() -> None:
    tree = TimeTree(depth=4)
    levels, first, last = tree.assign(
        torch.tensor([math.inf, math.nan, 0.1]), torch.tensor([-math.inf, 0.2, 0.1])
    )
    assert levels.tolist() == [0, 0, 4] and first.tolist() == [0, 0, 1] and last.tolist() == [0, 0, 1]


def test_gaussians_on_a_path_do_not_grow_with_the_video_length() -> None:
    """k clips of the same content (a stage living the whole video, flashes a few frames long spread evenly over
    time): the largest set of Gaussians on one path stays put as k grows, whereas assigning each flash to the
    segment holding its whole lifespan sends every one that straddles a coarse boundary up the tree."""
    per_clip, frames = 64, 32

    def video(clips: int) -> Gaussians4D:
        n = clips * per_clip
        mu = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        half = [3.0 / (clips * frames)] * n  # lives ~6 frames of the k-times longer video
        return _gaussians([*mu.tolist(), 0.5], [*half, 5.0])

    largest = {}
    for clips in (1, 4, 16):
        hierarchy = build(video(clips), depth=2 + int(math.log2(clips)))
        assert len(flatten(hierarchy)) == clips * per_clip + 1
        times = torch.linspace(0, 1, clips * frames).tolist()
        largest[clips] = max(len(hierarchy.gaussians_at(t)) for t in times)
    assert largest[16] <= 1.15 * largest[1], largest


def test_lifespan_ends_are_where_the_rasterizer_weight_crosses_the_cull_threshold() -> None:
    n = 12
    g = torch.Generator().manual_seed(3)
    gaussians = Gaussians4D.from_points(
        torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.rand(n, generator=g), sh_degree=0
    )
    with torch.no_grad():  # space-time rotations: Σ_tt mixes the spatial and temporal scales
        gaussians.params["quats_l"].add_(torch.randn(n, 4, generator=g) * 0.5)
        gaussians.params["quats_r"].add_(torch.randn(n, 4, generator=g) * 0.5)
        gaussians.params["log_scales4"].add_(torch.randn(n, 4, generator=g) * 0.5)
    exact_lo, exact_hi = lifespans(gaussians, THRESHOLD, margin=False)
    padded_lo, padded_hi = lifespans(gaussians, THRESHOLD)
    assert math.isclose(lifespan_factor(THRESHOLD), math.sqrt(2 * math.log(255.0)))

    @torch.no_grad()
    def weight(i: int, t: float) -> float:
        sliced = cr.slice_4d(
            gaussians.means4[i : i + 1], gaussians.covars4[i : i + 1], gaussians.opacities[:1], t
        )
        return float(sliced.temporal_weights[0])

    for i in range(n):
        mu = float(gaussians.means4[i, 3].detach())
        half = float(exact_hi[i]) - mu
        assert half > 0.01
        for end in (float(exact_lo[i]), float(exact_hi[i])):
            assert weight(i, end) == pytest.approx(THRESHOLD, rel=1e-4)
        assert weight(i, mu + 0.999 * half) >= THRESHOLD and weight(i, mu - 0.999 * half) >= THRESHOLD
        for end in (float(padded_lo[i]), float(padded_hi[i])):  # just outside: the renderer culls it
            assert weight(i, end) < THRESHOLD


def test_rendering_through_the_hierarchy_equals_rendering_the_flat_scene(tmp_path: Path) -> None:
    flat, cameras = _scene(), _cameras()
    hierarchy = build(flat, depth=3)
    assert hierarchy.segments_at(0.3)[0] == Segment(0, 0) and len(hierarchy.segments_at(0.3)) == 4
    save_hierarchy(tmp_path, hierarchy)
    streamed = HierarchicalScene(tmp_path)
    times = [0.0, 0.125, 0.25, 0.3, 0.375, 0.5, 0.61, 0.75, 1.0, -0.05]  # segment boundaries, inside, outside
    for t in times:
        with torch.no_grad():
            expected = render(flat, cameras, t=t)
            from_memory = render(hierarchy.gaussians_at(t), cameras, t=t)
        from_disk = streamed.render(cameras, t=t)
        assert len(hierarchy.gaussians_at(t)) < len(flat)
        assert _kept(flat, expected) == _kept(hierarchy.gaussians_at(t), from_memory)  # same Gaussians drawn
        for out in (from_memory, from_disk):
            for name in ("rgb", "alpha", "depth"):
                torch.testing.assert_close(getattr(out, name), getattr(expected, name), rtol=0, atol=1e-6)
    # The Gaussian whose lifespan ends at 0.5 from the left passes the cull there, and so is on path(0.5).
    edge = tuple(flat.means4[-3].tolist())
    with torch.no_grad():
        assert edge in _kept(flat, render(flat, cameras, t=0.5))


def _kept(gaussians: Gaussians4D, out: RenderOutput) -> set[tuple[float, ...]]:
    """The Gaussians a render drew (passed the temporal cull), identified by their 4D means."""
    return {tuple(row) for row in gaussians.means4.detach()[out.info["kept_ids"]].tolist()}


def test_build_then_flatten_is_a_permutation_and_storage_round_trip_is_exact(tmp_path: Path) -> None:
    flat = _scene(n=120)
    with torch.no_grad():
        flat.params["opacity_logits"].copy_(torch.arange(len(flat)) * 1e-2)  # a unique key per Gaussian
    hierarchy = build(flat, depth=4)
    assert len(hierarchy) == len(flat) and sum(hierarchy.counts().values()) > len(flat)  # some are copies
    back = flatten(hierarchy)
    order = torch.argsort(back.params["opacity_logits"])
    for name, value in flat.params.items():
        assert torch.equal(back.params[name][order], value), name

    save_hierarchy(tmp_path, hierarchy)
    save_hierarchy(tmp_path, hierarchy)  # a second save replaces the first one's files
    assert len(list(tmp_path.glob("*.ply"))) == len(hierarchy.segments)
    loaded = load_hierarchy(tmp_path)
    assert loaded.tree == hierarchy.tree and loaded.threshold == hierarchy.threshold
    assert loaded.time_period == hierarchy.time_period and list(loaded.segments) == list(hierarchy.segments)
    for segment, gaussians in hierarchy.segments.items():
        for name, value in gaussians.params.items():
            assert torch.equal(loaded.segments[segment].params[name], value), (segment, name)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["num_gaussians"] == len(flat) and manifest["depth"] == 4


def _corrupt(case: str, folder: Path) -> Path:
    """Damage a saved hierarchy; returns the file the error must name."""
    manifest_path = folder / MANIFEST_NAME
    doc = json.loads(manifest_path.read_text())
    segment_file = folder / doc["segments"][-1]["file"]
    if case == "manifest missing":
        manifest_path.unlink()
        return manifest_path
    if case == "manifest not json":
        manifest_path.write_text('{"format": ')
        return manifest_path
    if case == "manifest newer version":
        doc["format_version"] = 99
    elif case == "manifest missing key":
        del doc["param_shapes"]
    elif case == "manifest segment outside tree":
        doc["segments"][-1]["level"] = 9
    elif case == "manifest file outside folder":
        doc["segments"][-1]["file"] = "../elsewhere.ply"
    if case.startswith("manifest"):
        manifest_path.write_text(json.dumps(doc))
        return manifest_path
    if case == "segment missing":
        segment_file.unlink()
    elif case == "segment truncated":
        segment_file.write_bytes(segment_file.read_bytes()[:-7])
    elif case == "segment bit flip":
        data = bytearray(segment_file.read_bytes())
        data[-3] ^= 0x10
        segment_file.write_bytes(bytes(data))
    elif case == "segment not a ply":  # consistent with the manifest, but not a PLY
        segment_file.write_bytes(b"garbage")
        import hashlib

        doc["segments"][-1].update(bytes=7, sha256=hashlib.sha256(b"garbage").hexdigest())
        manifest_path.write_text(json.dumps(doc))
    return segment_file


@pytest.mark.parametrize(
    "case",
    [
        "manifest missing",
        "manifest not json",
        "manifest newer version",
        "manifest missing key",
        "manifest segment outside tree",
        "manifest file outside folder",
        "segment missing",
        "segment truncated",
        "segment bit flip",
        "segment not a ply",
    ],
)
def test_damaged_hierarchy_raises_one_line_error_naming_the_file(tmp_path: Path, case: str) -> None:
    save_hierarchy(tmp_path, build(_scene(n=60), depth=2))
    culprit = _corrupt(case, tmp_path)
    with pytest.raises(HierarchyFormatError) as info:
        load_hierarchy(tmp_path)
    message = str(info.value)
    assert message.startswith(str(culprit)) and "\n" not in message, message


def test_streaming_cache_never_holds_more_than_its_bounds(tmp_path: Path) -> None:
    hierarchy = build(_scene(n=400, seed=2), depth=4)
    save_hierarchy(tmp_path, hierarchy)
    times = [i / 63 for i in range(64)] + torch.rand(40, generator=torch.Generator().manual_seed(0)).tolist()
    byte_bound = 3 * max(len(g) for g in hierarchy.segments.values()) * 4 * 50
    scene = HierarchicalScene(tmp_path, max_cached_segments=3, max_cached_bytes=byte_bound)
    for t in times:
        got = scene.gaussians_at(t)
        assert len(scene.cache) <= 3 and scene.cache.nbytes <= byte_bound
        assert torch.equal(got.means4, hierarchy.gaussians_at(t).means4)
    assert scene.cache.misses > len(hierarchy.segments)  # the bound forced re-reads

    playback = HierarchicalScene(tmp_path)  # default: one path (depth + 1 segments)
    for t in times[:64]:
        playback.gaussians_at(t)
        assert len(playback.cache) <= hierarchy.tree.depth + 1
    assert playback.segments_read == len(hierarchy.segments)  # in time order every segment is read once


def test_lru_cache_evicts_least_recently_used_and_never_stores_an_oversized_value() -> None:
    cache: LRUCache[str, bytes] = LRUCache(max_items=2, size_of=len, max_bytes=10)
    for key in "aba":
        cache.get(key, lambda key=key: key.encode() * 4)
    cache.get("c", lambda: b"cccc")  # evicts b, the least recently used
    assert cache.keys() == ["a", "c"] and cache.nbytes == 8
    assert cache.get("d", lambda: b"d" * 11) == b"d" * 11 and "d" not in cache
    assert cache.keys() == ["a", "c"] and (cache.hits, cache.misses) == (1, 4)


def test_streaming_refuses_to_cull_below_the_threshold_it_was_built_for(tmp_path: Path) -> None:
    save_hierarchy(tmp_path, build(_scene(n=30), depth=2))
    scene = HierarchicalScene(tmp_path)
    assert read_manifest(tmp_path).threshold == pytest.approx(THRESHOLD)
    with pytest.raises(ValueError, match="time_cull_threshold"):
        scene.render(_cameras(), t=0.5, settings=RenderSettings(time_cull_threshold=1e-4))
