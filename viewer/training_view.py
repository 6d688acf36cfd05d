"""`LiveViewer`: the viewer attached to a scene being trained (`splat4d reconstruct --viewer`).

Hand `live.training` to the trainer as a step callback and `live.on_built` to `reconstruct(on_built=...)`: the
browser shows the initial scene as soon as the pipeline exists, then snapshots while anyone watches.
"""

import torch
from rich.console import Console

from splat4d.data.base import SceneData
from splat4d.pipeline import Pipeline
from viewer.app import ViewerApp, ViewerConfig
from viewer.live import LiveTraining
from viewer.scene import SceneSource


class LiveViewer:
    def __init__(
        self,
        cfg: ViewerConfig,
        device: torch.device | str,
        total_steps: int | None = None,
        publish_every: float = 1.0,
        console: Console | None = None,
    ) -> None:
        self.source = SceneSource()
        self.training = LiveTraining(self.source, publish_every=publish_every)
        self.training.total_steps = total_steps
        self.app = ViewerApp(self.source, cfg, device, training=self.training, console=console)

    def on_built(self, pipeline: Pipeline, scene: SceneData) -> None:
        self.training.cameras = scene.cameras[torch.tensor(scene.train_indices)]
        self.training.publish(0, pipeline)

    def finish(self, step: int, pipeline: Pipeline) -> None:
        self.training.finish(step, pipeline)

    def close(self) -> None:
        self.app.close()
