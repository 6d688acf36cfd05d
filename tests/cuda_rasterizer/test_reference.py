"""The dense reference rasterizer against hand-computed tiny scenes and gsplat's pure-torch functions.

gsplat's `_torch_impl` is an independent implementation of the same EWA projection and SH basis; it is only
called here as a cross-check (its radii differ by design: 3.33 sigma there, opacity-aware here).
"""

import math
import struct

import pytest
import torch
from gsplat.cuda import _torch_impl as gsplat_torch

from cuda_rasterizer import reference as ref

F64 = torch.float64
WIDTH, HEIGHT = 64, 48


def _camera():
    """Identity pose, f = 100 px, principal point (32, 24): (T_cam_world [1, 4, 4], Ks [1, 3, 3])."""
    Ks = torch.tensor([[[100.0, 0.0, 32.0], [0.0, 100.0, 24.0], [0.0, 0.0, 1.0]]], dtype=F64)
    return torch.eye(4, dtype=F64)[None], Ks


def _packed(matrix: list[list[float]]) -> list[float]:
    return [matrix[0][0], matrix[0][1], matrix[0][2], matrix[1][1], matrix[1][2], matrix[2][2]]


def _project_one(mean, covar, opacity, **kwargs):
    T_cam_world, Ks = _camera()
    return ref.project(
        torch.tensor([mean], dtype=F64),
        torch.tensor([_packed(covar)], dtype=F64),
        torch.tensor([opacity], dtype=F64),
        T_cam_world,
        Ks,
        WIDTH,
        HEIGHT,
        **kwargs,
    )


def _extent(opacity: float, variance: float) -> int:
    """Hand formula for the opacity-aware radius: ceil(sqrt(2 ln(255 opacity)) sqrt(variance))."""
    return math.ceil(math.sqrt(2 * math.log(255 * opacity)) * math.sqrt(variance))


def _splats(means2d, conics, opacities, colors, depths=None):
    """A one-camera screen-space scene with all radii large (nothing culled)."""
    n = len(opacities)
    depths = depths if depths is not None else list(range(1, n + 1))
    return dict(
        means2d=torch.tensor([means2d], dtype=F64).reshape(1, n, 2),
        conics=torch.tensor([conics], dtype=F64).reshape(1, n, 3),
        colors=torch.tensor([colors], dtype=F64).reshape(1, n, -1),
        opacities=torch.tensor([opacities], dtype=F64).reshape(1, n),
        depths=torch.tensor([depths], dtype=F64).reshape(1, n),
        radii=torch.full((1, n, 2), 100, dtype=torch.int32),
    )


def _random_scene(n: int, n_cams: int = 2, seed: int = 0, dtype=F64):
    """Gaussians 3-6 units in front of slightly shifted cameras, small enough that nothing is clamped."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.cat(
        [(torch.rand(n, 2, generator=gen) - 0.5) * 2.0, 3.0 + 3.0 * torch.rand(n, 1, generator=gen)], dim=1
    )
    quats = torch.randn(n, 4, generator=gen)
    scales = 0.02 + 0.1 * torch.rand(n, 3, generator=gen)
    opacities = 0.2 + 0.7 * torch.rand(n, generator=gen)
    T_cam_world = torch.eye(4)[None].repeat(n_cams, 1, 1)
    T_cam_world[:, :3, 3] = 0.1 * torch.randn(n_cams, 3, generator=gen)
    Ks = torch.tensor([[100.0, 0.0, 32.0], [0.0, 110.0, 24.0], [0.0, 0.0, 1.0]])[None].repeat(n_cams, 1, 1)
    covars = ref.quat_scale_to_covar(quats.to(dtype), scales.to(dtype))
    return means.to(dtype), covars, opacities.to(dtype), T_cam_world.to(dtype), Ks.to(dtype)


# --------------------------------------------------------------------------------------------- project -----


def test_gaussian_straight_ahead_projects_to_principal_point_with_hand_computed_conic():
    # J = [[fx/z, 0, 0], [0, fy/z, 0]] = 20 I; Σ2d = 400 * 0.01 I = 4 I; Σ' = 4.3 I.
    means2d, conics, depths, radii, opacities = _project_one(
        [0, 0, 5], [[0.01, 0, 0], [0, 0.01, 0], [0, 0, 0.01]], 0.5
    )
    torch.testing.assert_close(means2d, torch.tensor([[[32.0, 24.0]]], dtype=F64))
    torch.testing.assert_close(conics, torch.tensor([[[1 / 4.3, 0.0, 1 / 4.3]]], dtype=F64))
    torch.testing.assert_close(depths, torch.tensor([[5.0]], dtype=F64))
    assert _extent(0.5, 4.3) == 7
    assert radii.tolist() == [[[7, 7]]]
    assert radii.dtype == torch.int32
    torch.testing.assert_close(opacities, torch.tensor([[0.5]], dtype=F64))


def test_off_axis_gaussian_conic_includes_the_depth_column_of_the_jacobian():
    # x/z = 0.2: J = [[20, 0, -4], [0, 20, 0]]. Σ2d = [[400*0.04 + 16*0.09, 20*20*0.01], [., 400*0.01]].
    covar = [[0.04, 0.01, 0.0], [0.01, 0.01, 0.0], [0.0, 0.0, 0.09]]
    means2d, conics, _, radii, _ = _project_one([1, 0, 5], covar, 0.8)
    a, b, c = 17.44 + 0.3, 4.0, 4.0 + 0.3
    det = a * c - b * b
    torch.testing.assert_close(means2d, torch.tensor([[[52.0, 24.0]]], dtype=F64))
    torch.testing.assert_close(conics, torch.tensor([[[c / det, -b / det, a / det]]], dtype=F64))
    assert radii.tolist() == [[[_extent(0.8, a), _extent(0.8, c)]]]


def test_jacobian_clamps_x_over_z_to_the_guard_band():
    # x/z = 0.5 > lim_x+ = (64 - 32)/100 + 0.3 * 0.32 = 0.416, so tx = 5 * 0.416 = 2.08 and J[0, 2] = -8.32;
    # the mean itself is not clamped.
    means2d, conics, _, radii, _ = _project_one([2.5, 0, 5], [[0.25, 0, 0], [0, 0.25, 0], [0, 0, 0.25]], 0.9)
    a = 0.25 * (20.0**2 + 8.32**2) + 0.3
    c = 0.25 * 20.0**2 + 0.3
    torch.testing.assert_close(means2d, torch.tensor([[[82.0, 24.0]]], dtype=F64))
    torch.testing.assert_close(conics, torch.tensor([[[1 / a, 0.0, 1 / c]]], dtype=F64))
    assert radii.tolist() == [[[_extent(0.9, a), _extent(0.9, c)]]]  # 82 - 36 < 64: still on screen


def test_camera_pose_is_applied_before_projection():
    means, covars, opacities, _, Ks = _random_scene(6, n_cams=1)
    angle = 0.3
    R = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]], dtype=F64
    )
    t = torch.tensor([0.2, -0.1, 0.5], dtype=F64)
    T_cam_world = torch.eye(4, dtype=F64)
    T_cam_world[:3, :3], T_cam_world[:3, 3] = R, t
    posed = ref.project(means, covars, opacities, T_cam_world[None], Ks, WIDTH, HEIGHT)

    covars_cam = ref._pack_symmetric(R @ ref._unpack_symmetric(covars) @ R.T)
    identity = torch.eye(4, dtype=F64)[None]
    in_camera = ref.project(means @ R.T + t, covars_cam, opacities, identity, Ks, WIDTH, HEIGHT)
    for got, expected in zip(posed, in_camera, strict=True):
        torch.testing.assert_close(got, expected)


def test_antialiased_mode_scales_opacity_by_sqrt_of_the_determinant_ratio():
    covar = [[0.01, 0, 0], [0, 0.01, 0], [0, 0, 0.01]]
    plain = _project_one([0, 0, 5], covar, 0.5)
    antialiased = _project_one([0, 0, 5], covar, 0.5, antialiased=True)
    # det Σ2d / det Σ' = 16 / 4.3².
    torch.testing.assert_close(antialiased[4], torch.tensor([[0.5 * 4 / 4.3]], dtype=F64))
    torch.testing.assert_close(antialiased[1], plain[1])
    assert antialiased[3].tolist() == [[[_extent(0.5 * 4 / 4.3, 4.3)] * 2]]


def _culling_scene():
    """Gaussian 0 is visible; 1 behind the camera, 2 closer than near, 3 beyond far, 4 off-screen, 5 fainter
    than 1/255, 6 exactly at the camera centre."""
    means = torch.tensor(
        [[0, 0, 5], [0, 0, -5], [0, 0, 0.005], [0, 0, 200], [20, 0, 5], [0, 0, 5], [0, 0, 0]], dtype=F64
    )
    covars = torch.tensor([_packed([[0.01, 0, 0], [0, 0.01, 0], [0, 0, 0.01]])] * 7, dtype=F64)
    opacities = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.9 / 255, 0.5], dtype=F64)
    return means, covars, opacities


def test_gaussians_behind_camera_too_near_beyond_far_off_screen_or_faint_are_culled_with_zero_outputs():
    means, covars, opacities = _culling_scene()
    T_cam_world, Ks = _camera()
    means2d, conics, depths, radii, opacities_out = ref.project(
        means, covars, opacities, T_cam_world, Ks, WIDTH, HEIGHT, far=100.0
    )
    assert radii[0, 0].tolist() == [7, 7]
    assert (radii[0, 1:] == 0).all()
    for output in (means2d, conics, depths, opacities_out):
        assert (output[0, 1:] == 0).all()
        assert (output[0, 0] != 0).any()


def test_depth_exactly_at_near_or_far_is_kept():
    means = torch.tensor([[0, 0, 1.0], [0, 0, 10.0]], dtype=F64)
    covars = torch.tensor([_packed([[0.01, 0, 0], [0, 0.01, 0], [0, 0, 0.01]])] * 2, dtype=F64)
    T_cam_world, Ks = _camera()
    *_, radii, _ = ref.project(
        means, covars, torch.full((2,), 0.5, dtype=F64), T_cam_world, Ks, WIDTH, HEIGHT, near=1.0, far=10.0
    )
    assert (radii > 0).all()


def test_culled_gaussians_receive_zero_and_finite_gradients():
    means, covars, opacities = _culling_scene()
    T_cam_world, Ks = _camera()
    inputs = [x.clone().requires_grad_() for x in (means, covars, opacities, T_cam_world)]
    outputs = ref.project(*inputs[:4], Ks, WIDTH, HEIGHT, far=100.0, antialiased=True)
    gen = torch.Generator().manual_seed(0)
    loss = sum(
        (out * torch.randn(out.shape, generator=gen, dtype=F64)).sum()
        for i, out in enumerate(outputs)
        if i != 3
    )
    v_means, v_covars, v_opacities, v_T_cam_world = torch.autograd.grad(loss, inputs)
    for grad in (v_means, v_covars, v_opacities, v_T_cam_world):
        assert torch.isfinite(grad).all()
    for grad in (v_means, v_covars, v_opacities):
        assert (grad[1:] == 0).all()
        assert (grad[0] != 0).any()


def test_radius_bounds_the_ellipse_where_alpha_reaches_one_over_255():
    means, covars, opacities, T_cam_world, Ks = _random_scene(8, n_cams=1, seed=3)
    _, conics, _, radii, opacities_out = ref.project(means, covars, opacities, T_cam_world, Ks, WIDTH, HEIGHT)
    assert (radii > 0).all()
    a, b, c = conics[0].unbind(-1)
    det = a * c - b * b
    cov_xx, cov_xy, cov_yy = c / det, -b / det, a / det  # Σ' = inverse(conic)
    d = torch.sqrt(2 * torch.log(255 * opacities_out[0]))
    # The ellipse's rightmost and lowest points: Σ' e_i d / sqrt(Σ'_ii).
    for offset, variance, radius in (
        (torch.stack([cov_xx, cov_xy], -1), cov_xx, radii[0, :, 0]),
        (torch.stack([cov_xy, cov_yy], -1), cov_yy, radii[0, :, 1]),
    ):
        offset = offset * (d / variance.sqrt())[:, None]
        sigma = 0.5 * (a * offset[:, 0] ** 2 + c * offset[:, 1] ** 2) + b * offset[:, 0] * offset[:, 1]
        alpha = opacities_out[0] * torch.exp(-sigma)
        torch.testing.assert_close(alpha, torch.full_like(alpha, 1 / 255))
        extent = d * variance.sqrt()
        assert (extent <= radius).all() and (radius < extent + 1).all()


@pytest.mark.parametrize("antialiased", [False, True])
def test_project_matches_gsplat_torch_impl_where_nothing_is_clamped(antialiased):
    means, covars, opacities, T_cam_world, Ks = _random_scene(40)
    means2d, conics, depths, radii, opacities_out = ref.project(
        means, covars, opacities, T_cam_world, Ks, WIDTH, HEIGHT, antialiased=antialiased
    )
    assert (radii > 0).all()
    _, g_means2d, g_depths, g_conics, g_compensations = gsplat_torch._fully_fused_projection(
        means, ref._unpack_symmetric(covars), T_cam_world, Ks, WIDTH, HEIGHT, calc_compensations=antialiased
    )
    torch.testing.assert_close(means2d, g_means2d)
    torch.testing.assert_close(conics, g_conics)
    torch.testing.assert_close(depths, g_depths)
    expected_opacities = opacities * g_compensations if antialiased else opacities.expand_as(opacities_out)
    torch.testing.assert_close(opacities_out, expected_opacities)


# --------------------------------------------------------------------------------- quat_scale_to_covar -----


def test_identity_rotation_gives_diagonal_covariance_of_squared_scales():
    covars = ref.quat_scale_to_covar(
        torch.tensor([[1.0, 0, 0, 0]], dtype=F64), torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    )
    torch.testing.assert_close(covars, torch.tensor([[1.0, 0, 0, 4.0, 0, 9.0]], dtype=F64))


def test_quarter_turn_about_z_swaps_x_and_y_variances():
    quats = torch.tensor([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]], dtype=F64)
    covars = ref.quat_scale_to_covar(quats, torch.tensor([[1.0, 2.0, 3.0]], dtype=F64))
    torch.testing.assert_close(covars, torch.tensor([[4.0, 0, 0, 1.0, 0, 9.0]], dtype=F64))


def test_quaternion_length_and_sign_do_not_change_covariance():
    gen = torch.Generator().manual_seed(1)
    quats = torch.randn(5, 4, generator=gen, dtype=F64)
    scales = torch.rand(5, 3, generator=gen, dtype=F64)
    expected = ref.quat_scale_to_covar(quats, scales)
    torch.testing.assert_close(ref.quat_scale_to_covar(-3.0 * quats, scales), expected)


def test_covariance_matches_gsplat_torch_impl():
    gen = torch.Generator().manual_seed(2)
    quats = torch.randn(20, 4, generator=gen, dtype=F64)
    scales = torch.rand(20, 3, generator=gen, dtype=F64)
    expected, _ = gsplat_torch._quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=True)
    torch.testing.assert_close(ref.quat_scale_to_covar(quats, scales), expected)


# --------------------------------------------------------------------------------------------- eval_sh -----


def _sh_basis_values(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """[C, N, (degree + 1)²] basis values, read off eval_sh with identity coefficients."""
    k = (degree + 1) ** 2
    coeffs = torch.eye(k, dtype=dirs.dtype).expand(dirs.shape[1], k, k)
    return ref.eval_sh(degree, dirs, coeffs)


def test_degree_zero_is_c0_times_the_dc_coefficient():
    coeffs = torch.randn(4, 1, 3, dtype=F64)
    colors = ref.eval_sh(0, torch.randn(2, 4, 3, dtype=F64), coeffs)
    torch.testing.assert_close(colors, (0.28209479177387814 * coeffs[:, 0]).expand(2, 4, 3))


def test_direction_length_does_not_change_colour():
    dirs = torch.randn(2, 5, 3, dtype=F64)
    coeffs = torch.randn(5, 16, 3, dtype=F64)
    torch.testing.assert_close(ref.eval_sh(3, 7.5 * dirs, coeffs), ref.eval_sh(3, dirs, coeffs))


def test_each_band_has_rotation_invariant_energy():
    # Addition theorem: Σ_m Y_lm(d)² = (2l + 1) / 4π for every unit direction d.
    basis = _sh_basis_values(3, torch.randn(1, 200, 3, dtype=F64))
    for band in range(4):
        energy = (basis[..., band**2 : (band + 1) ** 2] ** 2).sum(-1)
        torch.testing.assert_close(energy, torch.full_like(energy, (2 * band + 1) / (4 * math.pi)))


def test_degree_one_colour_is_unchanged_when_directions_and_coefficients_rotate_together():
    # Band 1 is C1 (-y, z, -x): colour = C1 v·d with v = (-k3, -k1, k2), so rotating d and v by R together
    # changes nothing.
    gen = torch.Generator().manual_seed(4)
    R = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64)).Q
    dirs = torch.randn(1, 6, 3, generator=gen, dtype=F64)
    coeffs = torch.randn(6, 4, 2, generator=gen, dtype=F64)
    v = torch.stack([-coeffs[:, 3], -coeffs[:, 1], coeffs[:, 2]], dim=1)  # [N, 3, D]
    v_rotated = torch.einsum("ij,njd->nid", R, v)
    rotated = torch.stack([coeffs[:, 0], -v_rotated[:, 1], v_rotated[:, 2], -v_rotated[:, 0]], dim=1)
    torch.testing.assert_close(ref.eval_sh(1, dirs @ R.T, rotated), ref.eval_sh(1, dirs, coeffs))


def test_coefficients_beyond_the_degree_are_ignored():
    dirs = torch.randn(1, 3, 3, dtype=F64)
    coeffs = torch.randn(3, 16, 3, dtype=F64)
    torch.testing.assert_close(ref.eval_sh(1, dirs, coeffs), ref.eval_sh(1, dirs, coeffs[:, :4]))
    with pytest.raises(ValueError):
        ref.eval_sh(2, dirs, coeffs[:, :4])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_gsplat_torch_impl(degree):
    gen = torch.Generator().manual_seed(degree)
    dirs = torch.randn(2, 30, 3, generator=gen, dtype=F64)
    coeffs = torch.randn(30, 16, 3, generator=gen, dtype=F64)
    expected = gsplat_torch._spherical_harmonics(degree, dirs, coeffs.expand(2, 30, 16, 3))
    torch.testing.assert_close(ref.eval_sh(degree, dirs, coeffs), expected)


# ------------------------------------------------------------------------------------- intersect_tiles -----


def _float_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def test_gaussian_covers_exactly_the_tiles_of_its_box():
    # 64x48 px: 4x3 tiles of 16 px, so tile ids need 4 bits. Camera 0 draws Gaussian 0 over x, y in [15, 25]
    # (tiles x 0..1, y 0..1); camera 1 draws Gaussian 1 over [59, 61] x [39, 41] (tile (3, 2) = id 11).
    means2d = torch.tensor([[[20.0, 20.0], [0.0, 0.0]], [[0.0, 0.0], [60.0, 40.0]]], dtype=F64)
    radii = torch.tensor([[[5, 5], [0, 0]], [[0, 0], [1, 1]]], dtype=torch.int32)
    depths = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=F64)
    isect_ids, flatten_ids, tile_offsets = ref.intersect_tiles(means2d, radii, depths, WIDTH, HEIGHT)

    two, three = _float_bits(2.0), _float_bits(3.0)
    assert isect_ids.tolist() == [t << 32 | two for t in (0, 1, 4, 5)] + [1 << 36 | 11 << 32 | three]
    assert flatten_ids.tolist() == [0, 0, 0, 0, 3]
    assert tile_offsets.tolist() == [
        [[0, 1, 2, 2], [2, 3, 4, 4], [4, 4, 4, 4]],
        [[4, 4, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4]],
    ]
    assert (isect_ids.dtype, flatten_ids.dtype, tile_offsets.dtype) == (torch.int64, torch.int32, torch.int32)


def test_tile_box_is_clamped_to_the_grid():
    means2d = torch.tensor([[[62.0, 2.0]]], dtype=F64)  # box [42, 82) x [-18, 22): tiles x 2..3, y 0..1
    isect_ids, _, _ = ref.intersect_tiles(
        means2d, torch.tensor([[[20, 20]]], dtype=torch.int32), torch.ones(1, 1, dtype=F64), WIDTH, HEIGHT
    )
    assert sorted({key >> 32 for key in isect_ids.tolist()}) == [2, 3, 6, 7]


def test_equal_depths_keep_ascending_gaussian_order():
    n = 5
    means2d = torch.full((1, n, 2), 20.0, dtype=F64)
    radii = torch.full((1, n, 2), 10, dtype=torch.int32)
    depths = torch.tensor([[2.0, 1.0, 2.0, 1.0, 2.0]], dtype=F64)
    _, flatten_ids, tile_offsets = ref.intersect_tiles(means2d, radii, depths, WIDTH, HEIGHT)
    assert flatten_ids[tile_offsets[0, 0, 0] : tile_offsets[0, 0, 1]].tolist() == [1, 3, 0, 2, 4]


def test_tile_offsets_delimit_runs_of_sorted_keys_listing_every_covering_gaussian():
    means, covars, opacities, T_cam_world, Ks = _random_scene(30, seed=5)
    means2d, _, depths, radii, _ = ref.project(means, covars, opacities, T_cam_world, Ks, WIDTH, HEIGHT)
    isect_ids, flatten_ids, tile_offsets = ref.intersect_tiles(means2d, radii, depths, WIDTH, HEIGHT)
    assert (isect_ids[1:] >= isect_ids[:-1]).all()
    _, tiles_h, tiles_w = tile_offsets.shape
    N = means.shape[0]
    ends = torch.cat([tile_offsets.flatten()[1:], torch.tensor([len(isect_ids)])])
    for run, (start, end) in enumerate(zip(tile_offsets.flatten().tolist(), ends.tolist(), strict=True)):
        cam, tile = divmod(run, tiles_w * tiles_h)
        ty, tx = divmod(tile, tiles_w)
        keys, ids = isect_ids[start:end], flatten_ids[start:end].long()
        assert ((keys >> 36) == cam).all() and (((keys >> 32) & 0xF) == tile).all()
        assert (ids // N == cam).all()
        torch.testing.assert_close(depths.flatten()[ids].float().view(torch.int32).long(), keys & 0xFFFFFFFF)
        lo = torch.floor((means2d[cam] - radii[cam]) / 16)
        hi = torch.ceil((means2d[cam] + radii[cam]) / 16)
        covering = (
            (radii[cam] > 0).all(-1) & (lo[:, 0] <= tx) & (tx < hi[:, 0]) & (lo[:, 1] <= ty) & (ty < hi[:, 1])
        )
        assert sorted((ids % N).tolist()) == covering.nonzero()[:, 0].tolist()


def test_intersections_match_gsplat_torch_impl():
    # 60x40 px = 4x3 tiles: a grid that is not a power of two, where gsplat's tile bits agree with ours.
    means, covars, opacities, T_cam_world, Ks = _random_scene(12, n_cams=1, seed=6)
    means2d, _, depths, radii, _ = ref.project(means, covars, opacities, T_cam_world, Ks, 60, 40)
    isect_ids, flatten_ids, tile_offsets = ref.intersect_tiles(means2d, radii, depths, 60, 40)
    _, g_isect_ids, g_flatten_ids = gsplat_torch._isect_tiles(means2d, radii, depths, 16, 4, 3)
    assert isect_ids.tolist() == g_isect_ids.tolist()
    assert flatten_ids.tolist() == g_flatten_ids.tolist()  # random depths: no ties to break
    assert tile_offsets.tolist() == gsplat_torch._isect_offset_encode(g_isect_ids, 1, 4, 3).tolist()


# -------------------------------------------------------------------------------------------- rasterize -----


def test_single_gaussian_at_pixel_centre_has_alpha_equal_to_opacity():
    scene = _splats([5.5, 4.5], [0.5, 0.1, 0.3], [0.6], [0.2, 0.4, 0.8])
    background = torch.tensor([[0.1, 0.1, 0.1]], dtype=F64)
    colors, alphas, median_ids = ref.rasterize(**scene, width=12, height=10, background=background)
    assert alphas[0, 4, 5, 0].item() == pytest.approx(0.6, abs=1e-15)
    expected = 0.6 * torch.tensor([0.2, 0.4, 0.8], dtype=F64) + 0.4 * background[0]
    torch.testing.assert_close(colors[0, 4, 5], expected)
    assert median_ids[0, 4, 5].item() == 0  # T goes 1 -> 0.4 across 0.5


def test_pixel_centres_are_at_half_integer_coordinates():
    # A Gaussian on the corner shared by pixels (2, 1), (3, 1), (2, 2), (3, 2) is (0.5, 0.5) px from all four
    # centres.
    scene = _splats([3.0, 2.0], [1.0, 0.0, 1.0], [0.8], [1.0])
    _, alphas, _ = ref.rasterize(**scene, width=6, height=4)
    expected = 0.8 * math.exp(-0.25)
    torch.testing.assert_close(alphas[0, 1:3, 2:4, 0], torch.full((2, 2), expected, dtype=F64))
    assert alphas[0, 1:3, 2:4, 0].max() == alphas.max()


def test_two_overlapping_gaussians_composite_in_depth_order_regardless_of_input_order():
    red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    near_first = _splats([2.5, 2.5, 2.5, 2.5], [0.5, 0, 0.5] * 2, [0.5, 0.5], red + green, depths=[1.0, 2.0])
    far_first = _splats([2.5, 2.5, 2.5, 2.5], [0.5, 0, 0.5] * 2, [0.5, 0.5], green + red, depths=[2.0, 1.0])
    colors, alphas, median_ids = ref.rasterize(**near_first, width=5, height=5)
    swapped_colors, swapped_alphas, swapped_median_ids = ref.rasterize(**far_first, width=5, height=5)
    torch.testing.assert_close(colors[0, 2, 2], torch.tensor([0.5, 0.25, 0.0], dtype=F64))
    assert alphas[0, 2, 2, 0].item() == pytest.approx(0.75)
    torch.testing.assert_close(swapped_colors, colors)
    torch.testing.assert_close(swapped_alphas, alphas)
    # T goes 1 -> 0.5 at the near Gaussian: 0.5 >= T' counts as crossing.
    assert (median_ids[0, 2, 2].item(), swapped_median_ids[0, 2, 2].item()) == (0, 1)


def test_equal_depths_composite_in_index_order():
    scene = _splats([1.5, 1.5, 1.5, 1.5], [0.5, 0, 0.5] * 2, [0.5, 0.5], [1.0, 2.0], depths=[1.0, 1.0])
    colors, _, median_ids = ref.rasterize(**scene, width=3, height=3)
    assert colors[0, 1, 1, 0].item() == pytest.approx(0.5 * 1.0 + 0.25 * 2.0)
    assert median_ids[0, 1, 1].item() == 0


def test_alpha_is_clamped_at_0_99():
    scene = _splats([1.5, 1.5], [0.5, 0, 0.5], [1.0], [1.0])
    colors, alphas, _ = ref.rasterize(**scene, width=3, height=3)
    assert alphas[0, 1, 1, 0].item() == pytest.approx(0.99)
    assert colors[0, 1, 1, 0].item() == pytest.approx(0.99)


def test_early_termination_excludes_the_stopping_gaussian_and_all_later_ones():
    # T: 1 -> 0.01 -> 2e-4 (kept) -> 2e-5 <= 1e-4 (third stops, excluded); the fourth would leave T' = 1.8e-4
    # on its own but comes after the stop.
    scene = _splats([1.5, 1.5] * 4, [0.5, 0, 0.5] * 4, [0.99, 0.98, 0.9, 0.1], [1.0, 2.0, 100.0, 100.0])
    background = torch.tensor([[5.0]], dtype=F64)
    colors, alphas, _ = ref.rasterize(**scene, width=3, height=3, background=background)
    T = 0.01 * 0.02
    assert colors[0, 1, 1, 0].item() == pytest.approx(0.99 * 1.0 + 0.01 * 0.98 * 2.0 + T * 5.0)
    assert alphas[0, 1, 1, 0].item() == pytest.approx(1 - T)


def test_median_id_is_the_gaussian_where_transmittance_crosses_one_half():
    # T: 1 -> 0.7 -> 0.49 at the centre pixel; in the corners alpha is too small to ever reach 0.5.
    scene = _splats([1.5, 1.5] * 3, [2.0, 0, 2.0] * 3, [0.3] * 3, [1.0] * 3, depths=[3.0, 1.0, 2.0])
    _, alphas, median_ids = ref.rasterize(**scene, width=3, height=3)
    assert median_ids[0, 1, 1].item() == 2  # depth order is 1, 2, 0
    assert (median_ids[0, 0, 0].item(), alphas[0, 0, 0, 0].item() < 0.5) == (-1, True)
    assert median_ids.dtype == torch.int64


def test_median_ids_are_flattened_over_cameras():
    scene = _splats([1.5, 1.5] * 2, [2.0, 0, 2.0] * 2, [0.2, 0.9], [1.0] * 2)
    two_cameras = {key: torch.cat([value, value.flip(1)]) for key, value in scene.items()}
    _, _, median_ids = ref.rasterize(**two_cameras, width=3, height=3)
    # Camera 0 crosses T = 0.5 at its Gaussian 1; camera 1 (flipped) at its Gaussian 0, flat id 1 * 2 + 0.
    assert median_ids[:, 1, 1].tolist() == [1, 2]


def test_empty_scene_renders_the_background():
    background = torch.tensor([[0.3, 0.6]], dtype=F64)
    empty = dict(
        means2d=torch.zeros(1, 0, 2, dtype=F64),
        conics=torch.zeros(1, 0, 3, dtype=F64),
        colors=torch.zeros(1, 0, 2, dtype=F64),
        opacities=torch.zeros(1, 0, dtype=F64),
        depths=torch.zeros(1, 0, dtype=F64),
        radii=torch.zeros(1, 0, 2, dtype=torch.int32),
    )
    culled = _splats([2.5, 2.5], [0.5, 0, 0.5], [0.9], [1.0, 1.0])
    culled["radii"].zero_()
    for scene in (empty, culled):
        colors, alphas, median_ids = ref.rasterize(**scene, width=5, height=4, background=background)
        torch.testing.assert_close(colors, background.reshape(1, 1, 1, 2).expand(1, 4, 5, 2))
        assert (alphas == 0).all() and (median_ids == -1).all()


def test_contributions_below_one_over_255_are_skipped_or_ramped_in_smooth_cutoff_mode():
    opacities = [0.9 / 255, 1.5 / 255, 0.5]
    ramp_at_half = 0.5  # s(0.5) = 3/4 - 2/8
    for opacity, hard, smooth in zip(
        opacities, [0.0, 1.5 / 255, 0.5], [0.0, 1.5 / 255 * ramp_at_half, 0.5], strict=True
    ):
        scene = _splats([1.5, 1.5], [1.0, 0, 1.0], [opacity], [1.0])
        _, alphas, _ = ref.rasterize(**scene, width=3, height=3)
        _, smooth_alphas, _ = ref.rasterize(**scene, width=3, height=3, smooth_cutoff=True)
        assert alphas[0, 1, 1, 0].item() == pytest.approx(hard, abs=1e-15)
        assert smooth_alphas[0, 1, 1, 0].item() == pytest.approx(smooth, abs=1e-15)


def test_negative_sigma_is_skipped():
    # Indefinite conic [[1, 2], [2, 1]]: along d = (1, -1) sigma = 1 - 2 < 0; along d = (1, 1) sigma = 3.
    scene = _splats([1.5, 1.5], [1.0, 2.0, 1.0], [0.9], [1.0])
    _, alphas, _ = ref.rasterize(**scene, width=3, height=3)
    assert alphas[0, 0, 2, 0].item() == 0.0
    assert alphas[0, 0, 0, 0].item() == pytest.approx(0.9 * math.exp(-3.0))


def test_gaussians_with_a_zero_radius_are_not_drawn():
    scene = _splats([1.5, 1.5] * 2, [0.5, 0, 0.5] * 2, [0.5, 0.5], [1.0, 1.0])
    scene["radii"][0, 1, 1] = 0
    _, alphas, _ = ref.rasterize(**scene, width=3, height=3)
    assert alphas[0, 1, 1, 0].item() == pytest.approx(0.5)


def _projected_scene(dtype=F64):
    means, covars, opacities, T_cam_world, Ks = _random_scene(25, seed=7, dtype=dtype)
    means2d, conics, depths, radii, opacities = ref.project(
        means, covars, opacities, T_cam_world, Ks, WIDTH, HEIGHT
    )
    colors = torch.rand(2, 25, 3, generator=torch.Generator().manual_seed(8)).to(dtype)
    background = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=dtype)
    return dict(
        means2d=means2d, conics=conics, colors=colors, opacities=opacities, depths=depths, radii=radii
    ), background


def test_chunked_rendering_matches_one_chunk_with_the_same_gradients(monkeypatch):
    scene, background = _projected_scene()
    scene = {k: v.requires_grad_() if v.is_floating_point() else v for k, v in scene.items()}
    differentiable = [scene["means2d"], scene["conics"], scene["colors"], scene["opacities"]]
    results = []
    width, height = 40, 30  # the top-left of the scene: some Gaussians cut by the border
    for pixels_per_chunk in (width * height, 500):  # one chunk, then three per camera (the last one partial)
        monkeypatch.setattr(ref, "_pixels_per_chunk", lambda num_gaussians, channels, p=pixels_per_chunk: p)
        colors, alphas, median_ids = ref.rasterize(**scene, width=width, height=height, background=background)
        grads = torch.autograd.grad((colors * colors).sum() + alphas.sum(), differentiable)
        results.append((colors, alphas, median_ids, *grads))
    for one, chunked in zip(*results, strict=True):
        torch.testing.assert_close(chunked, one)


def test_float32_render_matches_float64():
    scene64, background64 = _projected_scene(F64)
    scene32, background32 = _projected_scene(torch.float32)
    colors32, alphas32, _ = ref.rasterize(**scene32, width=WIDTH, height=HEIGHT, background=background32)
    colors64, alphas64, _ = ref.rasterize(**scene64, width=WIDTH, height=HEIGHT, background=background64)
    assert colors32.dtype == torch.float32
    torch.testing.assert_close(colors32, colors64.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alphas32, alphas64.float(), atol=1e-4, rtol=1e-4)


def test_every_visible_contribution_lies_in_a_tile_listed_for_its_gaussian():
    # The property that makes the dense reference and the tile kernels agree: alpha >= 1/255 only inside the
    # projected radii, hence only in tiles that intersect_tiles lists for that Gaussian.
    scene, _ = _projected_scene()
    isect_ids, flatten_ids, tile_offsets = ref.intersect_tiles(
        scene["means2d"], scene["radii"], scene["depths"], WIDTH, HEIGHT
    )
    v, u = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    centres = torch.stack([u, v], -1).to(F64) + 0.5  # [H, W, 2]
    tile_bits = ref._tile_bits(tile_offsets[0].numel())
    listed = {
        (key >> (32 + tile_bits), (key >> 32) & ((1 << tile_bits) - 1), flat % 25)
        for key, flat in zip(isect_ids.tolist(), flatten_ids.tolist(), strict=True)
    }
    checked = 0
    for cam in range(2):
        d = scene["means2d"][cam][:, None, None] - centres  # [N, H, W, 2]
        a, b, c = scene["conics"][cam].unbind(-1)
        sigma = 0.5 * (a[:, None, None] * d[..., 0] ** 2 + c[:, None, None] * d[..., 1] ** 2)
        sigma = sigma + b[:, None, None] * d[..., 0] * d[..., 1]
        alpha = scene["opacities"][cam][:, None, None] * torch.exp(-sigma)
        for n, y, x in (alpha >= 1 / 255).nonzero().tolist():
            assert (cam, (y // 16) * tile_offsets.shape[2] + x // 16, n) in listed
            checked += 1
    assert checked > 100


def test_reference_gives_the_same_render_on_every_device(device):
    scene, background = _projected_scene(torch.float32)
    on_device = {key: value.to(device) for key, value in scene.items()}
    expected = ref.rasterize(**scene, width=WIDTH, height=HEIGHT, background=background)
    got = ref.rasterize(**on_device, width=WIDTH, height=HEIGHT, background=background.to(device))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-5)
    isect = ref.intersect_tiles(on_device["means2d"], on_device["radii"], on_device["depths"], WIDTH, HEIGHT)
    expected_isect = ref.intersect_tiles(scene["means2d"], scene["radii"], scene["depths"], WIDTH, HEIGHT)
    for a, b in zip(isect, expected_isect, strict=True):
        assert torch.equal(a.cpu(), b)
