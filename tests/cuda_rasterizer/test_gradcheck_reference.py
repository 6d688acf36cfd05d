"""Float64 finite-difference checks of the reference's autograd gradients.

The scenes keep every hard switch (culling, Jacobian guard band, 0.99 clamp, early termination) well away
from the inputs, so a 1e-6 perturbation never flips one; the rasterizer runs in smooth-cutoff mode, whose
alpha ramp is C¹.
"""

import math

import pytest
import torch
from torch.autograd import gradcheck

from cuda_rasterizer import reference as ref

F64 = torch.float64


def _leaf(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64, requires_grad=True)


def _projection_inputs():
    """Five Gaussians: three ordinary, one past the Jacobian's guard band (still on screen), one behind the
    camera (culled, so its gradient must be zero on both sides of the check)."""
    means = _leaf([[0.1, -0.2, 4.0], [-0.5, 0.3, 5.0], [0.4, 0.4, 3.0], [2.5, 0.0, 5.0], [0.0, 0.0, -3.0]])
    covars = _leaf(
        [
            [0.02, 0.005, 0.001, 0.03, -0.004, 0.025],
            [0.05, -0.01, 0.0, 0.02, 0.003, 0.04],
            [0.01, 0.0, 0.002, 0.015, 0.0, 0.02],
            [0.25, 0.0, 0.0, 0.25, 0.0, 0.25],
            [0.02, 0.0, 0.0, 0.02, 0.0, 0.02],
        ]
    )
    opacities = _leaf([0.6, 0.3, 0.8, 0.9, 0.5])
    angle = 0.05
    T_cam_world = _leaf(
        [
            [
                [math.cos(angle), 0.0, math.sin(angle), 0.05],
                [0.0, 1.0, 0.0, -0.02],
                [-math.sin(angle), 0.0, math.cos(angle), 0.1],
                [0.0, 0.0, 0.0, 1.0],
            ]
        ]
    )
    Ks = torch.tensor([[[100.0, 0.0, 32.0], [0.0, 100.0, 24.0], [0.0, 0.0, 1.0]]], dtype=F64)
    return means, covars, opacities, T_cam_world, Ks


@pytest.mark.parametrize("antialiased", [False, True])
def test_project_gradients_match_finite_differences(antialiased):
    means, covars, opacities, T_cam_world, Ks = _projection_inputs()

    def float_outputs(means, covars, opacities, T_cam_world):
        means2d, conics, depths, _, opacities_out = ref.project(
            means, covars, opacities, T_cam_world, Ks, 64, 48, antialiased=antialiased
        )
        return means2d, conics, depths, opacities_out

    radii = ref.project(means, covars, opacities, T_cam_world, Ks, 64, 48)[3]
    assert (radii[0, :4] > 0).all() and (radii[0, 4] == 0).all()
    assert gradcheck(float_outputs, (means, covars, opacities, T_cam_world))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_gradients_match_finite_differences(degree):
    gen = torch.Generator().manual_seed(degree)
    dirs = torch.randn(2, 3, 3, generator=gen, dtype=F64).requires_grad_()
    coeffs = torch.randn(3, 16, 2, generator=gen, dtype=F64).requires_grad_()
    assert gradcheck(lambda dirs, coeffs: ref.eval_sh(degree, dirs, coeffs), (dirs, coeffs))


def test_quat_scale_to_covar_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(0)
    quats = torch.randn(4, 4, generator=gen, dtype=F64).requires_grad_()
    scales = (0.1 + torch.rand(4, 3, generator=gen, dtype=F64)).requires_grad_()
    assert gradcheck(ref.quat_scale_to_covar, (quats, scales))


def _raster_inputs():
    """Four overlapping anisotropic Gaussians on a 12x10 image: opacities <= 0.7 keep alpha below 0.99 and the
    transmittance above 0.3 * 0.5 * 0.4 * 0.6 >> 1e-4, and positive-definite conics keep sigma >= 0."""
    means2d = _leaf([[[3.2, 4.1], [6.7, 5.3], [8.9, 2.6], [5.5, 6.8]]])
    conics = _leaf([[[0.30, 0.05, 0.25], [0.20, -0.08, 0.40], [0.50, 0.10, 0.30], [0.15, 0.02, 0.18]]])
    colors = _leaf([[[0.9, 0.1, 0.2], [0.2, 0.8, 0.3], [0.1, 0.3, 0.9], [0.7, 0.7, 0.1]]])
    opacities = _leaf([[0.7, 0.5, 0.6, 0.4]])
    background = _leaf([[0.2, 0.3, 0.4]])
    depths = torch.tensor([[2.0, 1.0, 3.0, 1.5]], dtype=F64)
    radii = torch.full((1, 4, 2), 20, dtype=torch.int32)
    return (means2d, conics, colors, opacities, background), depths, radii


@pytest.mark.parametrize(
    ("pixels_per_chunk", "fast_mode"),
    [(120, False), (50, True)],  # the whole Jacobian in one chunk; random projections of it in three
    ids=["one_chunk", "three_checkpointed_chunks"],
)
def test_rasterize_smooth_cutoff_gradients_match_finite_differences(monkeypatch, pixels_per_chunk, fast_mode):
    monkeypatch.setattr(ref, "_pixels_per_chunk", lambda num_gaussians, channels: pixels_per_chunk)
    inputs, depths, radii = _raster_inputs()

    def float_outputs(means2d, conics, colors, opacities, background):
        render_colors, render_alphas, _ = ref.rasterize(
            means2d, conics, colors, opacities, depths, radii, 12, 10, background, smooth_cutoff=True
        )
        return render_colors, render_alphas

    # The scene must exercise the ramp: some pixel-Gaussian alphas fall inside [1/255, 2/255).
    means2d, conics, _, opacities, _ = (x.detach() for x in inputs)
    v, u = torch.meshgrid(torch.arange(10), torch.arange(12), indexing="ij")
    d = means2d[0, :, None, None] - (torch.stack([u, v], -1).to(F64) + 0.5)
    a, b, c = (x[:, None, None] for x in conics[0].unbind(-1))
    alpha = opacities[0, :, None, None] * torch.exp(
        -(0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1])
    )
    assert ((alpha >= 1 / 255) & (alpha < 2 / 255)).any()

    assert gradcheck(float_outputs, inputs, fast_mode=fast_mode)
