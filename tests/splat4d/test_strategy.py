"""Densification strategies in a small training loop: Gaussians grow, are pruned, relocated and added, while the
parameters, every Adam moment and the strategy state stay aligned, and a resumed run continues exactly."""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import gsplat.strategy.default
import gsplat.strategy.mcmc
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.geometry import look_at
from splat4d.render import RenderSettings, render
from splat4d.strategy import (
    STRATEGIES,
    DefaultStrategyConfig,
    MCMCStrategyConfig,
    StepContext,
    Strategy,
    StrategyState,
)

# gsplat's example learning rates (means raised 10x so a few steps move things).
LRS = {
    "means": 1.6e-3,
    "log_scales": 5e-3,
    "quats": 1e-3,
    "opacity_logits": 5e-2,
    "sh0": 2.5e-3,
    "shN": 1.25e-4,
}
N_POINTS = 300
N_DEAD = 30


def _cameras(device: torch.device) -> Cameras:
    eyes = [torch.tensor([3.0 * math.cos(a), 0.5, 3.0 * math.sin(a)]) for a in (0.3, 1.5, 2.7)]
    T_world_cam = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).expand(3, 3, 3).clone()
    return Cameras(T_world_cam, K, width=64, height=48).to(device)


def _scene(n: int, seed: int, device: torch.device) -> Gaussians:
    """n Gaussians in [-1, 1]^3 with SH degree 1; the first N_DEAD nearly transparent (opacity ≈ 0.001)."""
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    gaussians = Gaussians.from_points(points, torch.rand(n, 3, generator=g), sh_degree=1, init_opacity=0.3)
    with torch.no_grad():
        gaussians.params["opacity_logits"][:N_DEAD] = -7.0
    return gaussians.to(device)


@dataclass
class Run:
    gaussians: Gaussians
    optimizers: dict[str, torch.optim.Optimizer]
    strategy: Strategy
    state: StrategyState
    cameras: Cameras
    target: torch.Tensor
    settings: RenderSettings


def _start(
    config: DefaultStrategyConfig | MCMCStrategyConfig,
    device: torch.device,
    scene_scale: float = 1.0,
    settings: RenderSettings | None = None,
) -> Run:
    torch.manual_seed(0)
    cameras = _cameras(device)
    with torch.no_grad():
        target = render(_scene(400, seed=1, device=device), cameras).rgb
    gaussians = _scene(N_POINTS, seed=0, device=device)
    optimizers = {k: torch.optim.Adam([p], lr=LRS[k], eps=1e-15) for k, p in gaussians.params.items()}
    strategy = config.build()
    strategy.check(gaussians, optimizers)
    state = strategy.init_state(scene_scale)
    return Run(gaussians, optimizers, strategy, state, cameras, target, settings or RenderSettings())


def _train(run: Run, steps: range, after_step: Callable[[int], None] | None = None) -> None:
    """The loop a trainer runs: render, pre-backward hook, loss, backward, optimizer step, post-backward hook."""
    for step in steps:
        out = render(run.gaussians, run.cameras, run.settings)
        ctx = StepContext(step=step, info=out.info, lr_means=run.optimizers["means"].param_groups[0]["lr"])
        run.strategy.step_pre_backward(run.gaussians, run.optimizers, run.state, ctx)
        regularizers = run.strategy.regularization_losses(run.gaussians)
        loss = (out.rgb - run.target).abs().mean() + sum(regularizers.values())
        loss.backward()
        for optimizer in run.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        run.strategy.step_post_backward(run.gaussians, run.optimizers, run.state, ctx)
        _assert_aligned(run)
        if after_step is not None:
            after_step(step)


def _assert_aligned(run: Run) -> None:
    N = len(run.gaussians)
    for name, p in run.gaussians.params.items():
        assert p.shape[0] == N, name
        optimizer = run.optimizers[name]
        assert optimizer.param_groups[0]["params"] == [p] and list(optimizer.state) == [p], name
        for key in ("exp_avg", "exp_avg_sq"):
            assert optimizer.state[p][key].shape == p.shape, (name, key)
    for key, value in run.state.items():
        if key != "binoms" and isinstance(value, torch.Tensor):
            assert value.shape[0] == N, key


def test_every_registered_strategy_builds_and_its_state_round_trips(tmp_path: Path) -> None:
    for name, config in STRATEGIES.items():
        strategy = config.build()
        assert isinstance(strategy, Strategy), name
        torch.save(strategy.init_state(2.0), tmp_path / f"{name}.pt")
        loaded = torch.load(tmp_path / f"{name}.pt")
        assert loaded.keys() == strategy.init_state(2.0).keys()


def test_default_strategy_clones_splits_prunes_and_resets_opacity(device: torch.device) -> None:
    config = DefaultStrategyConfig(refine_start_iter=2, refine_every=3, reset_every=9, refine_stop_iter=100)
    # With scene_scale 1 every initial Gaussian is "large" (split); 20 makes about half "small" (cloned).
    run = _start(config, device, scene_scale=20.0)
    sizes = [len(run.gaussians)]

    def after_step(step: int) -> None:
        sizes.append(len(run.gaussians))
        if step == 9:
            opacities = run.gaussians.opacities
            assert opacities.max() <= 2 * config.prune_opa + 1e-6
            moments = run.optimizers["opacity_logits"].state[run.gaussians.params["opacity_logits"]]
            assert moments["exp_avg"].abs().max() == 0 and moments["exp_avg_sq"].abs().max() == 0

    with (
        mock.patch.object(
            gsplat.strategy.default, "duplicate", wraps=gsplat.strategy.default.duplicate
        ) as clone,
        mock.patch.object(gsplat.strategy.default, "split", wraps=gsplat.strategy.default.split) as split,
        mock.patch.object(gsplat.strategy.default, "remove", wraps=gsplat.strategy.default.remove) as prune,
    ):
        _train(run, range(13), after_step)
    assert clone.called and split.called and prune.called
    assert max(sizes) > 2 * N_POINTS


def test_default_strategy_prunes_the_transparent_gaussians_first() -> None:
    config = DefaultStrategyConfig(refine_start_iter=0, refine_every=1, grow_grad2d=1.0)
    run = _start(config, torch.device("cpu"))
    means = run.gaussians.means.detach().clone()
    _train(run, range(2))
    assert len(run.gaussians) == N_POINTS - N_DEAD
    # The survivors are the others, in order (Adam moved them by at most 2 lr).
    torch.testing.assert_close(run.gaussians.means, means[N_DEAD:], atol=2.1 * LRS["means"], rtol=0)


def test_default_strategy_with_absgrad_reads_absolute_gradients() -> None:
    config = DefaultStrategyConfig(absgrad=True)
    run = _start(config, torch.device("cpu"), settings=RenderSettings(absgrad=True))
    _train(run, range(1))
    assert run.state["grad2d"].sum() > 0

    run = _start(config, torch.device("cpu"))
    with pytest.raises(ValueError, match="absgrad"):
        _train(run, range(1))


def test_strategy_rejects_info_from_another_scene_and_mismatched_optimizers() -> None:
    run = _start(DefaultStrategyConfig(), torch.device("cpu"))
    other = _scene(10, seed=3, device=torch.device("cpu"))
    info = render(other, run.cameras).info
    with pytest.raises(ValueError, match="means2d"):
        run.strategy.step_pre_backward(
            run.gaussians, run.optimizers, run.state, StepContext(0, info, lr_means=0.0)
        )
    del run.optimizers["shN"]
    with pytest.raises(ValueError, match="optimizers"):
        run.strategy.check(run.gaussians, run.optimizers)


def test_mcmc_strategy_relocates_dead_gaussians_and_adds_up_to_the_cap(device: torch.device) -> None:
    config = MCMCStrategyConfig(cap_max=330, refine_start_iter=1, refine_every=2)
    run = _start(config, device)
    sizes = []

    def after_step(step: int) -> None:
        sizes.append(len(run.gaussians))
        n_dead = (run.gaussians.opacities <= config.min_opacity).sum().item()
        if step == 2:  # the first refinement: every dead Gaussian was moved onto a live one
            assert n_dead == 0

    with (
        mock.patch.object(gsplat.strategy.mcmc, "relocate", wraps=gsplat.strategy.mcmc.relocate) as relocate,
        mock.patch.object(gsplat.strategy.mcmc, "sample_add", wraps=gsplat.strategy.mcmc.sample_add) as add,
    ):
        _train(run, range(8), after_step)
    assert relocate.called and add.called
    assert sizes == sorted(sizes) and max(sizes) == config.cap_max
    assert sizes[2] == int(1.05 * N_POINTS)  # step 2 is the first refinement


def test_mcmc_regularizers_are_weighted_mean_opacity_and_scale() -> None:
    config = MCMCStrategyConfig(opacity_reg=0.5, scale_reg=0.25)
    gaussians = _scene(50, seed=0, device=torch.device("cpu"))
    losses = config.build().regularization_losses(gaussians)
    torch.testing.assert_close(losses["opacity_reg"], 0.5 * gaussians.opacities.mean())
    torch.testing.assert_close(losses["scale_reg"], 0.25 * gaussians.scales.mean())


@pytest.fixture
def single_thread() -> Iterator[None]:
    """The CPU rasterizer's multi-threaded backward sums in a varying order (last-bit differences between runs),
    so bitwise comparisons of two runs use one thread."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.mark.parametrize(
    "config",
    [
        DefaultStrategyConfig(refine_start_iter=1, refine_every=3, reset_every=7, refine_stop_iter=100),
        MCMCStrategyConfig(cap_max=360, refine_start_iter=1, refine_every=2),
    ],
    ids=["default", "mcmc"],
)
def test_resumed_run_matches_uninterrupted_run(
    config: DefaultStrategyConfig | MCMCStrategyConfig, tmp_path: Path, single_thread: None
) -> None:
    cpu = torch.device("cpu")
    uninterrupted = _start(config, cpu, scene_scale=20.0)
    _train(uninterrupted, range(10))

    first = _start(config, cpu, scene_scale=20.0)
    _train(first, range(5))
    torch.save(
        {
            "params": {k: p.detach() for k, p in first.gaussians.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in first.optimizers.items()},
            "strategy": first.state,
            "rng": torch.get_rng_state(),
        },
        tmp_path / "checkpoint.pt",
    )
    del first
    torch.manual_seed(123)  # whatever happens between the runs must not matter

    checkpoint = torch.load(tmp_path / "checkpoint.pt")
    resumed = _start(config, cpu)
    resumed.gaussians = Gaussians(checkpoint["params"])
    resumed.optimizers = {
        k: torch.optim.Adam([p], lr=LRS[k], eps=1e-15) for k, p in resumed.gaussians.params.items()
    }
    for name, opt in resumed.optimizers.items():
        opt.load_state_dict(checkpoint["optimizers"][name])
    resumed.state = checkpoint["strategy"]
    resumed.strategy.check(resumed.gaussians, resumed.optimizers)
    torch.set_rng_state(checkpoint["rng"])
    _train(resumed, range(5, 10))

    assert len(resumed.gaussians) == len(uninterrupted.gaussians)
    assert len(uninterrupted.gaussians) != N_POINTS
    for name, p in uninterrupted.gaussians.params.items():
        assert torch.equal(resumed.gaussians.params[name], p), name
