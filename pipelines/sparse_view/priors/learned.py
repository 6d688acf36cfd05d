"""`LearnedPriors`: what the sparse-view training step asks of the learned priors, whichever are configured.

Depth terms act on every field's render of the training photo (its prior disparity is computed once and shared);
the diffusion terms render pseudo views of the primary field only (each costs a render and a pass through the
diffusion model; the partner follows through co-regularisation). Nothing is loaded before training starts, so a
scene folder trained with priors is evaluated, viewed and exported without them. Neither the depth maps nor the
repaired views are checkpointed: a resumed run computes the former again and repairs new views at its first step.
"""

from torch import Tensor

from pipelines.sparse_view.priors.config import PriorsConfig
from pipelines.sparse_view.priors.depth import DepthPrior
from pipelines.sparse_view.priors.diffusion import DiffusionPrior
from pipelines.sparse_view.priors.repair import RepairedViews
from pipelines.sparse_view.pseudo_views import sample_pseudo_camera
from splat4d.cameras import Cameras
from splat4d.data.dataset import Batch, ImageDataset
from splat4d.gaussians import Gaussians
from splat4d.losses import photometric
from splat4d.render import RenderOutput, RenderSettings, render


class LearnedPriors:
    """The configured priors (none, depth, diffusion or both) and the state they keep between steps: the training
    cameras pseudo views are drawn between, and the repaired views."""

    def __init__(self, cfg: PriorsConfig) -> None:
        self.cfg = cfg
        self.depth = DepthPrior(cfg.depth, cfg.half_precision) if cfg.depth.model is not None else None
        self.diffusion = (
            DiffusionPrior(cfg.diffusion, cfg.half_precision) if cfg.diffusion.model is not None else None
        )
        self.repaired = RepairedViews()
        self._cameras: Cameras | None = None
        self._neighbours: list[list[int]] = []
        self._pivot: Tensor | None = None

    def bind_views(
        self, views: ImageDataset, neighbours: list[list[int]], pivot: Tensor | None = None
    ) -> None:
        """The training views and each one's neighbours (pseudo views are drawn between them, along the orbit
        about `pivot` when given); called again when the training resolution changes, which drops the repaired
        views (the next step repairs new ones)."""
        if self._cameras is not None and self._cameras.sizes != views.cameras.sizes:
            self.repaired.clear()
        self._cameras, self._neighbours, self._pivot = views.cameras, neighbours, pivot
        if self.depth is not None:
            self.depth.bind_views(views)

    def view_loss(self, out: RenderOutput, batch: Batch, step: int, parts: dict[str, Tensor]) -> Tensor:
        """Weighted depth terms of one field's render of the batch; their unweighted values go into `parts`."""
        if self.depth is None or step < self.cfg.depth.start:
            return out.depth.new_zeros(())
        return self.depth.loss(out, batch, parts)

    def novel_view_loss(
        self, g: Gaussians, settings: RenderSettings, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        """Weighted diffusion terms of field `g` on pseudo views, and their unweighted values for the log: sds
        (score distillation of a new pseudo view) and repair (photometric term against a repaired view, after a
        repair pass at the start step and every `repair_every` steps from there)."""
        cfg = self.cfg.diffusion
        loss = g.means.new_zeros(())
        if self.diffusion is None or step < cfg.start or self._cameras is None:
            return loss, {}
        logs: dict[str, float] = {}
        if cfg.sds_weight > 0:
            rgb = render(g, self._pseudo_camera(), settings).rgb
            sds = self.diffusion.sds_loss(rgb)
            loss = loss + cfg.sds_weight * sds
            logs["sds"] = float(sds.detach())
        if cfg.repair_every > 0:
            if not self.repaired or (step - cfg.start) % cfg.repair_every == 0:
                cameras = [self._pseudo_camera() for _ in range(cfg.repair_views)]
                self.repaired.refresh(cameras, lambda c: render(g, c, settings).rgb, self.diffusion.repair)
            view = self.repaired.next()
            term, _ = photometric(render(g, view.camera, settings).rgb, view.rgb, cfg.repair_ssim_lambda)
            loss = loss + cfg.repair_weight * term
            logs["repair"] = float(term.detach())
        return loss, logs

    def _pseudo_camera(self) -> Cameras:
        assert self._cameras is not None
        return sample_pseudo_camera(self._cameras, self._neighbours, pivot=self._pivot)
