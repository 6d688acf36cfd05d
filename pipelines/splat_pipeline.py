"""What the static and the sparse-view pipelines share: one set of 3D Gaussians, the scene's background and scale,
and the render settings their configs choose (`antialiased`)."""

from typing import Any

from splat4d.gaussians import Gaussians
from splat4d.render import RenderSettings


class SplatPipeline:
    """Base of the 3D pipelines: holds `cfg` (with an `antialiased` flag), the Gaussians, the background colour and
    the scene scale; subclasses add their training step."""

    def __init__(
        self, cfg: Any, gaussians: Gaussians, background: tuple[float, float, float], scene_scale: float = 1.0
    ) -> None:
        self.cfg = cfg
        self.gaussians = gaussians
        self.background = background
        self.scene_scale = scene_scale

    def settings(self, sh_degree: int | None = None, **flags: bool) -> RenderSettings:
        """Render settings at `sh_degree` (None: all bands), with extra `RenderSettings` flags (absgrad, normals)."""
        return RenderSettings(
            sh_degree=sh_degree, background=self.background, antialiased=self.cfg.antialiased, **flags
        )
