"""The dynamic pipeline end to end on tiny procedural dynamic scenes (monocular and multi-view), its schedule
scaling, its regularisers and its errors."""

import dataclasses
import json

import pytest
import torch

from pipelines import PIPELINES
from pipelines.dynamic import regularizers
from pipelines.dynamic.config import MONOCULAR_RIGIDITY_WEIGHT, PRESETS, with_steps
from pipelines.dynamic.scene import is_monocular
from splat4d.data import load_scene
from splat4d.data.base import DatasetError
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.gaussians import Gaussians4D
from splat4d.io.ply import read_ply_4d
from splat4d.reconstruct import load_trained
from tests.pipelines.helpers import train_dynamic

SPEC = PIPELINES["dynamic"]


def _train(photos, out, steps: int):
    return train_dynamic(photos, out, steps, random_points=3000)


@pytest.mark.parametrize(
    "layout", [dict(layout="monocular", n_views=16), dict(layout="multiview", n_cameras=3, n_frames=6)]
)
def test_dynamic_scene_trains_end_to_end(tmp_path, layout) -> None:
    photos = write_sample_scene(
        SampleConfig(dynamic=True, width=64, height=48, n_points=1500, **layout),
        tmp_path / "photos",
        progress=False,
    )
    result = _train(photos, tmp_path / "scene", 150)
    m = result.metrics
    assert m["steps"] == 150 and m["num_views"] > 0
    # held-out views: clearly better than a flat grey guess of the mean colour (about 11 dB on these scenes)
    assert m["psnr"] > 16.0, m
    g = read_ply_4d(tmp_path / "scene" / "point_cloud.ply")
    assert isinstance(g, Gaussians4D) and len(g) == m["num_gaussians"]
    # rerunning resumes (nothing left to train) and the scene folder loads for export / viewing
    trained = load_trained(tmp_path / "scene", PIPELINES, torch.device("cpu"))
    assert trained.pipeline_name == "dynamic" and trained.step == 150
    cams = trained.scene.cameras[:1]
    early = trained.pipeline.render_view(cams, t=0.0).rgb
    late = trained.pipeline.render_view(cams, t=1.0).rgb
    assert (early - late).abs().mean() > 1e-3  # the scene moves
    assert json.loads((tmp_path / "scene" / "metrics.json").read_text())["steps"] == 150


def test_local_rigidity_is_on_for_one_moving_camera_and_off_for_multiview_video(tmp_path) -> None:
    layouts = {"monocular": dict(n_views=8), "multiview": dict(n_cameras=3, n_frames=4)}
    weights = {}
    for layout, sizes in layouts.items():
        cfg = SampleConfig(dynamic=True, layout=layout, width=32, height=24, n_points=200, **sizes)
        scene = load_scene(
            DataConfig(path=write_sample_scene(cfg, tmp_path / layout, progress=False)), tmp_path
        )
        assert is_monocular(scene) == (layout == "monocular")
        weights[layout] = SPEC.build(PRESETS["fast"], scene, torch.device("cpu")).rigidity_weight
        explicit = dataclasses.replace(PRESETS["fast"], rigidity_weight=0.02)
        assert SPEC.build(explicit, scene, torch.device("cpu")).rigidity_weight == 0.02  # a set weight wins
    assert weights == {"monocular": MONOCULAR_RIGIDITY_WEIGHT, "multiview": 0.0}


def test_static_dataset_is_refused_with_a_clear_error(tmp_path) -> None:
    photos = write_sample_scene(SampleConfig(n_views=6, width=32, height=24), tmp_path / "p", progress=False)
    with pytest.raises(DatasetError, match="capture time"):
        _train(photos, tmp_path / "scene", 10)


def test_with_steps_scales_the_schedules() -> None:
    base = PRESETS["fast"]
    half = with_steps(base, base.trainer.steps // 2)
    assert half.trainer.steps == base.trainer.steps // 2
    assert half.strategy.refine_stop_iter == round(base.strategy.refine_stop_iter / 2)
    assert half.trainer.coarse_until == round(base.trainer.coarse_until / 2)
    assert with_steps(base, 100).strategy.reset_every == 101  # too short to recover from a reset: none


def test_velocity_is_the_drift_of_the_sliced_mean() -> None:
    import cuda_rasterizer as cr

    g = Gaussians4D.from_points(torch.randn(8, 3), torch.rand(8, 3), torch.full((8,), 0.5), sh_degree=0)
    with torch.no_grad():  # random 4D rotations and anisotropic scales couple space and time
        g.params["quats_l"][:] = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
        g.params["quats_r"][:] = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
        g.params["log_scales4"][:] = torch.log(torch.rand(8, 4) * 0.3 + 0.05)
    v = regularizers.velocities(g).detach()
    means4, covars4, opacities = g.means4.detach(), g.covars4.detach(), g.opacities.detach()
    a = cr.slice_4d(means4, covars4, opacities, 0.4).means
    b = cr.slice_4d(means4, covars4, opacities, 0.6).means
    torch.testing.assert_close((b - a) / 0.2, v, rtol=1e-3, atol=1e-4)


def test_motion_smoothness_is_zero_for_rigid_motion_and_positive_otherwise() -> None:
    g = Gaussians4D.from_points(torch.randn(64, 3), torch.rand(64, 3), torch.full((64,), 0.5), sh_degree=0)
    kept = torch.arange(64)
    means = g.means4[:, :3].detach()
    # identity rotations: no Gaussian moves, so every neighbour pair agrees
    assert float(regularizers.motion_smoothness(g, kept, means).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # tilt some Gaussians in x–t: they move, their neighbours do not
        g.params["quats_l"][:32] = torch.nn.functional.normalize(torch.tensor([1.0, 0.3, 0.2, 0.1]), dim=0)
    loss = regularizers.motion_smoothness(g, kept, means)
    assert float(loss.detach()) > 0
    loss.backward()
    assert g.params["quats_l"].grad.abs().sum() > 0


def test_temporal_opacity_grows_with_lifespans() -> None:
    g = Gaussians4D.from_points(torch.randn(10, 3), torch.rand(10, 3), torch.full((10,), 0.5), sh_degree=0)
    w_short, w_long = torch.full((10,), 0.1), torch.full((10,), 0.9)
    assert regularizers.temporal_opacity(g, w_short) < regularizers.temporal_opacity(g, w_long)


def _tilted(n: int, moving: int) -> Gaussians4D:
    """`n` Gaussians, the first `moving` of them tilted in x–t (so they move), the rest still."""
    g = Gaussians4D.from_points(torch.randn(n, 3), torch.rand(n, 3), torch.full((n,), 0.5), sh_degree=0)
    with torch.no_grad():
        g.params["quats_l"][:moving] = torch.nn.functional.normalize(
            torch.tensor([1.0, 0.3, 0.2, 0.1]), dim=0
        )
    return g


def test_motion_sparsity_is_zero_for_a_still_scene_and_pulls_moving_gaussians_towards_rest() -> None:
    still = _tilted(16, moving=0)
    kept = torch.arange(16)
    assert float(regularizers.motion_sparsity(still, kept).detach()) == pytest.approx(0.0, abs=1e-6)
    g = _tilted(16, moving=4)
    loss = regularizers.motion_sparsity(g, kept)
    expected = regularizers.velocities(g).detach().abs().sum(-1).mean()
    assert float(loss.detach()) == pytest.approx(float(expected)) and float(expected) > 0
    loss.backward()
    grad = g.params["quats_l"].grad.abs().sum(-1)
    assert grad[:4].min() > 0 and grad[4:].max() == 0  # only the moving ones are pulled
    assert float(regularizers.motion_sparsity(g, kept[4:]).detach()) == pytest.approx(0.0, abs=1e-6)


def test_lifespan_floor_penalises_only_gaussians_that_live_shorter_than_the_floor() -> None:
    g = Gaussians4D.from_points(torch.randn(8, 3), torch.rand(8, 3), torch.full((8,), 0.5), sh_degree=0)
    with torch.no_grad():  # no space-time rotation: sqrt(Σ_tt) is the temporal scale
        g.params["log_scales4"][:, 3] = torch.log(torch.tensor([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]))
    kept = torch.arange(8)
    loss = regularizers.lifespan_floor(g, kept, floor=0.05)
    expected = (torch.log(torch.tensor(0.05 / 0.01)) + torch.log(torch.tensor(0.05 / 0.02))) / 8
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    loss.backward()
    grad = g.params["log_scales4"].grad[:, 3]
    assert (grad[:2] < 0).all() and (grad[2:] == 0).all()  # gradient descent lengthens the short-lived only
    assert float(regularizers.lifespan_floor(g, kept[2:], floor=0.05).detach()) == 0.0


def test_distance_rate_is_zero_for_rigid_motion_and_not_for_stretching() -> None:
    points = torch.randn(32, 3)
    neighbours = regularizers.nearest_neighbours(points, points, k=4)
    assert neighbours.shape == (32, 4)
    assert not (neighbours == torch.arange(32)[:, None]).any()  # each point's own row is left out
    omega, c = torch.tensor([0.3, -1.2, 0.7]), torch.tensor([2.0, 0.5, -1.0])
    rigid = torch.linalg.cross(omega.expand(32, 3), points) + c  # a rotation and a translation
    rate = regularizers.distance_rate(points, rigid, points[neighbours], rigid[neighbours])
    torch.testing.assert_close(rate, torch.zeros_like(rate), atol=1e-5, rtol=0)
    stretch = points * torch.tensor([1.5, 0.0, 0.0])  # x scaled over time: distances along x grow
    rate = regularizers.distance_rate(points, stretch, points[neighbours], stretch[neighbours])
    assert float(rate.abs().mean()) > 0.05


def test_nearest_neighbours_match_brute_force() -> None:
    points = torch.randn(300, 3)
    got = regularizers.nearest_neighbours(points[:70], points, k=3)
    want = torch.cdist(points[:70], points).topk(4, largest=False).indices[:, 1:]
    assert torch.equal(got, want)


def test_local_rigidity_is_zero_for_still_gaussians_and_pulls_on_moving_ones() -> None:
    g = Gaussians4D.from_points(torch.randn(64, 3), torch.rand(64, 3), torch.full((64,), 0.5), sh_degree=0)
    kept = torch.arange(64)
    means = g.means4[:, :3].detach()
    assert float(regularizers.local_rigidity(g, kept, means).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # tilt half of them in x–t: they move, their neighbours do not
        g.params["quats_l"][:32] = torch.nn.functional.normalize(torch.tensor([1.0, 0.3, 0.2, 0.1]), dim=0)
    loss = regularizers.local_rigidity(g, kept, means, max_points=16)
    assert float(loss.detach()) > 0
    loss.backward()
    assert g.params["quats_l"].grad.abs().sum() > 0
    few = regularizers.local_rigidity(g, kept[:5], means[:5], k=8)  # fewer Gaussians than neighbours: nothing
    assert float(few) == 0.0
