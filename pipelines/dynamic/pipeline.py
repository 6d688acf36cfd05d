"""The dynamic training step: render the batch's camera at its capture time, photometric loss plus the
temporal-opacity, motion-smoothness, motion-sparsity, lifespan-floor and local-rigidity regularisers (`regularizers`).

Run it with `splat4d reconstruct DATASET -o OUT --pipeline dynamic` (see `--help`).
"""

import torch

from pipelines.dynamic import regularizers
from pipelines.dynamic.config import DynamicConfig, rigidity_weight_for
from pipelines.dynamic.scene import is_monocular
from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians4D
from splat4d.initialization import init_gaussians_4d
from splat4d.losses import photometric
from splat4d.metrics import psnr
from splat4d.pipeline import StepResult
from splat4d.render import RenderOutput, RenderSettings, render


class DynamicPipeline:
    def __init__(
        self,
        cfg: DynamicConfig,
        gaussians: Gaussians4D,
        background: tuple[float, float, float],
        rigidity_weight: float = 0.0,
    ) -> None:
        """`rigidity_weight`: the local-rigidity weight, resolved for the scene (`rigidity_weight_for`)."""
        self.cfg = cfg
        self.gaussians = gaussians
        self.background = background
        self.rigidity_weight = rigidity_weight

    def settings(self, sh_degree: int | None = None) -> RenderSettings:
        return RenderSettings(
            sh_degree=sh_degree, background=self.background, antialiased=self.cfg.antialiased
        )

    def train_step(self, batch: Batch, step: int) -> StepResult:
        cfg = self.cfg
        degree = min(step // cfg.sh_degree_interval, self.gaussians.sh_degree)
        out = render(self.gaussians, batch.cameras, self.settings(degree))
        loss, parts = photometric(out.rgb, batch.rgb, cfg.ssim_lambda, batch.mask)
        logs = {k: float(v.detach()) for k, v in parts.items()}
        if cfg.temporal_opacity_weight > 0:
            reg = regularizers.temporal_opacity(self.gaussians, out.info["temporal_weights"])
            loss = loss + cfg.temporal_opacity_weight * reg
            logs["temporal_opacity"] = float(reg.detach())
        if cfg.motion_smoothness_weight > 0:
            kept = out.info["kept_ids"]
            sliced_means = self.gaussians.means4[kept, :3].detach()  # neighbourhoods only: no gradient needed
            reg = regularizers.motion_smoothness(self.gaussians, kept, sliced_means)
            loss = loss + cfg.motion_smoothness_weight * reg
            logs["motion_smoothness"] = float(reg.detach())
        if cfg.motion_sparsity_weight > 0:
            reg = regularizers.motion_sparsity(self.gaussians, out.info["kept_ids"])
            loss = loss + cfg.motion_sparsity_weight * reg
            logs["motion_sparsity"] = float(reg.detach())
        if cfg.lifespan_floor > 0 and cfg.lifespan_weight > 0:
            reg = regularizers.lifespan_floor(self.gaussians, out.info["kept_ids"], cfg.lifespan_floor)
            loss = loss + cfg.lifespan_weight * reg
            logs["lifespan_floor"] = float(reg.detach())
        if self.rigidity_weight > 0:
            reg = regularizers.local_rigidity(self.gaussians, out.info["kept_ids"], out.info["sliced_means"])
            loss = loss + self.rigidity_weight * reg
            logs["rigidity"] = float(reg.detach())
        with torch.no_grad():
            logs["psnr"] = float(psnr(out.rgb.detach(), batch.rgb).mean())
            logs["sh_degree"] = degree
        return StepResult(loss, logs, out.info)

    @torch.no_grad()
    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput:
        return render(self.gaussians, cameras, self.settings(), t=t)


def build(cfg: DynamicConfig, scene: SceneData, device: torch.device) -> DynamicPipeline:
    if scene.cameras.times is None:
        raise DatasetError(
            f"{cfg.data.path}: the dynamic pipeline needs a capture time per image (`time` in transforms.json, "
            "D-NeRF style); this dataset has none — use the static pipeline"
        )
    background = cfg.background or scene.background or (0.0, 0.0, 0.0)
    gaussians = init_gaussians_4d(scene, cfg.init).to(device)
    return DynamicPipeline(cfg, gaussians, tuple(background), rigidity_weight_for(cfg, is_monocular(scene)))
