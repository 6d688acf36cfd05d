"""The static training step: render the batch's camera, (1 − λ)·L1 + λ·D-SSIM against its photo.

Run it with `splat4d reconstruct PHOTOS_OR_DATASET -o OUT` (see `--help` for presets and options).
"""

import torch

from pipelines.static.config import StaticConfig
from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians
from splat4d.initialization import init_gaussians
from splat4d.losses import photometric
from splat4d.metrics import psnr
from splat4d.pipeline import StepResult
from splat4d.render import RenderOutput, RenderSettings, render


class StaticPipeline:
    def __init__(
        self, cfg: StaticConfig, gaussians: Gaussians, background: tuple[float, float, float]
    ) -> None:
        self.cfg = cfg
        self.gaussians = gaussians
        self.background = background
        self._absgrad = bool(getattr(cfg.strategy, "absgrad", False))

    def settings(self, sh_degree: int | None = None, absgrad: bool = False) -> RenderSettings:
        return RenderSettings(
            sh_degree=sh_degree, background=self.background, antialiased=self.cfg.antialiased, absgrad=absgrad
        )

    def train_step(self, batch: Batch, step: int) -> StepResult:
        degree = min(step // self.cfg.sh_degree_interval, self.gaussians.sh_degree)
        out = render(self.gaussians, batch.cameras, self.settings(degree, self._absgrad))
        loss, parts = photometric(out.rgb, batch.rgb, self.cfg.ssim_lambda, batch.mask)
        with torch.no_grad():
            logs = {k: float(v) for k, v in parts.items()}
            logs["psnr"] = float(psnr(out.rgb.detach(), batch.rgb).mean())
            logs["sh_degree"] = degree
        return StepResult(loss, logs, out.info)

    @torch.no_grad()
    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput:
        if t is not None:
            raise ValueError("the static pipeline has no time; t must be None")
        return render(self.gaussians, cameras, self.settings())


def build(cfg: StaticConfig, scene: SceneData, device: torch.device) -> StaticPipeline:
    background = cfg.background or scene.background or (0.0, 0.0, 0.0)
    return StaticPipeline(cfg, init_gaussians(scene, cfg.init).to(device), tuple(background))
