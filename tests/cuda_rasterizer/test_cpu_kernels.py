"""The C++/OpenMP kernels (`backend="cpu"`) against the dense reference, forward and backward, plus float64
gradcheck of the CPU ops in smooth-cutoff mode.

Scenes are random but seeded: a cloud of Gaussians in front of C slightly different cameras, with some behind
the cameras and some off screen so culling is exercised, and enough overlap that alpha clamping, early
termination and median ids all occur.
"""

import functools
import math
from typing import NamedTuple

import pytest
import torch
from torch import Tensor

from cuda_rasterizer import ops, reference
from cuda_rasterizer.types import RasterSettings


class Scene(NamedTuple):
    means: Tensor  # [N, 3]
    covars: Tensor  # [N, 6]
    opacities: Tensor  # [N]
    T_cam_world: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]


def _rotation(axis_angle: Tensor) -> Tensor:
    """Rodrigues: [3] axis-angle -> [3, 3] rotation."""
    theta = axis_angle.norm()
    k = axis_angle / theta
    K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=axis_angle.dtype)
    return torch.eye(3, dtype=axis_angle.dtype) + theta.sin() * K + (1 - theta.cos()) * K @ K


def make_scene(
    n: int,
    cameras: int,
    width: int,
    height: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    spread: float = 1.0,
) -> Scene:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    # Cameras sit near z = -2 looking down +z, so camera depths are about 1.5 .. 5.5; every tenth Gaussian is
    # moved behind the cameras to exercise near-plane culling.
    means = torch.stack(
        [(rand(n) * 2 - 1) * spread, (rand(n) * 2 - 1) * spread * height / width, rand(n) * 4 - 0.5], dim=-1
    )
    means[::10, 2] = -3.0
    log_scales = math.log(0.02) + rand(n, 3) * math.log(0.25 / 0.02)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    covars = reference.quat_scale_to_covar(quats, log_scales.exp())
    opacities = 0.02 + 0.97 * rand(n)

    T = torch.eye(4, dtype=torch.float64).repeat(cameras, 1, 1)
    Ks = torch.zeros(cameras, 3, 3, dtype=torch.float64)
    for c in range(cameras):
        T[c, :3, :3] = _rotation(0.15 * (rand(3) * 2 - 1) + 1e-3)
        T[c, :3, 3] = torch.tensor([0.2 * (rand(1).item() - 0.5), 0.2 * (rand(1).item() - 0.5), 2.0])
        f = width * (0.9 + 0.2 * rand(1).item())
        Ks[c] = torch.tensor(
            [[f, 0, width / 2 + rand(1).item()], [0, f, height / 2 - rand(1).item()], [0, 0, 1]]
        )
    return Scene(*(x.to(dtype) for x in (means, covars, opacities, T, Ks)))


def settings(width: int, height: int, **kw) -> RasterSettings:
    return RasterSettings(width=width, height=height, **kw)


def assert_close(actual: Tensor, expected: Tensor, rtol: float, atol: float, what: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10)}
GRAD_TOL = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-9, 1e-9)}


# ------------------------------------------------------------------------------------ project -----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("antialiased", [False, True])
def test_project_matches_reference(dtype: torch.dtype, antialiased: bool) -> None:
    W, H = 97, 64
    scene = make_scene(400, 3, W, H, seed=1, dtype=dtype, spread=1.6)
    s = settings(W, H, antialiased=antialiased)
    cpu = ops.project(*scene, s, backend="cpu")
    ref = ops.project(*scene, s, backend="reference")
    # The culled set and integer radii agree exactly, also in float32 (no value sits within rounding of a
    # ceil in these scenes).
    assert torch.equal(cpu.radii, ref.radii)
    visible = (cpu.radii > 0).all(-1)
    assert 0.3 < visible.float().mean() < 0.95, "scene should both cull and keep Gaussians"
    rtol, atol = TOL[dtype]
    for name in ("means2d", "conics", "depths", "opacities"):
        a, b = getattr(cpu, name), getattr(ref, name)
        assert_close(a, b, rtol, atol * b.abs().max().item(), name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("antialiased", [False, True])
def test_project_gradients_match_reference(dtype: torch.dtype, antialiased: bool) -> None:
    W, H = 80, 60
    scene = make_scene(300, 2, W, H, seed=2, dtype=dtype, spread=1.6)
    s = settings(W, H, antialiased=antialiased)
    grads = {}
    for backend in ("cpu", "reference"):
        inputs = [x.clone().requires_grad_() for x in scene]
        out = ops.project(*inputs, s, backend=backend)
        gen = torch.Generator().manual_seed(3)
        loss = sum(
            (getattr(out, k) * torch.randn(getattr(out, k).shape, generator=gen, dtype=dtype)).sum()
            for k in ("means2d", "conics", "depths", "opacities")
        )
        grads[backend] = torch.autograd.grad(loss, inputs[:4])
    rtol, atol = GRAD_TOL[dtype]
    for name, a, b in zip(
        ("means", "covars", "opacities", "T_cam_world"), grads["cpu"], grads["reference"], strict=True
    ):
        assert_close(a, b, rtol, atol * b.abs().max().item(), f"v_{name}")


def test_project_gradcheck_float64() -> None:
    W, H = 40, 30
    scene = make_scene(7, 2, W, H, seed=4, dtype=torch.float64, spread=0.6)
    # Gaussian 0 is moved sideways, past the Jacobian's guard band (x/z beyond 0.65 or so) but large enough to
    # stay visible, so the clamped branch of the Jacobian is checked too.
    scene.means[0] = torch.tensor([2.4, 0.0, 1.0], dtype=torch.float64)
    scene.covars[0] = torch.tensor([0.3, 0.05, 0.0, 0.2, 0.0, 0.25], dtype=torch.float64)
    for antialiased in (False, True):
        s = settings(W, H, antialiased=antialiased)
        radii = ops.project(*scene, s, backend="cpu").radii
        visible = (radii > 0).all(-1)
        assert visible[:, 0].all() and visible.sum() >= 10
        p = scene.T_cam_world[:, :3, :3] @ scene.means[0] + scene.T_cam_world[:, :3, 3]
        assert (p[:, 0] / p[:, 2] > (W - scene.Ks[:, 0, 2] + 0.15 * W) / scene.Ks[:, 0, 0]).all()

        def fn(*inputs: Tensor) -> tuple[Tensor, ...]:
            out = ops.project(*inputs, s, backend="cpu")  # noqa: B023
            return out.means2d, out.conics, out.depths, out.opacities

        inputs = [x.clone().requires_grad_(i < 4) for i, x in enumerate(scene)]
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------ eval_sh -----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_reference(dtype: torch.dtype, degree: int) -> None:
    g = torch.Generator().manual_seed(degree)
    C, N, K, D = 2, 200, 16, 3
    dirs = (torch.randn(C, N, 3, generator=g, dtype=torch.float64) * 3).to(dtype)
    coeffs = torch.randn(N, K, D, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(C, N, D, generator=g, dtype=torch.float64).to(dtype)
    results = {}
    for backend in ("cpu", "reference"):
        d, co = dirs.clone().requires_grad_(), coeffs.clone().requires_grad_()
        out = ops.eval_sh(degree, d, co, backend=backend)
        grads = torch.autograd.grad((out * v).sum(), [d, co], allow_unused=True, materialize_grads=True)
        results[backend] = (out, *grads)
    rtol, atol = GRAD_TOL[dtype]
    for name, a, b in zip(
        ("colors", "v_dirs", "v_coeffs"), results["cpu"], results["reference"], strict=True
    ):
        assert_close(a, b, rtol, atol, name)


def test_eval_sh_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coeffs = torch.randn(3, 16, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for degree in range(4):
        fn = functools.partial(ops.eval_sh, degree, backend="cpu")
        assert torch.autograd.gradcheck(fn, (dirs, coeffs))


# ---------------------------------------------------------------------------------- intersect -----


@pytest.mark.parametrize(("W", "H", "C"), [(16, 16, 1), (97, 64, 3), (200, 150, 2)])
def test_intersect_tiles_matches_reference(W: int, H: int, C: int) -> None:
    scene = make_scene(300, C, W, H, seed=W, spread=1.6)
    proj = ops.project(*scene, settings(W, H), backend="cpu")
    cpu = ops.intersect_tiles(proj.means2d, proj.radii, proj.depths, settings(W, H), backend="cpu")
    ref = ops.intersect_tiles(proj.means2d, proj.radii, proj.depths, settings(W, H), backend="reference")
    for name in ("isect_ids", "flatten_ids", "tile_offsets"):
        assert torch.equal(getattr(cpu, name), getattr(ref, name)), name


def test_intersect_tiles_keeps_gaussian_order_for_equal_depths() -> None:
    # Three Gaussians at the same depth covering the same tiles: the sort must be stable (ascending index).
    means2d = torch.tensor([[[20.0, 20.0], [21.0, 20.0], [19.0, 21.0]]])
    radii = torch.full((1, 3, 2), 10, dtype=torch.int32)
    depths = torch.full((1, 3), 2.5)
    out = ops.intersect_tiles(means2d, radii, depths, settings(48, 48), backend="cpu")
    assert out.flatten_ids.tolist() == [0, 1, 2] * 4
    assert out.tile_offsets.flatten().tolist() == [0, 3, 6, 6, 9, 12, 12, 12, 12]


def test_intersect_tiles_with_nothing_visible() -> None:
    out = ops.intersect_tiles(
        torch.zeros(2, 4, 2),
        torch.zeros(2, 4, 2, dtype=torch.int32),
        torch.ones(2, 4),
        settings(40, 20),
        backend="cpu",
    )
    assert out.isect_ids.numel() == 0 and out.flatten_ids.numel() == 0
    assert (out.tile_offsets == 0).all() and out.tile_offsets.shape == (2, 2, 3)


# ---------------------------------------------------------------------------------- rasterize -----


def projected_inputs(scene: Scene, W: int, H: int, D: int, seed: int, antialiased: bool = False):
    proj = ops.project(*scene, settings(W, H, antialiased=antialiased), backend="cpu")
    C, N = proj.depths.shape
    g = torch.Generator().manual_seed(seed)
    colors = torch.rand(C, N, D, generator=g, dtype=torch.float64).to(proj.means2d.dtype)
    background = torch.rand(C, D, generator=g, dtype=torch.float64).to(proj.means2d.dtype)
    return proj, colors, background


RASTER_CASES = [
    # (W, H, N, C, D, background, antialiased, smooth_cutoff)
    (32, 32, 60, 1, 3, False, False, False),
    (48, 32, 300, 2, 3, True, False, False),
    (40, 32, 300, 3, 4, True, True, False),
    (40, 30, 300, 2, 4, False, True, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("W", "H", "N", "C", "D", "with_bg", "antialiased", "smooth"), RASTER_CASES)
def test_rasterize_matches_reference(W, H, N, C, D, with_bg, antialiased, smooth, dtype) -> None:
    scene = make_scene(N, C, W, H, seed=N + C, dtype=dtype, spread=0.7)
    proj, colors, background = projected_inputs(scene, W, H, D, seed=D, antialiased=antialiased)
    bg = background if with_bg else None
    s = settings(W, H, smooth_cutoff=smooth)
    g = torch.Generator().manual_seed(5)
    v_colors = torch.randn(C, H, W, D, generator=g, dtype=torch.float64).to(dtype)
    v_alphas = torch.randn(C, H, W, 1, generator=g, dtype=torch.float64).to(dtype)

    results = {}
    for backend in ("cpu", "reference"):
        inputs = [x.clone().requires_grad_() for x in (proj.means2d, proj.conics, colors, proj.opacities)]
        bg_in = None if bg is None else bg.clone().requires_grad_()
        out = ops.rasterize(*inputs, proj.depths, proj.radii, s, background=bg_in, backend=backend)
        wrt = inputs + ([bg_in] if bg_in is not None else [])
        grads = torch.autograd.grad((out.colors * v_colors).sum() + (out.alphas * v_alphas).sum(), wrt)
        results[backend] = (out, grads)

    (out_cpu, g_cpu), (out_ref, g_ref) = results["cpu"], results["reference"]
    assert (out_ref.alphas < 1e-6).any(), "some pixels should see no Gaussian"
    if N >= 300:
        assert out_ref.alphas.max() > 0.9998, "some pixels should saturate (early termination)"
    rtol, atol = TOL[dtype]
    assert_close(out_cpu.colors, out_ref.colors, rtol, atol, "colors")
    assert_close(out_cpu.alphas, out_ref.alphas, rtol, atol, "alphas")
    median_match = (out_cpu.median_ids == out_ref.median_ids).double().mean().item()
    assert median_match == 1.0 if dtype == torch.float64 else median_match > 0.999
    assert (out_cpu.median_ids >= 0).any()

    names = ("means2d", "conics", "colors", "opacities", "background")
    rtol, atol = GRAD_TOL[dtype]
    for name, a, b in zip(names[: len(g_ref)], g_cpu, g_ref, strict=True):
        # Gradients scale with the number of pixels a Gaussian covers: compare relative to the largest one.
        assert_close(a, b, rtol, atol * b.abs().max().item(), f"v_{name}")


def _needles_over_a_wall(dtype: torch.dtype, seed: int = 7) -> tuple[Tensor, ...]:
    """Projected inputs [1, N, ...] of one 64x48 camera: 40 needles (12 px by 0.7 px at any angle) in front of and
    behind a wall of 80 nearly opaque discs, so that rows of a tile miss a needle's ellipse and whole chunks of
    pixels saturate before the Gaussians behind them."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    n_needle, n_disc = 40, 80
    angle = rand(n_needle) * math.pi
    rot = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], -1).reshape(-1, 2, 2)
    sd = torch.cat([torch.full((n_needle, 2), 0.7), torch.full((n_disc, 2), 12.0)]).double()
    sd[:n_needle, 0] = 12.0
    rot = torch.cat([rot, torch.eye(2, dtype=torch.float64).expand(n_disc, 2, 2)])
    covar = rot @ torch.diag_embed(sd**2) @ rot.transpose(-1, -2)
    inv = torch.linalg.inv(covar)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
    means2d = torch.stack([rand(n_needle + n_disc) * 64, rand(n_needle + n_disc) * 48], -1)
    opacities = torch.cat([0.3 + 0.6 * rand(n_needle), torch.full((n_disc,), 0.99, dtype=torch.float64)])
    # the box where alpha can reach 1/255 (sigma <= ln(255 opacity)), as `project` sizes it
    d2 = 2 * (255 * opacities).log()
    radii = (d2[:, None] * torch.stack([covar[:, 0, 0], covar[:, 1, 1]], -1)).sqrt().ceil().int()
    # needles at depths 1..5, the wall at 2..3: some needles in front of it, most behind
    depths = torch.cat([1 + 4 * rand(n_needle), 2 + rand(n_disc)])
    colors = rand(n_needle + n_disc, 3)
    return tuple(x[None].to(dtype) if x.is_floating_point() else x[None] for x in
                 (means2d, conics, colors, opacities, depths, radii))  # fmt: skip


def test_rasterize_matches_reference_for_needles_and_saturated_pixels() -> None:
    # The CPU kernel visits only the chunks of a tile row that a Gaussian's ellipse reaches, and skips chunks whose
    # pixels have all saturated (forward) or finished in front of it (backward): what it skips must be exactly
    # what contributes nothing. In float64, so that no pixel's saturation test flips by rounding between the two
    # implementations (in float32 one conic gradient here differs by 6% more than GRAD_TOL allows, with or
    # without the skipping).
    dtype = torch.float64
    means2d, conics, colors, opacities, depths, radii = _needles_over_a_wall(dtype)
    W, H = 64, 48
    s = settings(W, H)
    g = torch.Generator().manual_seed(2)
    v_colors = torch.randn(1, H, W, 3, generator=g, dtype=torch.float64).to(dtype)
    v_alphas = torch.randn(1, H, W, 1, generator=g, dtype=torch.float64).to(dtype)
    results = {}
    for backend in ("cpu", "reference"):
        inputs = [x.clone().requires_grad_() for x in (means2d, conics, colors, opacities)]
        out = ops.rasterize(*inputs, depths, radii, s, backend=backend)
        grads = torch.autograd.grad((out.colors * v_colors).sum() + (out.alphas * v_alphas).sum(), inputs)
        results[backend] = (out, grads)
    (out_cpu, g_cpu), (out_ref, g_ref) = results["cpu"], results["reference"]
    # transmittance under 1e-3 before the Gaussians behind: most such pixels stop at the next one
    assert (out_ref.alphas > 0.999).float().mean() > 0.2, "the wall should saturate whole chunks of pixels"
    rtol, atol = TOL[dtype]
    assert_close(out_cpu.colors, out_ref.colors, rtol, atol, "colors")
    assert_close(out_cpu.alphas, out_ref.alphas, rtol, atol, "alphas")
    rtol, atol = GRAD_TOL[dtype]
    for name, a, b in zip(("means2d", "conics", "colors", "opacities"), g_cpu, g_ref, strict=True):
        assert_close(a, b, rtol, atol * b.abs().max().item(), f"v_{name}")
    needles = slice(0, 40)
    assert (g_ref[3][0, needles] != 0).sum() > 10, "needles in front of the wall should get gradients"


def test_rasterize_absgrad_sums_absolute_pixel_gradients() -> None:
    # One Gaussian centred in the image: the per-pixel gradients of its mean cancel in the sum, their absolute
    # values (what densification reads) do not.
    W = H = 32
    means2d = torch.tensor([[[16.0, 16.0]]], requires_grad=True)
    conics = torch.tensor([[[0.05, 0.0, 0.05]]])
    colors = torch.ones(1, 1, 3)
    opacities = torch.tensor([[0.9]])
    radii = torch.tensor([[[16, 16]]], dtype=torch.int32)
    s = settings(W, H, absgrad=True)
    out = ops.rasterize(means2d, conics, colors, opacities, torch.ones(1, 1), radii, s, backend="cpu")
    out.colors.sum().backward()
    assert means2d.grad.abs().max() < 1e-3
    assert (means2d.absgrad > 1.0).all()  # type: ignore[attr-defined]


def test_rasterize_gradcheck_float64_smooth_cutoff() -> None:
    W, H = 18, 12  # two tiles wide, so Gaussians straddle a tile border
    scene = make_scene(10, 2, W, H, seed=11, dtype=torch.float64, spread=0.5)
    proj, colors, background = projected_inputs(scene, W, H, D=2, seed=3)
    s = settings(W, H, smooth_cutoff=True)
    isect = ops.intersect_tiles(proj.means2d, proj.radii, proj.depths, s, backend="cpu")

    def fn(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, bg: Tensor):
        out = ops.rasterize(
            means2d,
            conics,
            colors,
            opacities,
            proj.depths,
            proj.radii,
            s,
            background=bg,
            isect=isect,
            backend="cpu",
        )
        return out.colors, out.alphas

    inputs = [
        x.clone().requires_grad_() for x in (proj.means2d, proj.conics, colors, proj.opacities, background)
    ]
    # fast_mode checks random projections v^T J u instead of all ~1300 output rows (a minute on two cores).
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_render_pipeline_gradients_match_reference() -> None:
    # project -> rasterize end to end in float64: gradients reach means, covariances, opacities and cameras.
    W, H, C, N = 48, 40, 2, 150
    scene = make_scene(N, C, W, H, seed=21, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    colors = torch.rand(C, N, 3, generator=g, dtype=torch.float64)
    v = torch.randn(C, H, W, 3, generator=g, dtype=torch.float64)
    s = settings(W, H, antialiased=True)
    grads = {}
    for backend in ("cpu", "reference"):
        inputs = [x.clone().requires_grad_() for x in scene[:4]]
        proj = ops.project(*inputs, scene.Ks, s, backend=backend)
        out = ops.rasterize(
            proj.means2d, proj.conics, colors, proj.opacities, proj.depths, proj.radii, s, backend=backend
        )
        grads[backend] = torch.autograd.grad((out.colors * v).sum(), inputs)
    for name, a, b in zip(
        ("means", "covars", "opacities", "T_cam_world"), grads["cpu"], grads["reference"], strict=True
    ):
        assert_close(a, b, 1e-9, 1e-9 * b.abs().max().item(), f"v_{name}")
