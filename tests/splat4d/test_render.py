"""`splat4d.render`: the chained ops give the same images on every backend and sensible depth."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.geometry import look_at
from splat4d.render import RenderSettings, render


def _scene(n: int = 200, seed: int = 0) -> tuple[Gaussians, Cameras]:
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    gaussians = Gaussians.from_points(points, torch.rand(n, 3, generator=g), sh_degree=2)
    with torch.no_grad():
        gaussians.params["shN"].normal_(0, 0.1, generator=g)
        gaussians.params["opacity_logits"].uniform_(-2, 2, generator=g)
    eyes = [torch.tensor([3.0 * math.cos(a), 0.5, 3.0 * math.sin(a)]) for a in (0.3, 1.9)]
    T = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]]).expand(2, 3, 3)
    return gaussians, Cameras(T, K.clone(), width=80, height=60)


def test_cpu_render_matches_reference_render() -> None:
    gaussians, cameras = _scene()
    ref = render(gaussians, cameras, RenderSettings(backend="reference", background=(0.2, 0.3, 0.4)))
    cpu = render(gaussians, cameras, RenderSettings(backend="cpu", background=(0.2, 0.3, 0.4)))
    torch.testing.assert_close(cpu.rgb, ref.rgb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cpu.alpha, ref.alpha, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cpu.depth, ref.depth, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(cpu.median_depth, ref.median_depth)


def test_cpu_render_gradients_match_reference() -> None:
    gaussians, cameras = _scene(n=60)
    grads = {}
    for backend in ("reference", "cpu"):
        gaussians.zero_grad()
        out = render(gaussians, cameras, RenderSettings(backend=backend))
        (out.rgb.square().sum() + out.depth.sum() * 0.1).backward()
        grads[backend] = {k: p.grad.clone() for k, p in gaussians.params.items()}
    for name in grads["cpu"]:
        torch.testing.assert_close(grads["cpu"][name], grads["reference"][name], atol=2e-3, rtol=2e-3)


def test_opaque_plane_renders_its_depth() -> None:
    # A dense grid of flat, opaque Gaussians in the plane z = 2 seen head-on: depth 2 everywhere it is covered.
    xs = torch.linspace(-1.5, 1.5, 40)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    points = torch.cat([grid, torch.full((grid.shape[0], 1), 2.0)], dim=1)
    gaussians = Gaussians.from_points(points, torch.full_like(points, 0.5), sh_degree=0, init_opacity=0.99)
    K = torch.tensor([[30.0, 0, 32], [0, 30.0, 32], [0, 0, 1]])
    cameras = Cameras(torch.eye(4)[None], K[None], width=64, height=64)
    out = render(gaussians, cameras)
    centre = (slice(16, 48), slice(16, 48))
    assert torch.all(out.alpha[0][centre] > 0.99)
    torch.testing.assert_close(
        out.depth[0][centre], torch.full_like(out.depth[0][centre], 2.0), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(out.median_depth[0][centre], torch.full_like(out.depth[0][centre], 2.0))


@pytest.mark.cuda
def test_cuda_render_matches_cpu_render() -> None:
    gaussians, cameras = _scene()
    cpu = render(gaussians, cameras)
    gpu = render(gaussians.to("cuda"), cameras.to("cuda"))
    torch.testing.assert_close(gpu.rgb.cpu(), cpu.rgb, atol=1e-4, rtol=1e-4)
