"""`splat4d.strategy.ops` and the gsplat adapter: the torch stand-ins for gsplat's CUDA-only functions follow the
math (and the rasterizer), and gsplat's edits land in `Gaussians.params` with the optimizers in step."""

import math

import gsplat.strategy.ops as gsplat_ops
import pytest
import torch

import cuda_rasterizer as cr
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.render import render
from splat4d.strategy.gsplat_adapter import gsplat_view
from splat4d.strategy.ops import (
    binomial_table,
    compute_relocation,
    quat_scale_to_covar_preci,
    torch_ops_for_gsplat,
)


def _random_quats_scales(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g) * 2.0  # deliberately unnormalised
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5) * 0.1
    return quats, scales


def test_covariance_matches_rasterizer_covariance() -> None:
    quats, scales = _random_quats_scales(64)
    covars, precis = quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=True)
    assert precis is None
    torch.testing.assert_close(covars, cr.quat_scale_to_covar(quats, scales))


def test_precision_is_the_inverse_of_the_covariance() -> None:
    quats, scales = _random_quats_scales(64)
    covars, precis = quat_scale_to_covar_preci(quats.double(), scales.double())
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    torch.testing.assert_close(covars @ precis, eye)
    torch.testing.assert_close(covars, covars.transpose(1, 2))


def _eq9_double_sum(o: float, n: int) -> tuple[float, float]:
    """Relocated opacity and scale ratio straight from the paper's eq. 9, as written (two nested sums)."""
    o_new = 1.0 - (1.0 - o) ** (1.0 / n)
    denom = sum(
        math.comb(i - 1, k) * (-1) ** k * o_new ** (k + 1) / math.sqrt(k + 1)
        for i in range(1, n + 1)
        for k in range(i)
    )
    return o_new, o / denom


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 51])
def test_relocation_matches_the_nested_sums_of_eq9(n: int) -> None:
    opacities = torch.tensor([0.01, 0.3, 0.7, 0.95, 0.999])
    scales = torch.rand(5, 3) + 0.1
    new_opacities, new_scales = compute_relocation(
        opacities, scales, torch.full((5,), n, dtype=torch.int64), binomial_table()
    )
    for j, o in enumerate(opacities.tolist()):
        o_new, ratio = _eq9_double_sum(o, n)
        assert new_opacities[j].item() == pytest.approx(o_new, rel=1e-5)
        torch.testing.assert_close(new_scales[j], scales[j] * ratio, rtol=1e-4, atol=0)


def test_one_copy_is_the_original() -> None:
    opacities, scales = torch.tensor([0.2, 0.9]), torch.rand(2, 3)
    new_opacities, new_scales = compute_relocation(
        opacities, scales, torch.ones(2, dtype=torch.int64), binomial_table()
    )
    torch.testing.assert_close(new_opacities, opacities)
    torch.testing.assert_close(new_scales, scales)


@pytest.mark.parametrize(("o", "n"), [(0.3, 2), (0.7, 3), (0.95, 5), (0.5, 50)])
def test_relocated_copies_preserve_opacity_at_the_centre_and_its_integral_along_an_axis(
    o: float, n: int
) -> None:
    # Eq. 9's derivation: n stacked copies composite to 1 - (1 - o' g')^n, which equals o at the centre and
    # integrates (in 1D) to the same value as the original o g.
    s = 0.2
    new_o, new_s = compute_relocation(
        torch.tensor([o], dtype=torch.float64),
        torch.full((1, 3), s, dtype=torch.float64),
        torch.tensor([n]),
        binomial_table().double(),
    )
    o_new, s_new = new_o.item(), new_s[0, 0].item()
    assert 1.0 - (1.0 - o_new) ** n == pytest.approx(o, rel=1e-9)
    x = torch.linspace(-3.0, 3.0, 60001, dtype=torch.float64)
    original = o * torch.exp(-0.5 * (x / s) ** 2)
    copies = 1.0 - (1.0 - o_new * torch.exp(-0.5 * (x / s_new) ** 2)) ** n
    assert torch.trapezoid(copies, x).item() == pytest.approx(torch.trapezoid(original, x).item(), rel=1e-6)


def _blob(n: int, opacity: float, scale: float) -> Gaussians:
    """n identical isotropic white Gaussians at the origin."""
    return Gaussians(
        {
            "means": torch.zeros(n, 3),
            "log_scales": torch.full((n, 3), math.log(scale)),
            "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
            "opacity_logits": torch.full((n,), math.log(opacity / (1.0 - opacity))),
            "sh0": torch.full((n, 1, 3), 1.0),
            "shN": torch.zeros(n, 3, 3),
        }
    )


@pytest.mark.parametrize(("o", "n"), [(0.3, 2), (0.3, 4), (0.7, 2), (0.7, 4)])
def test_relocated_copies_render_like_the_original(o: float, n: int) -> None:
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    T_world_cam = torch.eye(4)
    T_world_cam[2, 3] = -3.0
    cameras = Cameras(T_world_cam[None], K[None], width=64, height=48)
    s = 0.2
    new_o, new_s = compute_relocation(
        torch.tensor([o]), torch.full((1, 3), s), torch.tensor([n]), binomial_table()
    )
    with torch.no_grad():
        original = render(_blob(1, o, s), cameras).alpha
        relocated = render(_blob(n, new_o.item(), new_s[0, 0].item()), cameras).alpha
        unscaled = render(_blob(n, new_o.item(), s), cameras).alpha
    assert relocated.max().item() == pytest.approx(original.max().item(), abs=5e-3)
    assert (relocated - original).abs().max() < 0.03
    # Eq. 9 is exact for 1D integrals, so in the image it is approximate, but it does much better than keeping
    # the scale.
    assert (relocated - original).abs().sum() < 0.7 * (unscaled - original).abs().sum()


def test_torch_ops_are_patched_into_gsplat_only_while_open() -> None:
    before = (gsplat_ops.quat_scale_to_covar_preci, gsplat_ops.compute_relocation)
    with torch_ops_for_gsplat():
        assert gsplat_ops.quat_scale_to_covar_preci is quat_scale_to_covar_preci
        assert gsplat_ops.compute_relocation is compute_relocation
    assert (gsplat_ops.quat_scale_to_covar_preci, gsplat_ops.compute_relocation) == before
    with torch_ops_for_gsplat(enabled=False):
        assert gsplat_ops.compute_relocation is before[1]


def _scene_with_optimizers(n: int = 20) -> tuple[Gaussians, dict[str, torch.optim.Optimizer]]:
    g = torch.Generator().manual_seed(0)
    gaussians = Gaussians.from_points(
        torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), sh_degree=1
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-2) for k, p in gaussians.params.items()}
    for p in gaussians.params.values():
        p.grad = torch.randn_like(p)
    for opt in optimizers.values():
        opt.step()
    return gaussians, optimizers


def test_gsplat_view_writes_replaced_parameters_back_under_our_names() -> None:
    gaussians, optimizers = _scene_with_optimizers(20)
    log_scales = gaussians.params["log_scales"].detach().clone()
    exp_avg = optimizers["log_scales"].state[gaussians.params["log_scales"]]["exp_avg"].clone()
    mask = torch.zeros(20, dtype=torch.bool)
    mask[[3, 7]] = True
    state = {"count": torch.arange(20.0)}
    with gsplat_view(gaussians, optimizers) as (params, opts):
        assert params["scales"] is gaussians.params["log_scales"]
        assert params["opacities"] is gaussians.params["opacity_logits"]
        gsplat_ops.duplicate(params=params, optimizers=opts, state=state, mask=mask)
    assert len(gaussians) == 22 and set(gaussians.params) == {
        "means",
        "log_scales",
        "quats",
        "opacity_logits",
        "sh0",
        "shN",
    }
    torch.testing.assert_close(gaussians.params["log_scales"][20:], log_scales[[3, 7]])
    for name, p in gaussians.params.items():
        opt = optimizers[name]
        assert opt.param_groups[0]["params"] == [p] and list(opt.state) == [p]
        assert opt.state[p]["exp_avg"].shape == p.shape == opt.state[p]["exp_avg_sq"].shape
    new_exp_avg = optimizers["log_scales"].state[gaussians.params["log_scales"]]["exp_avg"]
    torch.testing.assert_close(new_exp_avg, torch.cat([exp_avg, torch.zeros(2, 3)]))
    torch.testing.assert_close(state["count"], torch.cat([torch.arange(20.0), torch.tensor([3.0, 7.0])]))


def test_gsplat_view_raises_when_an_optimizer_is_left_on_a_replaced_parameter() -> None:
    gaussians, optimizers = _scene_with_optimizers(5)
    with pytest.raises(RuntimeError, match="out of step"), gsplat_view(gaussians, optimizers) as (params, _):
        params["scales"] = torch.nn.Parameter(params["scales"].detach().clone())


@pytest.mark.cuda
def test_torch_ops_match_gsplat_cuda_kernels() -> None:
    from gsplat import quat_scale_to_covar_preci as gsplat_covar_preci
    from gsplat.relocation import compute_relocation as gsplat_relocation

    quats, scales = _random_quats_scales(256)
    ours = quat_scale_to_covar_preci(quats.cuda(), scales.cuda(), triu=True)
    theirs = gsplat_covar_preci(quats.cuda(), scales.cuda(), triu=True)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=1e-2)
    opacities = torch.rand(256, device="cuda") * 0.9 + 0.05
    ratios = torch.randint(1, 12, (256,), device="cuda")
    binoms = binomial_table().cuda()
    ours = compute_relocation(opacities, scales.cuda(), ratios, binoms)
    theirs = gsplat_relocation(opacities, scales.cuda(), ratios.clone(), binoms)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-3, atol=1e-6)
