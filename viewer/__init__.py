"""The viser web viewer: renders a splat4d scene live in the browser (`splat4d view`, `reconstruct --viewer`)."""

from viewer.app import ViewerApp, ViewerConfig
from viewer.live import LiveTraining
from viewer.scene import SceneSource, ViewedScene, ViewSceneError, load_view_scene
from viewer.training_view import LiveViewer

__all__ = [
    "LiveTraining",
    "LiveViewer",
    "SceneSource",
    "ViewSceneError",
    "ViewedScene",
    "ViewerApp",
    "ViewerConfig",
    "load_view_scene",
]
