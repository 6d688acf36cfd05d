"""Behaviours every backend shares, checked through the public ops on the device fixture (cpu, and cuda on a GPU)."""

import math

import pytest
import torch

import cuda_rasterizer as cr

SETTINGS = cr.RasterSettings(width=48, height=32)


def _scene(n: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 2 + 2 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]
    means = torch.cat([xy, z[:, None]], dim=1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.rand(n, 3, generator=g) * 0.1 + 0.03
    K = torch.tensor([[40.0, 0, 24], [0, 40.0, 16], [0, 0, 1]])
    out = {
        "means": means,
        "covars": cr.quat_scale_to_covar(quats, scales),
        "opacities": torch.rand(n, generator=g) * 0.8 + 0.1,
        "colors": torch.rand(1, n, 3, generator=g),
        "T_cam_world": torch.eye(4)[None],
        "Ks": K[None],
    }
    return {k: v.to(device) for k, v in out.items()}


def _render(s: dict[str, torch.Tensor], background: torch.Tensor | None = None) -> cr.RasterOutput:
    p = cr.project(s["means"], s["covars"], s["opacities"], s["T_cam_world"], s["Ks"], SETTINGS)
    return cr.rasterize(
        p.means2d, p.conics, s["colors"], p.opacities, p.depths, p.radii, SETTINGS, background=background
    )


def _with_extra(s: dict[str, torch.Tensor], mean: list[float], opacity: float) -> dict[str, torch.Tensor]:
    dev = s["means"].device
    out = dict(s)
    out["means"] = torch.cat([s["means"], torch.tensor([mean], device=dev)])
    out["covars"] = torch.cat([s["covars"], torch.tensor([[0.01, 0, 0, 0.01, 0, 0.01]], device=dev)])
    out["opacities"] = torch.cat([s["opacities"], torch.tensor([opacity], device=dev)])
    out["colors"] = torch.cat([s["colors"], torch.ones(1, 1, 3, device=dev)], dim=1)
    return out


def test_empty_scene_renders_the_background(device: torch.device) -> None:
    s = _scene(0, device)
    bg = torch.tensor([[0.1, 0.5, 0.9]], device=device)
    out = _render(s, background=bg)
    assert torch.equal(out.colors, bg.view(1, 1, 1, 3).expand(1, 32, 48, 3))
    assert torch.all(out.alphas == 0) and torch.all(out.median_ids == -1)


def test_gaussian_behind_the_camera_does_not_change_the_render(device: torch.device) -> None:
    s = _scene(30, device)
    before = _render(s)
    after = _render(_with_extra(s, [0.0, 0.0, -2.0], 0.9))
    torch.testing.assert_close(after.colors, before.colors, rtol=0, atol=0)


def test_fully_hidden_gaussian_does_not_change_the_render(device: torch.device) -> None:
    # An opaque wall of Gaussians at z=1 in front of the whole image, then one more Gaussian behind it.
    xs = torch.linspace(-1.2, 1.2, 25)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    n = grid.shape[0]
    wall = {
        "means": torch.cat([grid, torch.ones(n, 1)], dim=1).to(device),
        "covars": torch.tensor([[0.01, 0, 0, 0.01, 0, 1e-4]]).repeat(n, 1).to(device),
        "opacities": torch.full((n,), 0.99, device=device),
        "colors": torch.rand(1, n, 3).to(device),
        "T_cam_world": torch.eye(4, device=device)[None],
        "Ks": torch.tensor([[[40.0, 0, 24], [0, 40.0, 16], [0, 0, 1]]], device=device),
    }
    before = _render(wall)
    after = _render(_with_extra(wall, [0.0, 0.0, 3.0], 0.99))
    torch.testing.assert_close(after.colors, before.colors, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["means", "covars", "opacities"])
def test_nan_input_raises_an_error_naming_the_argument(device: torch.device, name: str) -> None:
    s = _scene(5, device)
    s[name] = s[name].clone()
    s[name].view(-1)[0] = math.nan
    with pytest.raises(ValueError, match=f"^{name} contains NaN"):
        _render(s)


@pytest.mark.parametrize(("name", "bad"), [("means", (5, 2)), ("opacities", (5, 1)), ("Ks", (1, 4, 4))])
def test_wrong_shape_raises_an_error_naming_the_argument(
    device: torch.device, name: str, bad: tuple[int, ...]
) -> None:
    s = _scene(5, device)
    s[name] = torch.zeros(bad, device=device)
    # ValueError from the op's own check; jaxtyping's TypeCheckError (a TypeError) when tests run it first.
    with pytest.raises((ValueError, TypeError)) as info:
        _render(s)
    assert name in str(info.value)


def test_inputs_on_different_devices_are_rejected() -> None:
    s = _scene(5, torch.device("cpu"))
    s["opacities"] = s["opacities"].to(torch.device("meta"))
    with pytest.raises(ValueError, match="opacities is on meta"):
        _render(s)
