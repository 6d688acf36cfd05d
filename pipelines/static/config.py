"""Configuration and presets of the static pipeline (3DGS, Kerbl et al. 2023, with gsplat's strategies)."""

import dataclasses
from dataclasses import dataclass, field

from splat4d.data.config import DataConfig
from splat4d.initialization import InitConfig
from splat4d.optim import OptimConfig
from splat4d.schedule import scaled_density, scaled_steps, scaled_trainer
from splat4d.strategy import DefaultStrategyConfig, MCMCStrategyConfig
from splat4d.trainer import TrainerConfig


@dataclass
class GeometryConfig:
    """Regularisers that make the Gaussians lie on the scene's surfaces, for meshing (`splat4d export mesh`): the
    depth–normal consistency of 2DGS / PGSR and a flattening term. Both are off (0) unless a preset or flag sets
    them; the `mesh` preset does."""

    normal_weight: float = 0.0
    """Weight of 1 − cos between the rendered normals and the normals of the rendered depth, edge-aware."""
    flatten_weight: float = 0.0
    """Weight of the mean smallest scale over the scene scale (Gaussians become discs with a clear normal)."""
    multiview_weight: float = 0.0
    """Weight of the multi-view patch term: 1 − NCC of photo patches warped into a neighbouring training photo by
    the rendered surface (`pipelines.static.multiview`)."""
    multiview_patches: int = 2048
    """Patches sampled per step for the multi-view term."""
    multiview_neighbours: int = 4
    """Each step compares with one of this many nearest training cameras (axes within 60°), drawn at random."""
    start_fraction: float = 0.3
    """Switch the regularisers on after this fraction of the training steps (once coarse geometry has formed)."""

    @property
    def enabled(self) -> bool:
        return self.normal_weight > 0 or self.flatten_weight > 0 or self.multiview_weight > 0


@dataclass
class StaticConfig:
    """3DGS photometric training of a static scene."""

    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init: InitConfig = field(default_factory=InitConfig)
    strategy: DefaultStrategyConfig | MCMCStrategyConfig = field(default_factory=DefaultStrategyConfig)
    """Densification: 3DGS adaptive density control ("default") or 3DGS-as-MCMC ("mcmc")."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term in (1 − λ)·L1 + λ·(1 − SSIM)."""
    sh_degree_interval: int = 1000
    """Raise the SH degree used in training by one every this many steps (up to init.sh_degree)."""
    background: tuple[float, float, float] | None = None
    """Background colour; None: the dataset's (white for Blender scenes, else black)."""
    antialiased: bool = False
    """Mip-Splatting's opacity compensation for the 2D filter."""
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    """Surface regularisers for meshing (off by default)."""


FAST_MAX_SIZE = 512
"""Longest image side the `fast` preset trains at (`DataConfig.max_size`): phone photos (4000 px, or 800 px
after a resize) train at 1/2 to 1/8 of their size. A step costs about its pixel count on the CPU: 23 photos at
800×600 took 22 minutes at 1200 steps, so at 400×300 they take about a quarter of that."""


def _fast() -> StaticConfig:
    """Minutes on a 2-core CPU: 1200 steps, at most 512 pixels on the longest side (`FAST_MAX_SIZE`; the sample
    scene's 320×240 photos as they are), the first 500 steps at half that resolution, densification from step
    100 to 900 with one opacity reset (step 600), SH degree raised every 200 steps."""
    return StaticConfig(
        data=DataConfig(max_size=FAST_MAX_SIZE),
        trainer=TrainerConfig(steps=1200, checkpoint_every=200, coarse_until=500),
        init=InitConfig(random_points=20_000),
        strategy=DefaultStrategyConfig(
            refine_start_iter=100, refine_stop_iter=900, reset_every=600, refine_every=100
        ),
        sh_degree_interval=200,
    )


def _quality() -> StaticConfig:
    """3DGS-as-MCMC with up to 1M Gaussians and the full 30k steps; its initialisation (denser opacity, smaller
    splats) follows gsplat's MCMC settings."""
    return StaticConfig(
        strategy=MCMCStrategyConfig(cap_max=1_000_000), init=InitConfig(init_opacity=0.5, init_scale=0.1)
    )


def _mesh() -> StaticConfig:
    """`fast` plus the geometry regularisers, for scenes meant to become meshes: the same schedule, with
    depth–normal consistency, flattening and multi-view patch consistency from 30% of the steps."""
    geometry = GeometryConfig(normal_weight=0.1, flatten_weight=1.0, multiview_weight=0.2)
    return dataclasses.replace(_fast(), geometry=geometry)


PRESETS: dict[str, StaticConfig] = {
    "fast": _fast(),
    "mesh": _mesh(),
    "default": StaticConfig(),
    "quality": _quality(),
}


def with_steps(cfg: StaticConfig, steps: int) -> StaticConfig:
    """`cfg` trained for `steps` instead: its step-based schedules (densification window, opacity resets, SH
    warm-up, half-resolution start) scaled by the same factor (`splat4d.schedule`), so `--steps` shortens or
    lengthens a preset without breaking it."""
    factor = steps / cfg.trainer.steps
    return dataclasses.replace(
        cfg,
        trainer=scaled_trainer(cfg.trainer, steps, factor),
        strategy=scaled_density(cfg.strategy, steps, factor),
        sh_degree_interval=scaled_steps(cfg.sh_degree_interval, factor),
    )
