"""Configuration and presets of the sparse-view pipeline (3 to 9 posed photos, weight-free regularisers)."""

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipelines.sparse_view.fields import PARTNER
from pipelines.sparse_view.priors.config import PriorsConfig
from pipelines.sparse_view.silhouettes import SilhouetteConfig
from pipelines.sparse_view.strategy import SparseStrategyConfig
from splat4d.data.config import DataConfig
from splat4d.data.triangulate import TriangulationConfig
from splat4d.initialization import InitConfig
from splat4d.optim import OptimConfig
from splat4d.schedule import scaled_density, scaled_steps, scaled_trainer
from splat4d.strategy import DefaultStrategyConfig
from splat4d.trainer import TrainerConfig


@dataclass
class SparseOptimConfig(OptimConfig):
    """Per-parameter Adam learning rates, the same for both fields of co-regularisation."""

    def initial_lrs(self, scene_scale: float) -> dict[str, float]:
        lrs = super().initial_lrs(scene_scale)
        return lrs | {PARTNER + name: lr for name, lr in lrs.items()}


@dataclass
class CoRegConfig:
    """CoR-GS co-regularisation (Zhang et al. 2024): two Gaussian fields, initialised alike and trained on the same
    photos, agree where the photos constrain them and disagree elsewhere. Their disagreement is turned into
    training signal twice: co-pruning (in `SparseStrategyConfig`) and the pseudo-view term here."""

    enabled: bool = True
    """Train two fields (about twice the cost per step). Off: one field, no co-pruning, no pseudo views."""
    pseudo_weight: float = 1.0
    """Weight of the L1 difference between the two fields' renders of a pseudo view."""
    pseudo_start: int = 500
    """Add the pseudo-view term from this step (once the fields have a coarse shape)."""
    orbit: bool = True
    """When the training cameras orbit a common point, pseudo views move along the orbit between two cameras
    rather than along the straight segment, which cuts towards the subject when the cameras are far apart."""
    pseudo_neighbours: int = 2
    """A pseudo view lies between a training camera and one of its this many nearest training cameras."""
    partner_seed: int = 1
    """Seed of the partner field's random initial points when the scene has no point cloud. With one, both fields
    start from it (as in CoR-GS) and drift apart through the random splits of densification."""


@dataclass
class SparseViewConfig:
    """Static scenes from 3 to 9 posed photos: photometric training of one or two Gaussian fields with
    co-regularisation, proximity-guided densification and opacity, scale and floater regularisers."""

    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: SparseOptimConfig = field(default_factory=SparseOptimConfig)
    init: InitConfig = field(default_factory=InitConfig)
    strategy: SparseStrategyConfig = field(default_factory=SparseStrategyConfig)
    """Densification and pruning (3DGS per field, FSGS unpooling, CoR-GS co-pruning, floaters)."""
    views: int | None = None
    """Train on this many of the dataset's training views (`view_rule`; `pipelines.sparse_view.views`); None: all
    of them."""
    view_rule: Literal["auto", "farthest", "even"] = "auto"
    """How `views` are picked: farthest-point sampling of the camera centres from the first training camera, or
    evenly spaced over the training views in file order (the LLFF protocol of FSGS, DNGaussian and CoR-GS); auto:
    even for LLFF datasets, farthest for the others."""
    triangulation: TriangulationConfig = field(default_factory=TriangulationConfig)
    """Initial points triangulated from the training views at their known poses when the dataset has none
    (`mode`), with random points (`init.random_points`) when too few triangulate."""
    silhouette: SilhouetteConfig = field(default_factory=SilhouetteConfig)
    """For photos with an alpha channel (object captures): visual-hull initial points and an alpha term."""
    co_reg: CoRegConfig = field(default_factory=CoRegConfig)
    drop_rate: float = 0.5
    """DropGaussian: each training render leaves out this share of each field's Gaussians at random (scaling the
    others' opacities by 1 / (1 − rate); `pipelines.sparse_view.dropout`); 0: off. Measured on the procedural
    scene, k = 3, 1000 steps at 160×120 (from 10k random points): 0 → 19.28 dB, 0.1 → 19.38, 0.2 → 19.73,
    0.35 → 19.78, 0.5 → 19.96."""
    depth_smoothness_weight: float = 0.0
    """Weight of the depth smoothness of both fields' pseudo-view renders (RegNeRF; `smoothness`), with
    co-regularisation from `co_reg.pseudo_start`; 0: off. Off by default: it did not help on the bench's k = 3
    scenes at 1000 steps (from 10k random points; procedural, 160×120: 0.3 → 19.92 dB vs 19.96 without; with orbit
    pseudo views 2.0 → 20.07 vs 20.13; lego, 200×200: 0.3 → 15.97 vs 15.94)."""
    opacity_weight: float = 0.01
    """Weight of the mean opacity (a sparsity prior: Gaussians the photos do not need fade and get pruned); 0: off."""
    scale_weight: float = 0.01
    """Weight of the mean scale over the scene scale (no large blobs that fit one photo); 0: off."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term in (1 − λ)·L1 + λ·(1 − SSIM)."""
    sh_degree_interval: int = 1000
    """Raise the SH degree used in training by one every this many steps (up to init.sh_degree)."""
    background: tuple[float, float, float] | None = None
    """Background colour; None: the dataset's (white for Blender scenes, else black)."""
    antialiased: bool = False
    """Mip-Splatting's opacity compensation for the 2D filter."""
    priors: PriorsConfig = field(default_factory=PriorsConfig)
    """Optional learned priors (`pip install 'splat4d[gen]'`): monocular depth on the training photos, a diffusion
    model on pseudo views; off unless a model is named."""


RANDOM_POINTS = 1_000
"""Random initial points (and visual-hull points) of both presets when nothing triangulates. Few photos constrain
few Gaussians: measured on the procedural room, k = 3, 1000 steps at 160×120 (fast preset), 30k points → 19.58 dB,
10k → 20.13, 3k → 20.30, 1k → 20.66, 300 → 20.73 on the held-out views; vanilla 3DGS moved less (its 20k → 18.91 dB,
1k → 19.10). The default preset takes the same count (not measured at its 10k steps)."""


def _fast() -> SparseViewConfig:
    """Minutes on a 2-core CPU for the sample scene reduced to a few views (320×240): 1000 steps, the first 300 at
    half resolution, SH degree 1, densification, unpooling and pruning from step 100 to 700, pseudo views from step
    300."""
    return SparseViewConfig(
        trainer=TrainerConfig(steps=1000, checkpoint_every=250, coarse_until=300),
        init=InitConfig(sh_degree=1, random_points=RANDOM_POINTS),
        strategy=SparseStrategyConfig(
            densify=DefaultStrategyConfig(
                refine_start_iter=100, refine_stop_iter=700, reset_every=1001, refine_every=100
            ),
            unpool_every=100,
            co_prune_every=100,
            floater_every=100,
        ),
        co_reg=CoRegConfig(pseudo_start=300),
        sh_degree_interval=300,
    )


DEFAULT_GROW_GRAD2D = 0.0005
"""The `default` preset's densification threshold on the image-plane gradient: FSGS's for its LLFF runs (3DGS's
0.0002 is for dense captures; DNGaussian uses 0.0008 to 0.0013). At 0.0002 the sparse pipeline's flower run had
117k Gaussians per field by step 1350 of 10k, 0.7 s a step on one CPU core and climbing."""


def _default() -> SparseViewConfig:
    """10k steps (FSGS and CoR-GS train LLFF-sized scenes for 10k), densification until 6k at FSGS's gradient
    threshold, pseudo views from 2k."""
    return SparseViewConfig(
        trainer=TrainerConfig(steps=10_000, checkpoint_every=2000),
        init=InitConfig(random_points=RANDOM_POINTS),
        strategy=SparseStrategyConfig(
            densify=DefaultStrategyConfig(
                refine_start_iter=500,
                refine_stop_iter=6000,
                reset_every=3000,
                grow_grad2d=DEFAULT_GROW_GRAD2D,
            )
        ),
        co_reg=CoRegConfig(pseudo_start=2000),
    )


PRESETS: dict[str, SparseViewConfig] = {"fast": _fast(), "default": _default()}


def with_steps(cfg: SparseViewConfig, steps: int) -> SparseViewConfig:
    """`cfg` trained for `steps` instead, its step-based schedules scaled by the same factor (`splat4d.schedule`,
    and the pseudo views' start)."""
    factor = steps / cfg.trainer.steps
    return dataclasses.replace(
        cfg,
        trainer=scaled_trainer(cfg.trainer, steps, factor),
        strategy=dataclasses.replace(
            cfg.strategy, densify=scaled_density(cfg.strategy.densify, steps, factor)
        ),
        co_reg=dataclasses.replace(cfg.co_reg, pseudo_start=round(cfg.co_reg.pseudo_start * factor)),
        sh_degree_interval=scaled_steps(cfg.sh_degree_interval, factor),
    )
