"""`slice_4d` and the 4D helpers: slicing identities, cpu/cuda kernels against the dense reference (forward,
backward with random cotangents, float64 gradcheck), 4D covariances from quaternion pairs and rotors, temporal
culling and 4D colour."""

import math

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck

import cuda_rasterizer as cr
from cuda_rasterizer import reference, reference_4d

F64 = torch.float64


def _backends(device: torch.device) -> list[str]:
    return ["reference", "cpu"] if device.type == "cpu" else ["cuda"]


def _random_4d(n: int, seed: int, dtype: torch.dtype = F64, device: str | torch.device = "cpu") -> dict:
    """Random 4D Gaussians with space-time rotations, temporal scales around 0.3 and times in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    means4 = torch.cat(
        [torch.randn(n, 3, generator=g, dtype=F64), torch.rand(n, 1, generator=g, dtype=F64)], 1
    )
    scales4 = torch.exp(torch.randn(n, 4, generator=g, dtype=F64) * 0.4 + math.log(0.3))
    quats_l = torch.randn(n, 4, generator=g, dtype=F64)
    quats_r = torch.randn(n, 4, generator=g, dtype=F64)
    covars4 = reference_4d.covar4d_from_quats(quats_l, quats_r, scales4)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=F64)
    return {
        k: v.to(device=device, dtype=dtype)
        for k, v in {"means4": means4, "covars4": covars4, "opacities": opacities}.items()
    }


def _rotation_3d(axis_angle: Tensor) -> Tensor:
    theta = axis_angle.norm()
    k = (axis_angle / theta).tolist()
    K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=axis_angle.dtype)
    return torch.eye(3, dtype=axis_angle.dtype) + theta.sin() * K + (1 - theta.cos()) * K @ K


def _unpack3(packed: Tensor) -> Tensor:
    idx = torch.tensor([[0, 1, 2], [1, 3, 4], [2, 4, 5]], device=packed.device)
    return packed[..., idx]


def _simple_rotor(n: int, blade: int, angles: Tensor) -> Tensor:
    """exp(θ/2 e_ij) for the rotor component `blade` (1..6 = b_xy, b_xz, b_yz, b_xt, b_yt, b_zt)."""
    r = torch.zeros(n, 8, dtype=angles.dtype)
    r[:, 0] = torch.cos(angles / 2)
    r[:, blade] = torch.sin(angles / 2)
    return r


def _rotor_product(a: Tensor, b: Tensor) -> Tensor:
    """Geometric product of two even multivectors through the reference's Clifford tables."""
    G, _ = reference_4d._clifford_tables(a.dtype, a.device)
    blades = list(reference_4d._ROTOR_BLADES)
    A = a.new_zeros(a.shape[0], 16)
    B = b.new_zeros(b.shape[0], 16)
    A[:, blades], B[:, blades] = a, b
    return torch.einsum("na,nb,abc->nc", A, B, G)[:, blades]


def _random_rotors(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    r = _simple_rotor(n, 1, torch.randn(n, generator=g, dtype=F64))
    for blade in (2, 3, 4, 5, 6, 1, 4):
        r = _rotor_product(r, _simple_rotor(n, blade, torch.randn(n, generator=g, dtype=F64)))
    return r


# ------------------------------------------------------------------------------------------ slicing identities -----


def test_lifespan_gaussian_slices_to_its_3d_shape_with_gaussian_weight(device: torch.device) -> None:
    # No space-time correlation: the 3D part is untouched and the weight is exp(-dt² / (2 σ_t²)).
    means4 = torch.tensor([[0.1, -0.2, 3.0, 0.4]], device=device)
    covars4 = torch.tensor([[0.04, 0.01, 0.0, 0.0, 0.09, -0.02, 0.0, 0.16, 0.0, 0.25]], device=device)
    opacities = torch.tensor([0.8], device=device)
    for backend in _backends(device):
        out = cr.slice_4d(means4, covars4, opacities, 0.9, backend)
        w = math.exp(-0.5 * 0.5**2 / 0.25)
        torch.testing.assert_close(out.means, means4[:, :3])
        torch.testing.assert_close(out.covars, covars4[:, [0, 1, 2, 4, 5, 7]])
        torch.testing.assert_close(out.temporal_weights, torch.tensor([w], device=device))
        torch.testing.assert_close(out.opacities, torch.tensor([0.8 * w], device=device))


def test_correlated_gaussian_slices_to_the_hand_computed_conditional() -> None:
    # Σ = [[1, ρ], [ρ, 1]] in (x, t) only: x | t ~ N(μ_x + ρ dt, 1 - ρ²).
    rho, dt = 0.6, 0.5
    means4 = torch.tensor([[1.0, 2.0, 3.0, 0.0]], dtype=F64)
    covars4 = torch.tensor([[1.0, 0.0, 0.0, rho, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]], dtype=F64)
    for backend in ("reference", "cpu"):
        out = cr.slice_4d(means4, covars4, torch.ones(1, dtype=F64), dt, backend)
        torch.testing.assert_close(out.means, torch.tensor([[1.0 + rho * dt, 2.0, 3.0]], dtype=F64))
        torch.testing.assert_close(
            out.covars, torch.tensor([[1 - rho**2, 0.0, 0.0, 1.0, 0.0, 1.0]], dtype=F64)
        )
        torch.testing.assert_close(out.temporal_weights, torch.tensor([math.exp(-0.5 * dt**2)], dtype=F64))


def test_temporal_weight_is_one_at_the_temporal_mean(device: torch.device) -> None:
    g = _random_4d(64, seed=1, dtype=torch.float32, device=device)
    g["means4"][:, 3] = 0.3
    for backend in _backends(device):
        out = cr.slice_4d(g["means4"], g["covars4"], g["opacities"], 0.3, backend)
        torch.testing.assert_close(out.temporal_weights, torch.ones_like(out.temporal_weights))
        torch.testing.assert_close(out.means, g["means4"][:, :3])
        torch.testing.assert_close(out.opacities, g["opacities"])


def test_slicing_is_symmetric_in_the_time_offset(device: torch.device) -> None:
    g = _random_4d(64, seed=2, dtype=torch.float32, device=device)
    g["means4"][:, 3] = 0.5
    for backend in _backends(device):
        ahead = cr.slice_4d(g["means4"], g["covars4"], g["opacities"], 0.5 + 0.2, backend)
        behind = cr.slice_4d(g["means4"], g["covars4"], g["opacities"], 0.5 - 0.2, backend)
        torch.testing.assert_close(ahead.temporal_weights, behind.temporal_weights)
        torch.testing.assert_close(ahead.opacities, behind.opacities)
        torch.testing.assert_close(ahead.covars, behind.covars)
        # The mean moves along the space-time correlation, by the same amount either way.
        torch.testing.assert_close(ahead.means + behind.means, 2 * g["means4"][:, :3])


def test_huge_temporal_scale_slices_to_the_3d_twin_at_any_time() -> None:
    g = torch.Generator().manual_seed(3)
    n = 32
    means = torch.randn(n, 3, generator=g, dtype=F64)
    quats = torch.randn(n, 4, generator=g, dtype=F64)
    scales = torch.rand(n, 3, generator=g, dtype=F64) * 0.3 + 0.05
    opacities = torch.rand(n, generator=g, dtype=F64)
    quats_l, quats_r = cr.spatial_quats_to_quats_lr(quats)
    covars4 = cr.covar4d_from_quats(
        quats_l, quats_r, torch.cat([scales, torch.full((n, 1), 1e6, dtype=F64)], 1)
    )
    means4 = torch.cat([means, torch.full((n, 1), 0.5, dtype=F64)], 1)
    for t in (-3.0, 0.0, 0.5, 7.0):
        for backend in ("reference", "cpu"):
            out = cr.slice_4d(means4, covars4, opacities, t, backend)
            torch.testing.assert_close(out.means, means)
            torch.testing.assert_close(out.covars, cr.quat_scale_to_covar(quats, scales))
            torch.testing.assert_close(out.opacities, opacities)


def test_slicing_commutes_with_a_rigid_motion_of_space(device: torch.device) -> None:
    g = _random_4d(48, seed=4, dtype=F64)
    R = _rotation_3d(torch.tensor([0.3, -1.1, 0.7], dtype=F64))
    p = torch.tensor([0.5, -2.0, 1.5], dtype=F64)
    R4 = torch.eye(4, dtype=F64)
    R4[:3, :3] = R
    moved_means4 = torch.cat([g["means4"][:, :3] @ R.T + p, g["means4"][:, 3:]], 1)
    moved_covars4 = reference_4d.pack4(R4 @ reference_4d.unpack4(g["covars4"]) @ R4.T)
    dtype = torch.float32 if device.type == "cuda" else F64
    to = {"device": device, "dtype": dtype}
    for backend in _backends(device):
        before = cr.slice_4d(
            g["means4"].to(**to), g["covars4"].to(**to), g["opacities"].to(**to), 0.7, backend
        )
        after = cr.slice_4d(
            moved_means4.to(**to), moved_covars4.to(**to), g["opacities"].to(**to), 0.7, backend
        )
        Rd, pd = R.to(**to), p.to(**to)
        torch.testing.assert_close(after.means, before.means @ Rd.T + pd)
        torch.testing.assert_close(_unpack3(after.covars), Rd @ _unpack3(before.covars) @ Rd.T)
        torch.testing.assert_close(after.opacities, before.opacities)
        torch.testing.assert_close(after.temporal_weights, before.temporal_weights)


def test_gaussian_without_temporal_extent_passes_through_with_zero_weight(device: torch.device) -> None:
    g = _random_4d(8, seed=5, dtype=torch.float32, device=device)
    g["covars4"][::2, 9] = 0.0  # Σ_tt = 0 for every other Gaussian
    leaves = [x.clone().requires_grad_() for x in (g["means4"], g["covars4"], g["opacities"])]
    for backend in _backends(device):
        out = cr.slice_4d(*leaves, 0.4, backend)
        assert all(torch.isfinite(x).all() for x in out)
        torch.testing.assert_close(out.means[::2], g["means4"][::2, :3])
        torch.testing.assert_close(out.covars[::2], g["covars4"][::2][:, [0, 1, 2, 4, 5, 7]])
        assert torch.all(out.temporal_weights[::2] == 0) and torch.all(out.opacities[::2] == 0)
        grads = torch.autograd.grad(sum(x.sum() for x in out), leaves)
        assert all(torch.isfinite(x).all() for x in grads)
        assert torch.all(grads[0][::2, 3] == 0) and torch.all(grads[1][::2][:, [3, 6, 8, 9]] == 0)


# ---------------------------------------------------------------------------------- kernels against reference -----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_match_reference_forward_and_backward(device: torch.device, dtype: torch.dtype) -> None:
    if device.type == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA kernels are float32 only")
    g = _random_4d(500, seed=6, dtype=dtype, device=device)
    cot = torch.Generator().manual_seed(7)
    for t in (0.0, 0.35, 1.2):
        ref_leaves = [x.clone().requires_grad_() for x in g.values()]
        ker_leaves = [x.clone().requires_grad_() for x in g.values()]
        ref = cr.slice_4d(*ref_leaves, t, backend="reference")
        ker = cr.slice_4d(*ker_leaves, t, backend=device.type)
        tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
        for a, b in zip(ker, ref, strict=True):
            torch.testing.assert_close(a, b, **tol)
        vs = [torch.randn(x.shape, generator=cot, dtype=F64).to(x) for x in ref]
        ref_grads = torch.autograd.grad(sum((o * v).sum() for o, v in zip(ref, vs, strict=True)), ref_leaves)
        ker_grads = torch.autograd.grad(sum((o * v).sum() for o, v in zip(ker, vs, strict=True)), ker_leaves)
        tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
        for a, b in zip(ker_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_slice_gradients_pass_float64_gradcheck(backend: str) -> None:
    g = _random_4d(6, seed=8)
    leaves = [x.clone().requires_grad_() for x in g.values()]
    assert gradcheck(lambda *x: tuple(cr.slice_4d(*x, 0.6, backend=backend)), leaves, eps=1e-6, atol=1e-7)


def test_slice_through_covar4d_from_quats_passes_float64_gradcheck() -> None:
    g = torch.Generator().manual_seed(9)
    n = 4
    leaves = [
        torch.randn(n, 4, generator=g, dtype=F64, requires_grad=True),  # means4
        torch.randn(n, 4, generator=g, dtype=F64, requires_grad=True),  # quats_l
        torch.randn(n, 4, generator=g, dtype=F64, requires_grad=True),  # quats_r
        (torch.randn(n, 4, generator=g, dtype=F64) * 0.3).requires_grad_(),  # log_scales4
    ]

    def fn(means4: Tensor, quats_l: Tensor, quats_r: Tensor, log_scales4: Tensor) -> tuple[Tensor, ...]:
        covars4 = cr.covar4d_from_quats(quats_l, quats_r, log_scales4.exp())
        return tuple(cr.slice_4d(means4, covars4, torch.full((n,), 0.7, dtype=F64), 0.2, backend="cpu"))

    assert gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


def test_slice_rejects_bad_shapes_and_non_finite_inputs() -> None:
    g = _random_4d(4, seed=10, dtype=torch.float32)
    # ValueError from the op's own check; jaxtyping's TypeCheckError (a TypeError) when tests run it first.
    with pytest.raises((ValueError, TypeError), match="covars4"):
        cr.slice_4d(g["means4"], g["covars4"][:, :6], g["opacities"], 0.0)
    with pytest.raises(ValueError, match="t must be finite"):
        cr.slice_4d(g["means4"], g["covars4"], g["opacities"], math.nan)
    g["means4"][0, 3] = math.inf
    with pytest.raises(ValueError, match="means4"):
        cr.slice_4d(g["means4"], g["covars4"], g["opacities"], 0.0)


# ----------------------------------------------------------------------------------------- 4D covariances -----


def test_identity_rotation_gives_a_diagonal_covariance() -> None:
    scales4 = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=F64)
    identity = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64)
    expected = reference_4d.pack4(torch.diag_embed(scales4.square()))
    torch.testing.assert_close(cr.covar4d_from_quats(identity, identity, scales4), expected)
    rotor = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0]], dtype=F64)
    torch.testing.assert_close(cr.covar4d_from_rotors(rotor, scales4), expected)


def test_covar4d_from_quats_matches_the_quaternion_sandwich_reference() -> None:
    g = torch.Generator().manual_seed(11)
    quats_l, quats_r = torch.randn(2, 64, 4, generator=g, dtype=F64)
    scales4 = torch.rand(64, 4, generator=g, dtype=F64) + 0.05
    covars4 = cr.covar4d_from_quats(quats_l, quats_r, scales4)
    torch.testing.assert_close(covars4, reference_4d.covar4d_from_quats(quats_l, quats_r, scales4))
    # Symmetric positive definite with eigenvalues s² (a rotation does not change them).
    eig = torch.linalg.eigvalsh(reference_4d.unpack4(covars4))
    torch.testing.assert_close(eig, scales4.square().sort(dim=-1).values)


def test_spatial_quats_lift_a_3d_covariance_without_touching_time() -> None:
    g = torch.Generator().manual_seed(12)
    quats = torch.randn(32, 4, generator=g, dtype=F64)
    scales4 = torch.rand(32, 4, generator=g, dtype=F64) + 0.05
    covars4 = cr.covar4d_from_quats(*cr.spatial_quats_to_quats_lr(quats), scales4)
    torch.testing.assert_close(covars4[:, [0, 1, 2, 4, 5, 7]], cr.quat_scale_to_covar(quats, scales4[:, :3]))
    torch.testing.assert_close(covars4[:, [3, 6, 8]], torch.zeros(32, 3, dtype=F64))
    torch.testing.assert_close(covars4[:, 9], scales4[:, 3].square())


def test_rotors_match_the_clifford_sandwich_reference() -> None:
    rotors = _random_rotors(64, seed=13)
    scales4 = torch.rand(64, 4, generator=torch.Generator().manual_seed(14), dtype=F64) + 0.05
    expected = reference_4d.covar4d_from_rotors(rotors, scales4)
    torch.testing.assert_close(cr.covar4d_from_rotors(rotors, scales4), expected)
    # Any positive scale of a rotor is the same rotation.
    torch.testing.assert_close(cr.covar4d_from_rotors(3.0 * rotors, scales4), expected)


def test_spatial_rotor_keeps_time_separate_and_space_time_rotor_mixes_it() -> None:
    scales4 = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=F64)
    spatial = cr.covar4d_from_rotors(_simple_rotor(1, 1, torch.tensor([0.8], dtype=F64)), scales4)
    torch.testing.assert_close(spatial[:, [3, 6, 8]], torch.zeros(1, 3, dtype=F64))
    boost = cr.covar4d_from_rotors(_simple_rotor(1, 4, torch.tensor([0.8], dtype=F64)), scales4)  # x-t plane
    assert boost[0, 3].abs() > 1e-3 and torch.allclose(boost[0, [6, 8]], torch.zeros(2, dtype=F64))


# --------------------------------------------------------------------------------------- culling and colour -----


def test_cull_keeps_exactly_the_weights_at_or_above_the_threshold() -> None:
    weights = torch.tensor([0.5, 1 / 255, 0.001, 0.0, 1.0, 0.004])
    kept = cr.cull_by_time(weights, 1 / 255)
    assert kept.dtype == torch.int64
    assert kept.tolist() == [0, 1, 4, 5]
    assert cr.cull_by_time(weights, 0.0).tolist() == list(range(6))


def test_time_degree_zero_is_static_sh_colour(device: torch.device) -> None:
    g = torch.Generator().manual_seed(15)
    dirs = torch.randn(2, 10, 3, generator=g).to(device)
    coeffs = torch.randn(10, 3, 16, 3, generator=g).to(device)
    static = cr.eval_sh(3, dirs, coeffs[:, 0])
    for t in (0.0, 0.3, 0.9):
        torch.testing.assert_close(cr.eval_sh_4d(3, 0, dirs, coeffs, t), static)


@pytest.mark.parametrize("period", [1.0, 2.5])
def test_eval_sh_4d_matches_per_basis_reference(device: torch.device, period: float) -> None:
    g = torch.Generator().manual_seed(16)
    dirs = torch.randn(2, 20, 3, generator=g).to(device)
    coeffs = torch.randn(20, 3, 9, 3, generator=g).to(device)
    for backend in _backends(device):
        for t in (0.1, 0.45, 0.8):
            c_ref = coeffs.clone().requires_grad_()
            c_op = coeffs.clone().requires_grad_()
            ref = reference_4d.eval_sh_4d(2, 2, dirs, c_ref, t, period)
            out = cr.eval_sh_4d(2, 2, dirs, c_op, t, period, backend)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
            v = torch.randn(ref.shape, generator=g).to(device)
            (g_ref,) = torch.autograd.grad((ref * v).sum(), c_ref)
            (g_op,) = torch.autograd.grad((out * v).sum(), c_op)
            torch.testing.assert_close(g_op, g_ref, atol=1e-5, rtol=1e-5)


def test_eval_sh_4d_basis_is_a_cosine_series_in_time() -> None:
    # One Gaussian, degree 0: colour(t) = Y_0 (c_0 + c_1 cos(2π t / T) + c_2 cos(4π t / T)).
    coeffs = torch.tensor([1.0, 0.5, -0.25], dtype=F64)[None, :, None, None]
    dirs = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=F64)
    for t in (0.0, 0.2, 0.5):
        expected = reference.SH_C0 * (
            1 + 0.5 * math.cos(2 * math.pi * t / 2) - 0.25 * math.cos(4 * math.pi * t / 2)
        )
        torch.testing.assert_close(cr.eval_sh_4d(0, 2, dirs, coeffs, t, period=2.0).item(), expected)
    with pytest.raises(ValueError, match="time bases"):
        cr.eval_sh_4d(0, 3, dirs, coeffs, 0.0)
