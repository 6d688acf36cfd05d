"""4D adaptive density control: parameter/optimizer bookkeeping of clone, split and prune, and the hooks."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D
from splat4d.optim import Optim4DConfig, build_optimizers
from splat4d.render import render
from splat4d.strategy.base import StepContext, check_optimizers
from splat4d.strategy.density4d import Density4DConfig, _unpack_covars4, duplicate, remove, split_4d


def _scene(n: int = 300, seed: int = 0) -> Gaussians4D:
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n, 3, generator=g) * 0.5
    return Gaussians4D.from_points(
        points, torch.rand(n, 3, generator=g), torch.rand(n, generator=g), sh_degree=1, time_degree=1,
        init_opacity=0.5, init_time_scale=0.2,
    )  # fmt: skip


def _camera() -> Cameras:
    T = torch.eye(4)
    T[2, 3] = -3.0
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    return Cameras(T[None], K[None], 64, 48, times=torch.tensor([0.5]))


def _optimizers(g: Gaussians4D) -> dict:
    return build_optimizers(g.params, Optim4DConfig(), scene_scale=1.0)


def _one_step(g: Gaussians4D, opts: dict) -> None:
    """A real step so Adam has moments for every Gaussian."""
    out = render(g, _camera())
    out.rgb.sum().backward()
    for opt in opts.values():
        opt.step()
        opt.zero_grad(set_to_none=True)


def _assert_consistent(g: Gaussians4D, opts: dict) -> None:
    check_optimizers(g, opts)
    n = len(g)
    for name, opt in opts.items():
        state = opt.state[g.params[name]]
        if not state:  # no optimizer step yet
            continue
        assert state["exp_avg"].shape == g.params[name].shape, name
        assert state["exp_avg_sq"].shape[0] == n, name


def test_duplicate_and_remove_keep_parameters_and_moments_aligned() -> None:
    g = _scene()
    opts = _optimizers(g)
    _one_step(g, opts)
    mask = torch.zeros(len(g), dtype=torch.bool)
    mask[:10] = True
    before = g.params["means4"].detach().clone()
    moments = opts["means4"].state[g.params["means4"]]["exp_avg"].clone()
    duplicate(g, opts, mask)
    assert len(g) == 310
    _assert_consistent(g, opts)
    torch.testing.assert_close(g.params["means4"][300:], before[:10])
    new_moments = opts["means4"].state[g.params["means4"]]["exp_avg"]
    torch.testing.assert_close(new_moments[:300], moments)
    assert (new_moments[300:] == 0).all()
    drop = torch.zeros(len(g), dtype=torch.bool)
    drop[::2] = True
    remove(g, opts, drop)
    assert len(g) == 155
    _assert_consistent(g, opts)


def test_split_draws_two_children_from_the_parents_4d_distribution() -> None:
    torch.manual_seed(0)
    g = _scene(n=50)
    opts = _optimizers(g)
    _one_step(g, opts)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[:5] = True
    parents = {k: v.detach().clone() for k, v in g.params.items()}
    cov = _unpack_covars4(g.covars4[:5].detach())
    split_4d(g, opts, mask)
    assert len(g) == 55
    _assert_consistent(g, opts)
    torch.testing.assert_close(g.params["means4"][:45], parents["means4"][5:])
    children = g.params["means4"][45:].detach().reshape(2, 5, 4)
    torch.testing.assert_close(
        g.params["log_scales4"][45:50].detach(), parents["log_scales4"][:5] - math.log(1.6)
    )
    # offsets are Mahalanobis-plausible draws of the parent's 4D Gaussian (not all zero, not far out)
    d = children - parents["means4"][:5]
    mahalanobis = torch.einsum("kni,nij,knj->kn", d, torch.linalg.inv(cov), d).sqrt()
    assert (mahalanobis > 0).all() and (mahalanobis < 6).all()
    assert d[..., 3].abs().max() > 0  # children move in time too


def test_split_in_space_only_keeps_time_and_lifespan() -> None:
    # One moving camera sees each moment once: growth in space only must leave each child alive over its parent's
    # span, at its time, drawn from the parent's 3D slice at that time (not from its motion over the whole span).
    torch.manual_seed(0)
    g = _scene(n=50)
    with torch.no_grad():  # mix space and time: the marginal spread in x is much wider than the slice's
        g.params["quats_l"][:] = torch.randn(50, 4)
        g.params["quats_r"][:] = torch.randn(50, 4)
    opts = _optimizers(g)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[:5] = True
    parents = {k: v.detach().clone() for k, v in g.params.items()}
    cov = _unpack_covars4(g.covars4[:5].detach().double())
    split_4d(g, opts, mask, in_time=False)
    assert len(g) == 55
    _assert_consistent(g, opts)
    children = g.params["means4"][45:].detach().reshape(2, 5, 4)
    torch.testing.assert_close(children[..., 3], parents["means4"][:5, 3].expand(2, 5))
    torch.testing.assert_close(g.params["log_scales4"][45:50, 3], parents["log_scales4"][:5, 3])
    torch.testing.assert_close(
        g.params["log_scales4"][45:50, :3], parents["log_scales4"][:5, :3] - math.log(1.6)
    )
    cross = cov[:, :3, 3:]
    sliced = cov[:, :3, :3] - cross @ cross.transpose(1, 2) / cov[:, 3:, 3:]
    d = (children[..., :3] - parents["means4"][:5, :3]).double()
    mahalanobis = torch.einsum("kni,nij,knj->kn", d, torch.linalg.inv(sliced), d).sqrt()
    assert (mahalanobis > 0).all() and (mahalanobis < 6).all()


@pytest.mark.parametrize("split_in_time", [True, False])
def test_growth_in_space_only_clones_long_lived_small_gaussians(split_in_time: bool) -> None:
    # A small Gaussian that lives long is split in time by 4DGS's rule, but cloned (a copy, same time and
    # lifespan) when growth is in space only: its lifespan is no reason to divide it.
    torch.manual_seed(0)
    g = _scene(n=40)
    with torch.no_grad():
        g.params["log_scales4"][:, :3] = math.log(1e-3)
        g.params["log_scales4"][:, 3] = math.log(0.5)
    opts = _optimizers(g)
    strategy = Density4DConfig(grow_grad2d=0.0, split_in_time=split_in_time).build()
    state = strategy.init_state(1.0)
    state["grad2d"], state["count"] = torch.ones(40), torch.ones(40)
    assert strategy._grow(g, opts, state) == 40
    assert len(g) == 80
    _assert_consistent(g, opts)
    first, second = g.params["means4"].detach().reshape(2, 40, 4).unbind(0)
    assert torch.equal(first, second) is not split_in_time  # clones are copies; split children two draws


def test_split_survives_a_nearly_singular_covariance() -> None:
    # Scales 8 orders of magnitude apart under a 4D rotation give a float32 covariance that Cholesky can call
    # indefinite (it stopped a 2600-step bench run); the split must still draw finite children next to the parent.
    torch.manual_seed(0)
    g = _scene(n=20)
    opts = _optimizers(g)
    with torch.no_grad():
        g.params["log_scales4"][:] = torch.tensor([-18.0, -1.0, -2.0, -3.0])
        g.params["quats_l"][:] = torch.randn(20, 4)
        g.params["quats_r"][:] = torch.randn(20, 4)
    cov = _unpack_covars4(g.covars4.detach().double())
    assert (
        torch.linalg.eigvalsh(cov)[:, 0] < 0
    ).any()  # the case at hand: float32 rounding made some indefinite
    mask = torch.ones(20, dtype=torch.bool)
    parents = g.params["means4"].detach().clone()
    split_4d(g, opts, mask)
    assert len(g) == 40
    _assert_consistent(g, opts)
    d = g.params["means4"].detach().reshape(2, 20, 4) - parents
    assert torch.isfinite(d).all() and (d.norm(dim=-1) < 6 * math.exp(-1.0)).all()


def _context(g: Gaussians4D, step: int):
    out = render(g, _camera())
    return out, StepContext(step=step, info=out.info, lr_means=1e-4)


def test_hooks_grow_only_gaussians_seen_at_the_rendered_time() -> None:
    torch.manual_seed(0)
    g = _scene()
    with torch.no_grad():  # half the Gaussians live far from t = 0.5: culled there, so never grown
        g.params["means4"][150:, 3] = 5.0
        g.params["log_scales4"][150:, 3] = math.log(0.01)
    opts = _optimizers(g)
    cfg = Density4DConfig(
        grow_grad2d=1e-12, refine_start_iter=0, refine_every=2, prune_opa=0.0, reset_every=10**6
    )
    strategy = cfg.build()
    state = strategy.init_state(1.0)
    for step in (1, 2):
        out, ctx = _context(g, step)
        strategy.step_pre_backward(g, opts, state, ctx)
        (out.rgb.sum() + 1e-3 * out.alpha.sum()).backward()
        for opt in opts.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(g, opts, state, ctx)
    seen = len(out.info["kept_ids"])
    assert 0 < seen <= 150
    assert len(g) > 300  # the seen ones grew (clone adds one each, split a net one)
    assert len(g) <= 300 + seen
    _assert_consistent(g, opts)
    assert (g.params["means4"][:, 3] > 4.0).sum() == 150  # the unseen ones are untouched


def test_prune_and_opacity_reset() -> None:
    g = _scene()
    with torch.no_grad():
        g.params["opacity_logits"][:20] = -12.0
    opts = _optimizers(g)
    cfg = Density4DConfig(grow_grad2d=1e9, refine_start_iter=0, refine_every=1, reset_every=1, prune_opa=0.01)
    strategy = cfg.build()
    state = strategy.init_state(1.0)
    out, ctx = _context(g, 1)
    strategy.step_pre_backward(g, opts, state, ctx)
    out.rgb.sum().backward()
    strategy.step_post_backward(g, opts, state, ctx)
    assert len(g) == 280
    assert g.opacities.max() <= 0.02 + 1e-6
    _assert_consistent(g, opts)


def test_a_3d_render_is_refused() -> None:
    strategy = Density4DConfig().build()
    with pytest.raises(ValueError, match="4D render"):
        strategy.step_pre_backward(_scene(), {}, {}, StepContext(0, {"means2d": torch.zeros(1, 1, 2)}, 0.0))
