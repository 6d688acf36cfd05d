"""Streamed training of a temporal hierarchy: it learns a small video, holds one path at a time, keeps every
Gaussian in a segment that contains its lifespan, exports exactly what it trained, and a killed or interrupted run
resumes to the same result as an uninterrupted one."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from pipelines.dynamic.config import PRESETS
from pipelines.dynamic.pipeline import DynamicPipeline
from splat4d.cameras import Cameras
from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians4D, rgb_to_sh0
from splat4d.geometry import look_at
from splat4d.hierarchy import HierarchicalScene, lifespans
from splat4d.hierarchy.training import HierarchyTrainConfig, StreamedTrainer, seed_segments
from splat4d.hierarchy.tree import Segment, TimeTree
from splat4d.metrics import psnr
from splat4d.render import render
from splat4d.trainer import TrainingInterrupted

W, H, FRAMES = 48, 36, 16


def _truth() -> Gaussians4D:
    """A grey back wall for the whole video and two coloured blobs that each live half of it, moving."""
    g = torch.Generator().manual_seed(3)
    wall = torch.cat([torch.rand(200, 2, generator=g) * 4 - 2, torch.full((200, 1), 3.0)], 1)
    blob_a = torch.randn(60, 3, generator=g) * 0.15 + torch.tensor([-0.6, 0.0, 1.5])
    blob_b = torch.randn(60, 3, generator=g) * 0.15 + torch.tensor([0.6, 0.0, 1.5])
    means = torch.cat([wall, blob_a, blob_b])
    mu_t = torch.cat([torch.full((200,), 0.5), torch.full((60,), 0.25), torch.full((60,), 0.75)])
    sigma_t = torch.cat([torch.full((200,), 5.0), torch.full((120,), 0.07)])
    rgb = torch.cat([torch.full((200, 3), 0.5), torch.tensor([0.9, 0.2, 0.1]).expand(60, 3),
                     torch.tensor([0.1, 0.3, 0.9]).expand(60, 3)])  # fmt: skip
    n = len(means)
    sh0 = torch.zeros(n, 2, 1, 3)
    sh0[:, 0, 0] = rgb_to_sh0(rgb)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1)
    scales = torch.cat([torch.full((200, 3), 0.25), torch.full((120, 3), 0.08)]).log()
    return Gaussians4D(
        {
            "means4": torch.cat([means, mu_t[:, None]], 1),
            "log_scales4": torch.cat([scales, sigma_t.log()[:, None]], 1),
            "quats_l": identity,
            "quats_r": identity.clone(),
            "opacity_logits": torch.full((n,), 3.0),
            "sh0": sh0,
            "shN": torch.zeros(n, 2, 3, 3),
        },
        time_period=2.0,
    )


def _camera(k: int, t: float) -> Cameras:
    a = (k - 0.5) * 0.6
    T = look_at(torch.tensor([3 * math.sin(a), 0.0, -3 * math.cos(a)]), torch.tensor([0.0, 0.0, 1.5]),
                torch.tensor([0.0, -1.0, 0.0]))  # fmt: skip
    K = torch.tensor([[40.0, 0.0, W / 2], [0.0, 40.0, H / 2], [0.0, 0.0, 1.0]])
    return Cameras(T[None], K[None], W, H, times=torch.tensor([t]))


class Views:
    """Two cameras at every frame, the images rendered from the truth when a leaf's views are loaded."""

    def __init__(self) -> None:
        self.truth = _truth()
        self.views = [(k, (f + 0.5) / FRAMES) for f in range(FRAMES) for k in range(2)]
        self.loaded: list[int] = []
        self.downscales: list[int] = []

    def times(self) -> torch.Tensor:
        return torch.tensor([t for _, t in self.views])

    @torch.no_grad()
    def load(self, ids: list[int], downscale: int = 1) -> list[Batch]:
        self.loaded += ids
        self.downscales.append(downscale)
        cams = [_camera(*self.views[i]).scaled(1 / downscale) for i in ids]
        return [
            Batch(c, render(self.truth, c, t=float(c.times[0])).rgb, None, i)
            for c, i in zip(cams, ids, strict=True)
        ]


def _initial() -> Gaussians4D:
    g = torch.Generator().manual_seed(1)
    points = torch.rand(400, 3, generator=g) * torch.tensor([4.0, 3.0, 2.0]) - torch.tensor([2.0, 1.5, -1.0])
    return Gaussians4D.from_points(points, torch.rand(400, 3, generator=g), torch.full((400,), 0.5),
                                   sh_degree=1, time_degree=1, time_period=2.0)  # fmt: skip


def _trainer(work: Path, views: Views | None = None, refine_every: int = 60, **overrides) -> StreamedTrainer:
    """A depth-2 trainer of `Views` (4 leaves, 60 steps per sweep: with `refine_every` 60, one sweep per
    refinement period)."""
    dcfg = PRESETS["fast"]
    cfg = HierarchyTrainConfig(depth=2, sweeps=2, steps_per_visit=15, points_per_path=400, checkpoint_every=2,
                               progress=False)  # fmt: skip
    cfg = dataclasses.replace(cfg, **overrides)
    strategy = dataclasses.replace(
        dcfg.strategy, refine_start_iter=0, refine_stop_iter=10**6, refine_every=refine_every
    )
    return StreamedTrainer(
        cfg, lambda scene: DynamicPipeline(dcfg, scene, (0.0, 0.0, 0.0)), views or Views(), work, _initial,
        3.0, dcfg.optim, strategy,
    )  # fmt: skip


def _path_scene(trainer: StreamedTrainer, t: float) -> Gaussians4D:
    names = list(trainer.template.params)
    parts = [trainer.store.get(s) for s in trainer.tree.path(t)]
    return Gaussians4D({k: torch.cat([p[k] for p in parts]) for k in names}, trainer.template.time_period)


def _all_states(trainer: StreamedTrainer) -> dict[Segment, dict[str, torch.Tensor]]:
    return {s: {k: v.clone() for k, v in state.items()} for s, state in trainer.store.states()}


def test_deepest_on_path_is_the_smallest_segment_of_the_path_holding_the_whole_interval() -> None:
    tree = TimeTree(3)  # leaves of 1/8
    starts = torch.tensor([0.26, 0.26, 0.20, 0.40, 0.70, 2.0, -1.0], dtype=torch.float64)
    ends = torch.tensor([0.30, 0.45, 0.30, 0.45, 0.72, 1.0, 0.1], dtype=torch.float64)
    # at t = 0.27 (leaf [0.25, 0.375)): inside the leaf; inside [0.25, 0.5); straddles 0.25 but inside [0, 0.5);
    # inside [0.25, 0.5) but not the leaf; elsewhere (root); empty (root); clamped to [0, 0.1] (inside [0, 0.5))
    assert tree.deepest_on_path(starts, ends, 0.27).tolist() == [3, 2, 1, 2, 0, 0, 1]
    assert tree.deepest_on_path(starts[4:5], ends[4:5], 0.71).tolist() == [3]
    assert tree.deepest_on_path(starts[6:], ends[6:], 0.05).tolist() == [3]


def test_seeded_segments_share_the_points_and_live_inside_their_segments() -> None:
    tree = TimeTree(2)
    seeded = seed_segments(_initial(), tree, points_per_path=300)
    assert set(seeded) == set(tree.segments())
    for segment, g in seeded.items():
        assert len(g) == 100  # 300 per path over 3 levels
        starts, ends = lifespans(g)
        lo, hi = tree.bounds(segment)
        if segment.level == 0:
            assert (starts < 0).all() and (ends > 1).all()  # static
        else:
            assert (starts >= lo).all() and (ends <= hi).all()
    (alone,) = seed_segments(_initial(), TimeTree(0), points_per_path=300).values()
    starts, ends = lifespans(alone)  # a root without children starts like a leaf: inside [0, 1], not static
    assert len(alone) == 300 and (starts >= 0).all() and (ends <= 1).all() and (ends - starts > 0.9).all()


def test_streamed_training_learns_the_video_and_exports_exactly_what_it_trained(
    tmp_path: Path, one_thread
) -> None:
    views = Views()
    trainer = _trainer(tmp_path / "work", views)
    # Before training: the seeded scene against the truth, on every training view.
    trainer.train(max_visits=0)
    before = [float(psnr(render(_path_scene(trainer, t), _camera(k, t), t=t).rgb.detach(), b.rgb))
              for b, (k, t) in zip(views.load(list(range(len(views.views)))), views.views, strict=True)]  # fmt: skip
    trainer = _trainer(tmp_path / "work", views, sweeps=4, steps_per_visit=20)
    result = trainer.train()
    assert result.step == 4 * 4 * 20
    out = HierarchicalScene(Path(trainer.export(tmp_path / "out")).parent)
    after = []
    for b, (k, t) in zip(views.load(list(range(len(views.views)))), views.views, strict=True):
        streamed = out.render(_camera(k, t), t).rgb
        assert torch.equal(streamed, render(_path_scene(trainer, t), _camera(k, t), t=t).rgb)
        after.append(float(psnr(streamed, b.rgb)))
    assert sum(after) / len(after) > sum(before) / len(before) + 2.5  # about 14.9 dB to 18.3 dB
    assert out.num_gaussians == result.num_gaussians


def test_one_path_is_resident_and_time_ordered_sweeps_read_a_segment_once(tmp_path: Path) -> None:
    views = Views()
    trainer = _trainer(tmp_path / "work", views, depth=3, sweeps=2, steps_per_visit=2, order="time")
    trainer.train()
    assert trainer.store.resident_max <= trainer.tree.depth + 1
    assert trainer.resident_max < len(trainer.store) / 2  # never more than one path of the stored Gaussians
    # Loading a leaf's views loads those and only those; each sweep loads every view once.
    assert sorted(views.loaded) == sorted(2 * list(range(len(views.views))))
    # In-order sweeps (the second one reversed) read each of the 15 segments at most once per sweep.
    assert trainer.store.reads <= 2 * len(trainer.tree.segments())


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, one_thread) -> None:
    whole = _trainer(tmp_path / "whole")
    whole.train()
    first = _trainer(tmp_path / "resumed")
    first.train(max_visits=3)  # commits after visit 2 (checkpoint_every), then at the end of visit 3
    del first  # as if killed after the commit
    resumed = _trainer(tmp_path / "resumed")
    resumed.train()
    a, b = _all_states(whole), _all_states(resumed)
    assert a.keys() == b.keys()
    for segment in a:
        for name in a[segment]:
            assert torch.equal(a[segment][name], b[segment][name]), (segment, name)


def test_ctrl_c_commits_the_state_before_the_visit_and_resume_redoes_it(tmp_path: Path, one_thread) -> None:
    whole = _trainer(tmp_path / "whole")
    whole.train()
    interrupted = _trainer(tmp_path / "run")
    calls = {"n": 0}
    make_loss = interrupted.make_loss

    def exploding(scene):
        pipeline = make_loss(scene)
        step = pipeline.train_step

        def train_step(batch, s):
            calls["n"] += 1
            if calls["n"] == 40:  # in the middle of the third visit
                raise KeyboardInterrupt
            return step(batch, s)

        pipeline.train_step = train_step
        return pipeline

    interrupted.make_loss = exploding
    with pytest.raises(TrainingInterrupted) as info:
        interrupted.train()
    assert info.value.step == 30 and (tmp_path / "run" / "state.pt").is_file()
    resumed = _trainer(tmp_path / "run")
    resumed.train()
    a, b = _all_states(whole), _all_states(resumed)
    for segment in a:
        for name in a[segment]:
            assert torch.equal(a[segment][name], b[segment][name]), (segment, name)


@pytest.mark.parametrize("promote", [False, True])
def test_put_back_moves_each_gaussian_with_its_moments_to_the_deepest_path_segment_holding_it(
    tmp_path: Path, promote: bool
) -> None:
    trainer = _trainer(tmp_path / "work", promote=promote)
    trainer.train(max_visits=0)
    t = 0.1  # leaf [0, 0.25)
    path = trainer.tree.path(t)
    # Gaussian 0 (in the root) lives inside the leaf, 1 (in the leaf) forever, 2 (in the root) inside [0, 0.5)
    # across the leaf's end, 3 (in the root) never.
    g = seed_segments(_initial(), trainer.tree, 12)[Segment(0, 0)]
    scene = Gaussians4D({k: v[:4].clone() for k, v in g.params.items()}, 2.0)
    with torch.no_grad():
        scene.params["means4"][:, 3] = torch.tensor([0.1, 0.5, 0.25, 0.5])
        sigma = torch.tensor([0.02, 10.0, 0.05, 0.0]).clamp_min(1e-30)
        scene.params["log_scales4"][:, 3] = sigma.log()
        scene.params["log_scales4"][3] = -80.0  # Σ_tt underflows to 0: an empty lifespan
    optimizers = {name: torch.optim.Adam([p]) for name, p in scene.params.items()}
    for name, p in scene.params.items():
        marks = torch.arange(4.0).reshape(4, *([1] * (p.dim() - 1))).expand_as(p).clone()
        optimizers[name].state[p] = {"exp_avg": marks, "exp_avg_sq": marks + 10}
    trainer.put_back(path, scene, optimizers, t, floor=torch.tensor([0, 2, 0, 0]))
    homes = {}
    for segment in path:
        state = trainer.store.get(segment)
        for mark in state["exp_avg/means4"][:, 0].tolist():
            homes[int(mark)] = segment.level
        assert torch.equal(state["exp_avg_sq/sh0"], state["exp_avg/sh0"] + 10)
        assert torch.equal(state["exp_avg/opacity_logits"], state["exp_avg/means4"][:, 0])
    # Down whenever a smaller path segment holds the lifespan; up (to the root) only when promoting.
    assert homes == {0: 2, 1: 0 if promote else 2, 2: 1, 3: 0}


def test_refine_leaves_rows_before_the_first_eligible_one_alone() -> None:
    from splat4d.optim import build_optimizers
    from splat4d.strategy.density4d import Density4DConfig

    g = seed_segments(_initial(), TimeTree(0), 400)[Segment(0, 0)]
    with torch.no_grad():
        g.params["opacity_logits"][::3] = -10.0  # some transparent ones, in both parts
    before = {k: v.detach().clone() for k, v in g.params.items()}
    optimizers = build_optimizers(g.params, PRESETS["fast"].optim, 3.0)
    strategy = Density4DConfig(grow_grad2d=0.0).build()  # every eligible Gaussian grows
    state = strategy.init_state(3.0) | {"grad2d": torch.ones(400), "count": torch.ones(400)}
    grown, pruned = strategy.refine(g, optimizers, state, step=10, first_eligible=150)
    assert grown == 250 and pruned > 0 and state["grad2d"] is None
    for name, value in before.items():
        assert torch.equal(g.params[name][:150], value[:150]), name
    assert (g.params["opacity_logits"][150:] > -10.0).all()  # the transparent eligible ones are gone


def test_each_segment_is_densified_at_its_last_visit_of_the_sweep(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "work", depth=2, sweeps=2, order="time")
    # leaves 0 1 2 3, then 3 2 1 0: leaving [0, 1] after leaf 0 (its parent stays on the next path), ...
    assert [trainer.leaving_level(v) for v in range(8)] == [2, 1, 2, 0, 2, 1, 2, 0]
    shuffled = _trainer(tmp_path / "other", depth=2, sweeps=3)
    assert sorted(shuffled.schedule[:4]) == [0, 1, 2, 3] and shuffled.schedule != trainer.schedule[:4] * 3
    for start in (0, 4, 8):  # per sweep: the root left at its last visit, each level-1 segment once
        sweep, levels = (
            shuffled.schedule[start : start + 4],
            [shuffled.leaving_level(v) for v in range(start, start + 4)],
        )
        assert levels[-1] == 0 and levels.count(0) == 1 and levels.count(1) == 1
        halves = [leaf // 2 for leaf in sweep]
        assert all(levels[i] == 2 for i in range(3) if halves[i] in halves[i + 1 :])


def test_a_sweep_shorter_than_refine_every_densifies_every_few_sweeps(tmp_path: Path) -> None:
    # 60 steps per sweep, refine_every 120: a period of two sweeps (leaves 0 1 2 3 3 2 1 0), in which only the
    # second sweep's visits leave segments; 100 steps round to two sweeps as well, 20 to one.
    trainer = _trainer(tmp_path / "work", refine_every=120, sweeps=4, order="time")
    assert trainer.sweeps_per_refine == 2
    assert [trainer.leaving_level(v) for v in range(16)] == [3, 3, 3, 3, 2, 1, 2, 0] * 2
    assert _trainer(tmp_path / "a", refine_every=100).sweeps_per_refine == 2
    assert _trainer(tmp_path / "b", refine_every=20).sweeps_per_refine == 1


def test_visits_before_coarse_until_train_on_half_resolution_views(tmp_path: Path, one_thread) -> None:
    views = Views()
    trainer = _trainer(tmp_path / "work", views, sweeps=1, coarse_until=30)
    trainer.train()
    assert views.downscales == [2, 2, 1, 1]  # visits start at steps 0, 15, 30, 45
    assert trainer.step == 60


def test_streamed_training_prunes_huge_gaussians_without_opacity_resets(tmp_path: Path) -> None:
    """Flat training prunes spatially huge Gaussians after its first opacity reset; streamed training never resets,
    so it prunes them by size from the step of the reset it skips (it once never did)."""
    from splat4d.strategy.density4d import Density4DConfig

    trainer = _trainer(tmp_path)
    flat = trainer.strategy_cfg
    assert flat is not None
    streamed = trainer._strategy_config()
    assert streamed.reset_every > trainer.total_steps  # no resets in streamed training
    assert streamed.prune_scale_after == flat.reset_every
    g = seed_segments(_initial(), TimeTree(0), 400)[Segment(0, 0)]
    with torch.no_grad():
        g.params["log_scales4"][:, :3] = -5.0  # small...
        g.params["log_scales4"][:7, 0] = 5.0  # ...but 7, far above prune_scale3d × scene scale
    from splat4d.optim import build_optimizers

    for cfg, step, pruned_expected in ((streamed, flat.reset_every + 1, 7), (streamed, flat.reset_every, 0)):
        scene = Gaussians4D({k: v.detach().clone() for k, v in g.params.items()}, g.time_period)
        optimizers = build_optimizers(scene.params, PRESETS["fast"].optim, 3.0)
        strategy = dataclasses.replace(cfg, grow_grad2d=1e9, prune_opa=0.0).build()
        state = strategy.init_state(3.0) | {"grad2d": torch.zeros(400), "count": torch.ones(400)}
        _, pruned = strategy.refine(scene, optimizers, state, step=step)
        assert pruned == pruned_expected
    assert Density4DConfig(reset_every=100).prune_scale_after is None  # flat training: after its first reset
