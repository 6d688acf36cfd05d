"""DropGaussian: training renders with random Gaussians left out."""

import torch

from pipelines.sparse_view.dropout import drop_gaussians
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.geometry import look_at
from splat4d.render import RenderSettings, render


def _gaussians(n: int = 2000) -> Gaussians:
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(n, 3, generator=generator) - 0.5
    return Gaussians.from_points(points, torch.rand(n, 3, generator=generator), sh_degree=0, init_opacity=0.3)


def _camera() -> Cameras:
    pose = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
    return Cameras(pose[None], K[None], 32, 32)


def test_dropped_gaussians_vanish_and_the_others_make_up_for_them() -> None:
    g = _gaussians()
    generator = torch.Generator().manual_seed(1)
    dropped = drop_gaussians(g, 0.25, generator)
    opacities = dropped.opacities
    gone = opacities == 0
    assert 0.2 < gone.float().mean() < 0.3
    torch.testing.assert_close(opacities[~gone], g.opacities[~gone] / 0.75)
    assert dropped.params["means"] is g.params["means"]  # the trained parameters themselves
    assert drop_gaussians(g, 0.0) is g

    # gradients reach the kept Gaussians only, through the very parameters the optimiser holds
    out = render(dropped, _camera(), RenderSettings(sh_degree=0))
    out.rgb.sum().backward()
    grad = g.params["opacity_logits"].grad
    assert grad is not None and (grad[gone] == 0).all() and (grad[~gone] != 0).any()
