"""Surface geometry: normals from depth, rendered Gaussian normals and planar depth, the depth–normal consistency and
flattening losses, and the static pipeline switching them on."""

import dataclasses
import math

import pytest
import torch

from pipelines import PIPELINES
from pipelines.static.config import GeometryConfig
from pipelines.static.pipeline import StaticPipeline
from splat4d.cameras import Cameras
from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians
from splat4d.geometry import rotmat_to_quat
from splat4d.losses import depth_to_normals, edge_aware_weight, flatten, normal_consistency
from splat4d.render import RenderSettings, render

K = torch.tensor([[40.0, 0, 24], [0, 40.0, 18], [0, 0, 1]])
W, H = 48, 36


def _plane_depth(normal: torch.Tensor, offset: float) -> torch.Tensor:
    """z-depth [1, H, W, 1] of the plane n · x = offset seen by the camera K at the origin (OpenCV axes)."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    return (offset / (normal[0] * x + normal[1] * y + normal[2]))[None, ..., None]


def test_normals_of_a_tilted_plane_depth_map_are_its_normal_facing_the_camera() -> None:
    n = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, -1.0]), dim=0)  # faces the camera (n_z < 0)
    depth = _plane_depth(n, -2.0)
    normals, valid = depth_to_normals(depth, K[None])
    assert valid[0, 1:-1, 1:-1].all() and not valid[0, 0].any() and not valid[0, :, -1].any()
    torch.testing.assert_close(normals[0, 1:-1, 1:-1], n.expand(H - 2, W - 2, 3), atol=1e-4, rtol=0)
    holed = depth.clone()
    holed[0, 10, 10] = 0.0  # no surface there: it and its four neighbours have no normal
    _, valid = depth_to_normals(holed, K[None])
    assert not valid[0, 10, 10] and not valid[0, 10, 11] and not valid[0, 9, 10] and valid[0, 12, 12]


def _disc(normal: torch.Tensor, centre: torch.Tensor, radius: float = 0.6) -> Gaussians:
    """One opaque Gaussian flattened along `normal` (its smallest axis), centred at `centre`."""
    n = torch.nn.functional.normalize(normal, dim=0)
    a = torch.nn.functional.normalize(torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    b = torch.linalg.cross(n, a)
    R = torch.stack([a, b, n], dim=1)  # columns: the axes; the third (smallest scale) is the normal
    g = Gaussians.from_points(centre[None], torch.tensor([[0.8, 0.5, 0.2]]), sh_degree=0, init_opacity=0.99)
    with torch.no_grad():
        g.params["log_scales"].copy_(torch.tensor([[radius, radius, 1e-3]]).log())
        g.params["quats"].copy_(rotmat_to_quat(R[None]))
    return g


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_planar_depth_follows_a_tilted_disc_where_centre_depth_cannot(backend: str) -> None:
    n = torch.nn.functional.normalize(torch.tensor([0.5, 0.0, -1.0]), dim=0)  # tilted about the y axis
    centre = torch.tensor([0.0, 0.0, 3.0])
    disc, cameras = _disc(n, centre), Cameras(torch.eye(4)[None], K[None], W, H)
    out = render(disc, cameras, RenderSettings(normals=True, backend=backend))
    covered = out.alpha[0, ..., 0] > 0.5
    assert covered.sum() > 100
    truth = _plane_depth(n, float(n @ centre))[0, ..., 0]
    torch.testing.assert_close(out.planar_depth[0, ..., 0][covered], truth[covered], atol=2e-4, rtol=1e-4)
    normal = torch.nn.functional.normalize(out.normals[0][covered], dim=-1)
    torch.testing.assert_close(normal, n.expand_as(normal), atol=1e-4, rtol=0)
    # The depth of the Gaussian's centre is one number over its whole footprint: off by ~0.5 at its rim here.
    spread = (truth[covered] - out.median_depth[0, ..., 0][covered]).abs().max()
    assert spread > 0.3
    # Seen from behind, the normal still faces the camera.
    back = render(_disc(-n, centre), cameras, RenderSettings(normals=True, backend=backend))
    torch.testing.assert_close(back.planar_depth, out.planar_depth, atol=2e-4, rtol=1e-4)


def test_planar_depth_gradients_match_reference() -> None:
    n = torch.nn.functional.normalize(torch.tensor([0.2, 0.3, -1.0]), dim=0)
    grads = {}
    for backend in ("reference", "cpu"):
        disc = _disc(n, torch.tensor([0.1, -0.1, 3.0]))
        out = render(
            disc, Cameras(torch.eye(4)[None], K[None], W, H), RenderSettings(normals=True, backend=backend)
        )
        (out.planar_depth.sum() + out.normals.square().sum()).backward()
        grads[backend] = {k: p.grad.clone() for k, p in disc.params.items() if p.grad is not None}
    assert {"means", "quats", "log_scales"} <= grads["cpu"].keys()
    for name in grads["cpu"]:
        torch.testing.assert_close(grads["cpu"][name], grads["reference"][name], atol=2e-3, rtol=2e-3)


def test_normal_consistency_and_edge_weight() -> None:
    n = torch.nn.functional.normalize(torch.randn(1, 4, 5, 3), dim=-1)
    ones = torch.ones(1, 4, 5, 1)
    assert float(normal_consistency(2.0 * n, n, ones)) == pytest.approx(0.0, abs=1e-6)  # unnormalised is fine
    assert float(normal_consistency(-n, n, ones)) == pytest.approx(2.0, abs=1e-6)
    half = torch.zeros_like(ones)
    half[:, :2] = 1.0
    mixed = torch.cat([n[:, :2], -n[:, 2:]], dim=1)
    assert float(normal_consistency(mixed, n, half)) == pytest.approx(0.0, abs=1e-6)  # weight 0 ignored
    flat = torch.full((1, 8, 8, 3), 0.4)
    assert torch.all(edge_aware_weight(flat) == 1.0)
    step = flat.clone()
    step[:, :, 4:] = 0.9
    w = edge_aware_weight(step)[0, :, :, 0]
    assert torch.all(w[:, 3:5] < 0.01) and torch.all(w[:, :2] == 1.0)


def test_flatten_shrinks_only_the_smallest_scale() -> None:
    log_scales = torch.tensor([[0.0, -1.0, -2.0], [-3.0, 0.5, 0.0]], requires_grad=True)
    flatten(log_scales.exp(), scene_scale=2.0).backward()
    grad = log_scales.grad
    assert grad[0, 2] > 0 and grad[1, 0] > 0  # descending the loss lowers them
    assert grad[0, :2].abs().sum() == 0 and grad[1, 1:].abs().sum() == 0


def _pipeline(geometry: GeometryConfig) -> tuple[StaticPipeline, Batch]:
    g = torch.Generator().manual_seed(0)
    points = (torch.rand(300, 3, generator=g) - 0.5) * torch.tensor([2.0, 1.5, 0.2]) + torch.tensor(
        [0, 0, 3.0]
    )
    gaussians = Gaussians.from_points(points, torch.rand(300, 3, generator=g), sh_degree=0, init_opacity=0.8)
    cfg = dataclasses.replace(PIPELINES["static"].presets["fast"], geometry=geometry)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, steps=100))
    cameras = Cameras(torch.eye(4)[None], K[None], W, H)
    batch = Batch(index=0, cameras=cameras, rgb=torch.rand(1, H, W, 3, generator=g), mask=None)
    return StaticPipeline(cfg, gaussians, (0.0, 0.0, 0.0), scene_scale=3.0), batch


def test_static_pipeline_adds_the_regularisers_after_their_start() -> None:
    pipeline, batch = _pipeline(GeometryConfig(normal_weight=0.1, flatten_weight=1.0, start_fraction=0.5))
    early = pipeline.train_step(batch, step=10)
    assert "normal" not in early.logs and "flatten" not in early.logs
    late = pipeline.train_step(batch, step=60)
    assert late.logs["normal"] > 0 and late.logs["flatten"] > 0
    late.loss.backward()
    assert (
        pipeline.gaussians.params["quats"].grad.abs().sum() > 0
    )  # only the normals depend on rotations here
    plain, _ = _pipeline(GeometryConfig())
    assert "normal" not in plain.train_step(batch, step=60).logs


class _Views:
    """Stands in for the trainer's ImageDataset: two views of the same random photo, the second beside the first."""

    def __init__(self, batch: Batch) -> None:
        self.indices = [0, 1]
        T = torch.eye(4).expand(2, 4, 4).clone()
        T[1, 0, 3] = 0.2
        self.cameras = Cameras(T, K.expand(2, 3, 3).clone(), W, H)
        self._batch = batch

    def __getitem__(self, i: int) -> Batch:
        return self._batch._replace(cameras=self.cameras[i : i + 1], index=i)


def test_static_pipeline_compares_with_a_bound_neighbouring_view() -> None:
    pipeline, batch = _pipeline(GeometryConfig(multiview_weight=0.2, start_fraction=0.0))
    assert (
        "multiview" not in pipeline.train_step(batch, step=1).logs
    )  # no views bound yet: the term is skipped
    views = _Views(batch)
    pipeline.bind_views(views)
    result = pipeline.train_step(batch, step=1)
    assert 0 < result.logs["multiview"] <= 2
    result.loss.backward()
    assert pipeline.gaussians.params["means"].grad.abs().sum() > 0


def test_mesh_preset_is_fast_with_the_regularisers() -> None:
    presets = PIPELINES["static"].presets
    mesh, fast = presets["mesh"], presets["fast"]
    assert mesh.geometry.enabled and not fast.geometry.enabled
    assert dataclasses.replace(mesh, geometry=fast.geometry) == fast
    assert math.isclose(mesh.geometry.start_fraction, 0.3)
