"""The static training step: render the batch's camera, (1 − λ)·L1 + λ·D-SSIM against its photo, plus the
geometry regularisers when `StaticConfig.geometry` enables them (depth–normal consistency and flattening).

Run it with `splat4d reconstruct PHOTOS_OR_DATASET -o OUT` (see `--help` for presets and options).
"""

import torch

from pipelines.splat_pipeline import SplatPipeline
from pipelines.static.config import StaticConfig
from pipelines.static.multiview import grey, neighbours, patch_ncc_loss, plane_maps
from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.data.dataset import Batch, ImageDataset
from splat4d.gaussians import Gaussians
from splat4d.initialization import init_gaussians, scene_extent
from splat4d.losses import depth_to_normals, edge_aware_weight, flatten, normal_consistency, photometric
from splat4d.metrics import psnr
from splat4d.pipeline import StepResult
from splat4d.render import RenderOutput, render


class StaticPipeline(SplatPipeline):
    def __init__(
        self,
        cfg: StaticConfig,
        gaussians: Gaussians,
        background: tuple[float, float, float],
        scene_scale: float = 1.0,
    ) -> None:
        super().__init__(cfg, gaussians, background, scene_scale)
        self._views: ImageDataset | None = None
        self._neighbours: list[list[int]] = []
        self._absgrad = bool(getattr(cfg.strategy, "absgrad", False))

    def train_step(self, batch: Batch, step: int) -> StepResult:
        degree = min(step // self.cfg.sh_degree_interval, self.gaussians.sh_degree)
        geo = self.cfg.geometry
        regularise = geo.enabled and step >= geo.start_fraction * self.cfg.trainer.steps
        out = render(
            self.gaussians, batch.cameras, self.settings(degree, absgrad=self._absgrad, normals=regularise)
        )
        loss, parts = photometric(out.rgb, batch.rgb, self.cfg.ssim_lambda, batch.mask)
        if regularise:
            loss = loss + self._geometry_loss(out, batch, parts)
        with torch.no_grad():
            logs = {k: float(v) for k, v in parts.items()}
            logs["psnr"] = float(psnr(out.rgb.detach(), batch.rgb).mean())
            logs["sh_degree"] = degree
        return StepResult(loss, logs, out.info)

    def bind_views(self, views: ImageDataset) -> None:
        """The training images batches are drawn from (called by the trainer, again when the resolution changes):
        the multi-view term compares each batch with a neighbouring one of these."""
        if self._views is None or self._views.indices != views.indices:
            self._neighbours = neighbours(views.cameras, self.cfg.geometry.multiview_neighbours)
        self._views = views

    def _multiview_loss(self, out: RenderOutput, batch: Batch) -> tuple[torch.Tensor, int]:
        views = self._views
        if views is None or batch.index not in views.indices:
            return out.rgb.new_zeros(()), 0
        candidates = self._neighbours[views.indices.index(batch.index)]
        if not candidates:
            return out.rgb.new_zeros(()), 0
        nbr = views[candidates[int(torch.randint(len(candidates), ()))]]
        normals, dists = plane_maps(out.normals[0], out.planar_depth[0, ..., 0], batch.cameras.Ks[0])
        valid = (out.alpha[0, ..., 0].detach() > 0.5) & (out.planar_depth[0, ..., 0].detach() > 0)
        if batch.mask is not None:
            valid &= batch.mask[0, ..., 0] > 0.5
        T_nbr_ref = nbr.cameras.T_cam_world[0] @ batch.cameras.T_world_cam[0]
        return patch_ncc_loss(
            grey(batch.rgb[0]), grey(nbr.rgb[0]), batch.cameras.Ks[0], nbr.cameras.Ks[0], T_nbr_ref,
            normals, dists, valid, self.cfg.geometry.multiview_patches,
        )  # fmt: skip

    def _geometry_loss(self, out: RenderOutput, batch: Batch, parts: dict) -> torch.Tensor:
        """The weighted geometry regularisers; their unweighted values go into `parts` for the log."""
        geo = self.cfg.geometry
        loss = out.rgb.new_zeros(())
        if geo.normal_weight > 0 and out.normals is not None:
            from_depth, valid = depth_to_normals(out.planar_depth, batch.cameras.Ks)
            weight = edge_aware_weight(batch.rgb) * valid * (out.alpha.detach() > 0.5)
            if batch.mask is not None:
                weight = weight * batch.mask
            parts["normal"] = normal_consistency(out.normals, from_depth, weight)
            loss = loss + geo.normal_weight * parts["normal"]
        if geo.multiview_weight > 0 and out.normals is not None:
            term, used = self._multiview_loss(out, batch)
            if used:
                parts["multiview"] = term
                loss = loss + geo.multiview_weight * term
        if geo.flatten_weight > 0:
            parts["flatten"] = flatten(self.gaussians.scales, self.scene_scale)
            loss = loss + geo.flatten_weight * parts["flatten"]
        return loss

    @torch.no_grad()
    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput:
        if t is not None:
            raise ValueError("the static pipeline has no time; t must be None")
        return render(self.gaussians, cameras, self.settings())


def build(cfg: StaticConfig, scene: SceneData, device: torch.device) -> StaticPipeline:
    background = cfg.background or scene.background or (0.0, 0.0, 0.0)
    gaussians = init_gaussians(scene, cfg.init).to(device)
    return StaticPipeline(cfg, gaussians, tuple(background), scene_extent(scene))
