"""The sparse-view training step: each field renders the batch's photo with a random share of its Gaussians left
out (DropGaussian, `pipelines.sparse_view.dropout`) and is compared with it ((1 − λ)·L1 + λ·D-SSIM, plus opacity
and scale regularisers); with co-regularisation, both fields also render a pseudo view between two training
cameras and must agree there (L1). Learned priors, when configured (`cfg.priors`, `pipelines.sparse_view.priors`), add
depth terms to each field's render of the photo and diffusion terms on pseudo views of the primary field.

Run it with `splat4d reconstruct DATASET -o OUT --pipeline sparse --views 3` (a posed dataset; see `--help`).

How the pieces meet the one trainer: both fields live in `self.gaussians.params` (`pipelines.sparse_view.fields`),
so the trainer's optimisers and checkpoints cover both; the step's render infos go to `SparseStrategy` keyed by
field (`info["fields"]`), with the floater votes of each training render; `bind_views` gives the pipeline the
training cameras that pseudo views are drawn between. Everything else (render_view, the PLY, the viewer,
evaluation) sees the primary field only.
"""

import dataclasses

import torch

from pipelines.sparse_view import fields
from pipelines.sparse_view.config import SparseViewConfig
from pipelines.sparse_view.dropout import drop_gaussians
from pipelines.sparse_view.priors import LearnedPriors
from pipelines.sparse_view.pseudo_views import nearest_cameras, orbit_pivot, sample_pseudo_camera
from pipelines.sparse_view.silhouettes import AlphaTerm
from pipelines.sparse_view.smoothness import depth_smoothness
from pipelines.sparse_view.strategy import floater_votes
from pipelines.splat_pipeline import SplatPipeline
from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.data.dataset import Batch, ImageDataset
from splat4d.gaussians import Gaussians
from splat4d.initialization import init_gaussians, scene_extent
from splat4d.losses import l1, photometric
from splat4d.metrics import psnr
from splat4d.pipeline import StepResult
from splat4d.render import RenderOutput, RenderSettings, render


class SparseViewPipeline(SplatPipeline):
    def __init__(
        self,
        cfg: SparseViewConfig,
        gaussians: Gaussians,
        background: tuple[float, float, float],
        scene_scale: float = 1.0,
    ) -> None:
        super().__init__(cfg, gaussians, background, scene_scale)
        self._cameras: Cameras | None = None
        self._neighbours: list[list[int]] = []
        self._pivot: torch.Tensor | None = None
        self.priors = LearnedPriors(cfg.priors)
        self.alpha = AlphaTerm(cfg.silhouette)

    def bind_views(self, views: ImageDataset) -> None:
        """The training views (called by the trainer, again when the resolution changes): pseudo views are drawn
        between their cameras, and the depth prior (when configured) estimates the depth of their photos."""
        self._cameras = views.cameras
        self._neighbours = nearest_cameras(views.cameras, self.cfg.co_reg.pseudo_neighbours)
        self._pivot = orbit_pivot(views.cameras) if self.cfg.co_reg.orbit else None
        self.priors.bind_views(views, self._neighbours, self._pivot)
        self.alpha.bind_views(views.scene, views.indices, views.cameras.sizes)

    def train_step(self, batch: Batch, step: int) -> StepResult:
        cfg = self.cfg
        degree = min(step // cfg.sh_degree_interval, self.gaussians.sh_degree)
        settings = self.settings(degree)
        views = {prefix: fields.field(self.gaussians, prefix) for prefix in fields.prefixes(self.gaussians)}
        loss, logs, infos = batch.rgb.new_zeros(()), {}, {}
        for prefix, g in views.items():
            out = render(drop_gaussians(g, cfg.drop_rate), batch.cameras, settings)
            term, parts = photometric(out.rgb, batch.rgb, cfg.ssim_lambda, batch.mask)
            loss = loss + term + self._regularisers(g, parts) + self.priors.view_loss(out, batch, step, parts)
            loss = loss + self.alpha.loss(out.alpha, batch.index, parts)
            infos[prefix] = self._info(g, out, batch.cameras)
            if prefix == "":
                logs = {k: float(v.detach()) for k, v in parts.items()}
                logs["psnr"] = float(psnr(out.rgb.detach(), batch.rgb).mean())
        if len(views) == 2 and step >= cfg.co_reg.pseudo_start and self._cameras is not None:
            pseudo, smooth = self._pseudo_view_loss(list(views.values()), settings)
            loss = loss + cfg.co_reg.pseudo_weight * pseudo + cfg.depth_smoothness_weight * smooth
            logs["pseudo_l1"], logs["depth_smoothness"] = float(pseudo.detach()), float(smooth.detach())
        prior, prior_logs = self.priors.novel_view_loss(views[""], settings, step)
        loss, logs = loss + prior, logs | prior_logs
        if fields.PARTNER in views:
            logs["partner_gaussians"] = len(views[fields.PARTNER])
        logs["sh_degree"] = degree
        return StepResult(loss, logs, {"fields": infos})

    def _regularisers(self, g: Gaussians, parts: dict) -> torch.Tensor:
        """Weighted opacity and scale regularisers of one field; their unweighted values go into `parts`."""
        cfg = self.cfg
        loss = g.means.new_zeros(())
        if cfg.opacity_weight > 0:
            opacity = g.opacities.mean()
            parts["opacity"] = opacity
            loss = loss + cfg.opacity_weight * opacity
        if cfg.scale_weight > 0:
            scale = g.scales.mean() / self.scene_scale
            parts["scale"] = scale
            loss = loss + cfg.scale_weight * scale
        return loss

    def _info(self, g: Gaussians, out: RenderOutput, cameras: Cameras) -> dict:
        info = dict(out.info)
        if self.cfg.strategy.floater_prune:
            info["floater_seen"], info["floater_front"] = floater_votes(
                g.means, out, cameras, self.cfg.strategy.floater_margin
            )
        return info

    def _pseudo_view_loss(
        self, pair: list[Gaussians], settings: RenderSettings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L1 between the two fields' renders of one pseudo view (CoR-GS) and the depth smoothness of both renders
        (RegNeRF); both fields get the gradient of each."""
        assert self._cameras is not None
        camera = sample_pseudo_camera(self._cameras, self._neighbours, pivot=self._pivot)
        a, b = (render(g, camera, settings) for g in pair)
        smooth = depth_smoothness(a.depth, a.alpha) + depth_smoothness(b.depth, b.alpha)
        return l1(a.rgb, b.rgb), smooth

    @torch.no_grad()
    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput:
        if t is not None:
            raise ValueError("the sparse-view pipeline has no time; t must be None")
        return render(self.gaussians, cameras, self.settings())


def build(cfg: SparseViewConfig, scene: SceneData, device: torch.device) -> SparseViewPipeline:
    background = cfg.background or scene.background or (0.0, 0.0, 0.0)
    gaussians = init_gaussians(scene, cfg.init)
    if cfg.co_reg.enabled:
        partner_init = dataclasses.replace(cfg.init, seed=cfg.co_reg.partner_seed)
        gaussians = fields.with_partner(gaussians, init_gaussians(scene, partner_init))
    return SparseViewPipeline(cfg, gaussians.to(device), tuple(background), scene_extent(scene))
