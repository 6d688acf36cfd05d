"""`splat4d.render` of a `Gaussians4D`: slice at t → cull → 4D colour → the 3D path. A 4D scene without
space-time rotation renders like its 3D twin, culling is lossless at 1/255 and bounded above it, gradients reach
only the Gaussians rendered, and the cpu path matches the reference."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.geometry import look_at
from splat4d.render import RenderSettings, render


def _scene_3d(n: int = 150, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    gaussians = Gaussians.from_points(points, torch.rand(n, 3, generator=g), sh_degree=2)
    with torch.no_grad():
        gaussians.params["shN"].normal_(0, 0.1, generator=g)
        gaussians.params["opacity_logits"].uniform_(-2, 2, generator=g)
        gaussians.params["quats"].normal_(generator=g)
        gaussians.params["log_scales"].add_(torch.randn(n, 3, generator=g) * 0.3)
    return gaussians


def _cameras(times: list[float] | None = None) -> Cameras:
    eyes = [torch.tensor([3.0 * math.cos(a), 0.5, 3.0 * math.sin(a)]) for a in (0.3, 1.9)]
    T = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]]).expand(2, 3, 3).clone()
    return Cameras(T, K, width=80, height=60, times=None if times is None else torch.tensor(times))


def _scene_4d(n: int = 150, seed: int = 0, time_degree: int = 1) -> Gaussians4D:
    """Space-time rotated Gaussians with lifespans spread over [0, 1] and time-varying colour."""
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    times = torch.rand(n, generator=g)
    gaussians = Gaussians4D.from_points(
        points,
        torch.rand(n, 3, generator=g),
        times,
        sh_degree=1,
        time_degree=time_degree,
        init_time_scale=0.15,
    )
    with torch.no_grad():
        for name in ("quats_l", "quats_r"):
            gaussians.params[name].add_(torch.randn(n, 4, generator=g) * 0.3)
        gaussians.params["opacity_logits"].uniform_(-1, 3, generator=g)
        gaussians.params["sh0"][:, 1:].normal_(0, 0.3, generator=g)
        gaussians.params["shN"].normal_(0, 0.1, generator=g)
    return gaussians


def test_unrotated_4d_scene_with_huge_temporal_scale_renders_like_its_3d_twin_at_any_time() -> None:
    scene = _scene_3d()
    lifted = Gaussians4D.from_gaussians(scene, time=0.5, time_scale=1e4)
    cameras = _cameras()
    expected = render(scene, cameras)
    for t in (0.0, 0.37, 1.0, 5.0):
        out = render(lifted, cameras, t=t)
        torch.testing.assert_close(out.rgb, expected.rgb, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.alpha, expected.alpha, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.depth, expected.depth, atol=1e-4, rtol=1e-4)


def test_lifted_scene_renders_like_the_3d_scene_at_its_own_time() -> None:
    # At t = μ_t the weight is 1 and, without space-time rotation, slicing changes nothing, whatever the lifespan.
    scene = _scene_3d(seed=1)
    lifted = Gaussians4D.from_gaussians(scene, time=0.25, time_scale=0.01)
    cameras = _cameras()
    expected = render(scene, cameras)
    out = render(lifted, cameras, t=0.25)
    torch.testing.assert_close(out.rgb, expected.rgb, atol=1e-5, rtol=1e-5)
    assert len(out.info["kept_ids"]) == len(scene)
    # Far outside the lifespan nothing is left.
    far = render(lifted, cameras, t=0.9)
    assert len(far.info["kept_ids"]) == 0
    torch.testing.assert_close(far.alpha, torch.zeros_like(far.alpha))


def test_4d_colour_is_the_sh_colour_of_the_time_combined_coefficients() -> None:
    scene4 = _scene_4d(time_degree=2)
    t = 0.3
    with torch.no_grad():
        scene4.params["log_scales4"][:, 3] = math.log(1e4)  # every Gaussian alive, none moving
        basis = torch.tensor([math.cos(2 * math.pi * m * t) for m in range(3)])
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(len(scene4), 4)
        scene4.params["quats_l"].copy_(identity)
        scene4.params["quats_r"].copy_(identity)
        combined = torch.einsum("m,nmkd->nkd", basis, scene4.sh_coeffs)
    twin = Gaussians(
        {
            "means": scene4.means4[:, :3].detach().clone(),
            "log_scales": scene4.params["log_scales4"][:, :3].detach().clone(),
            "quats": identity.clone(),
            "opacity_logits": scene4.params["opacity_logits"].detach().clone(),
            "sh0": combined[:, :1].clone(),
            "shN": combined[:, 1:].clone(),
        }
    )
    cameras = _cameras()
    torch.testing.assert_close(
        render(scene4, cameras, t=t).rgb, render(twin, cameras).rgb, atol=1e-5, rtol=1e-5
    )
    # time_degree 0 in the settings keeps only the static part.
    static = render(scene4, cameras, RenderSettings(time_degree=0), t=t).rgb
    assert not torch.allclose(static, render(scene4, cameras, t=t).rgb, atol=1e-3)


def test_culling_at_one_over_255_does_not_change_the_image() -> None:
    scene = _scene_4d()
    cameras = _cameras()
    for t in (0.05, 0.95):
        culled = render(scene, cameras, RenderSettings(time_cull_threshold=1 / 255), t=t)
        full = render(scene, cameras, RenderSettings(time_cull_threshold=0.0), t=t)
        assert len(culled.info["kept_ids"]) < len(full.info["kept_ids"]) == len(scene)
        torch.testing.assert_close(culled.rgb, full.rgb, atol=0, rtol=0)
        torch.testing.assert_close(culled.alpha, full.alpha, atol=0, rtol=0)


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5])
def test_culling_changes_the_image_at_most_by_the_dropped_weights(threshold: float) -> None:
    scene = _scene_4d(seed=2)
    cameras = _cameras()
    background = (0.2, 0.3, 0.4)
    t = 0.5
    culled = render(scene, cameras, RenderSettings(time_cull_threshold=threshold, background=background), t=t)
    full = render(scene, cameras, RenderSettings(time_cull_threshold=0.0, background=background), t=t)
    weights = full.info["temporal_weights"]
    dropped = torch.ones(len(scene), dtype=torch.bool)
    dropped[culled.info["kept_ids"]] = False
    assert dropped.any()
    # Removing a layer of alpha a ≤ opacity · w changes a pixel by at most a · (colour range): sum over the
    # dropped Gaussians, with colours and background within [0, max].
    colour_range = max(full.rgb.max().item(), *background)
    dropped_alpha = (scene.opacities.detach() * weights)[dropped].sum().item()
    bound = dropped_alpha * colour_range
    diff = (culled.rgb - full.rgb).abs().max().item()
    assert diff <= bound + 1e-4
    assert (culled.alpha - full.alpha).abs().max().item() <= dropped_alpha + 1e-4
    assert diff > 0  # the threshold is high enough to actually cut something visible


def test_gradients_reach_only_the_gaussians_rendered() -> None:
    scene = _scene_4d(seed=3)
    out = render(scene, _cameras(), RenderSettings(time_cull_threshold=0.05), t=0.5)
    (out.rgb.square().sum() + out.alpha.sum()).backward()
    kept = torch.zeros(len(scene), dtype=torch.bool)
    kept[out.info["kept_ids"]] = True
    assert (~kept).any() and kept.any()
    for name, param in scene.params.items():
        assert torch.all(param.grad[~kept] == 0), name
        assert param.grad[kept].abs().sum() > 0, name


def test_cpu_render_matches_reference_render_and_gradients() -> None:
    scene = _scene_4d(n=60, seed=4)
    cameras = _cameras()
    outs, grads = {}, {}
    for backend in ("reference", "cpu"):
        scene.zero_grad()
        out = render(scene, cameras, RenderSettings(backend=backend, background=(0.1, 0.2, 0.3)), t=0.4)
        (out.rgb.square().sum() + out.depth.sum() * 0.1).backward()
        outs[backend] = out
        grads[backend] = {k: p.grad.clone() for k, p in scene.params.items()}
    torch.testing.assert_close(outs["cpu"].rgb, outs["reference"].rgb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outs["cpu"].alpha, outs["reference"].alpha, atol=1e-4, rtol=1e-4)
    for name in grads["cpu"]:
        torch.testing.assert_close(grads["cpu"][name], grads["reference"][name], atol=2e-3, rtol=2e-3)


def test_rotor_and_quaternion_scenes_render_alike() -> None:
    g = torch.Generator().manual_seed(5)
    points, rgb, times = torch.rand(80, 3, generator=g) - 0.5, torch.rand(80, 3, generator=g), torch.rand(80)
    with_quats = Gaussians4D.from_points(points, rgb, times, sh_degree=0, rotation="quats")
    with_rotors = Gaussians4D.from_points(points, rgb, times, sh_degree=0, rotation="rotors")
    cameras = _cameras()
    torch.testing.assert_close(
        render(with_rotors, cameras, t=0.5).rgb, render(with_quats, cameras, t=0.5).rgb, atol=1e-6, rtol=1e-6
    )


def test_render_time_comes_from_the_cameras_when_not_given() -> None:
    scene = _scene_4d(seed=6)
    from_cameras = render(scene, _cameras(times=[0.6, 0.6]))
    torch.testing.assert_close(from_cameras.rgb, render(scene, _cameras(), t=0.6).rgb)
    assert from_cameras.info["t"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="different times"):
        render(scene, _cameras(times=[0.1, 0.6]))
    with pytest.raises(ValueError, match="needs t"):
        render(scene, _cameras())
    with pytest.raises(ValueError, match="only meaningful"):
        render(_scene_3d(), _cameras(), t=0.5)


@pytest.mark.cuda
def test_cuda_render_4d_matches_cpu_render() -> None:
    scene = _scene_4d()
    cameras = _cameras()
    cpu = render(scene, cameras, t=0.4)
    gpu = render(scene.to("cuda"), cameras.to("cuda"), t=0.4)
    torch.testing.assert_close(gpu.rgb.cpu(), cpu.rgb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu.info["kept_ids"].cpu(), cpu.info["kept_ids"])


@pytest.mark.parametrize("rotation", ["quats", "rotors"])
def test_covariances_of_some_gaussians_are_those_rows_of_all_of_them(rotation) -> None:
    g = Gaussians4D.from_points(
        torch.randn(40, 3), torch.rand(40, 3), torch.rand(40), sh_degree=1, rotation=rotation
    )
    with torch.no_grad():
        for name in ("quats_l", "quats_r", "rotors"):
            if name in g.params:
                g.params[name][:] = torch.nn.functional.normalize(torch.randn_like(g.params[name]), dim=-1)
        g.params["log_scales4"][:] = torch.log(torch.rand(40, 4) * 0.3 + 0.05)
    ids = torch.tensor([0, 5, 17, 39])
    torch.testing.assert_close(g.covars4_of(ids), g.covars4[ids])
    torch.testing.assert_close(g.covars4_of(None), g.covars4)
