"""Configuration and presets of the dynamic pipeline (native 4D Gaussians, Yang et al. 2024)."""

import dataclasses
from dataclasses import dataclass, field

from splat4d.data.config import DataConfig
from splat4d.data.triangulate import TriangulationConfig
from splat4d.initialization import Init4DConfig
from splat4d.optim import Optim4DConfig
from splat4d.schedule import scaled_density, scaled_steps, scaled_trainer
from splat4d.strategy.density4d import Density4DConfig
from splat4d.trainer import TrainerConfig


@dataclass
class DynamicConfig:
    """4D Gaussians trained on images that each carry a capture time (multi-view video, D-NeRF-style, or one
    moving camera)."""

    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: Optim4DConfig = field(default_factory=Optim4DConfig)
    init: Init4DConfig = field(default_factory=Init4DConfig)
    strategy: Density4DConfig = field(default_factory=lambda: Density4DConfig(split_in_time=False))
    """Densification: in space only by default (`split_in_time` False: a growing Gaussian keeps its lifespan, so
    the still background is not cut into pieces each seen by a few frames of a moving camera); +0.66 dB on the
    procedural monocular scene and +0.31 dB on the D-NeRF lego at the ablation's size (README: "Levers for one
    moving camera")."""
    triangulation: TriangulationConfig = field(default_factory=TriangulationConfig)
    """Initial points triangulated at the known poses from the training views of the first instant, when the
    dataset has no point cloud (`mode`) and at least two cameras saw that instant (multi-view video;
    `pipelines.dynamic.scene`)."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term in (1 − λ)·L1 + λ·(1 − SSIM)."""
    sh_degree_interval: int = 1000
    """Raise the SH degree used in training by one every this many steps (up to init.sh_degree)."""
    temporal_opacity_weight: float = 1e-3
    """Weight of the temporal-opacity regulariser (mean opacity × temporal weight at the view's time)."""
    motion_smoothness_weight: float = 1e-3
    """Weight of the motion-smoothness regulariser (velocity differences between spatial neighbours)."""
    motion_sparsity_weight: float = 0.01
    """Weight of the motion-sparsity regulariser (mean |velocity| of the Gaussians alive at t: most of a scene is
    still). With `lifespan_floor`, +0.55 dB on the D-NeRF lego and +0.2 dB on the procedural monocular scene in
    bench/dynamic_ablation.py (README: "Levers for one moving camera")."""
    lifespan_floor: float = 0.06
    """Temporal standard deviation (normalised time) below which a Gaussian alive at t is penalised
    (`lifespan_weight`); 0: off. Against one Gaussian per frame explaining one view of a moving camera: 0.06 is
    about two frames' spacing of a 32-frame capture."""
    lifespan_weight: float = 0.1
    """Weight of the lifespan-floor regulariser (when `lifespan_floor` > 0)."""
    rigidity_weight: float | None = None
    """Weight of the local-rigidity regulariser (the rate at which distances between spatial neighbours at t
    change: zero for rigid motion, rotation included); 0: off. None: MONOCULAR_RIGIDITY_WEIGHT for a monocular
    capture (one training view per capture time: D-NeRF, a phone walked round), 0 for multi-view video
    (`rigidity_weight_for`)."""
    background: tuple[float, float, float] | None = None
    """Background colour; None: the dataset's (white for D-NeRF / Blender scenes, else black)."""
    antialiased: bool = False


MONOCULAR_RIGIDITY_WEIGHT = 0.1
"""The local-rigidity weight for one moving camera: +0.44 and +0.49 dB on the D-NeRF lego (two seeds), -0.04 and
-0.13 dB on the procedural monocular scene, at the ablation's size; on the multi-view rig -0.24 and -0.57 dB, so
it stays off there (README: "Levers for one moving camera")."""


def rigidity_weight_for(cfg: DynamicConfig, monocular: bool) -> float:
    """The local-rigidity weight a run uses: `cfg.rigidity_weight`, or when that is None (auto)
    MONOCULAR_RIGIDITY_WEIGHT for a monocular capture and 0 otherwise."""
    if cfg.rigidity_weight is not None:
        return cfg.rigidity_weight
    return MONOCULAR_RIGIDITY_WEIGHT if monocular else 0.0


def _fast() -> DynamicConfig:
    """Minutes on a 2-core CPU for a small scene (the dynamic samples at 320×240)."""
    return DynamicConfig(
        trainer=TrainerConfig(steps=2000, checkpoint_every=250, coarse_until=600),
        init=Init4DConfig(random_points=10_000, sh_degree=1, time_copies=4),
        strategy=Density4DConfig(
            split_in_time=False,
            refine_start_iter=150,
            refine_stop_iter=1500,
            reset_every=800,
            refine_every=100,
        ),
        sh_degree_interval=300,
    )


PRESETS: dict[str, DynamicConfig] = {"fast": _fast(), "default": DynamicConfig()}


def with_steps(cfg: DynamicConfig, steps: int) -> DynamicConfig:
    """`cfg` trained for `steps` instead, its step-based schedules scaled by the same factor (`splat4d.schedule`;
    checkpoints as the preset has them, at most one per run)."""
    factor = steps / cfg.trainer.steps
    return dataclasses.replace(
        cfg,
        trainer=scaled_trainer(cfg.trainer, steps, factor, checkpoints=1),
        strategy=scaled_density(cfg.strategy, steps, factor),
        sh_degree_interval=scaled_steps(cfg.sh_degree_interval, factor),
    )
