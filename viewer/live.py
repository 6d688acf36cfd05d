"""Live training in the viewer: a trainer callback that publishes snapshots and lets the GUI pause training.

The callback runs in the training thread after every optimiser step. With no client connected it only reads a
flag and returns, so training runs at full speed (see bench/viewer.py). With clients, it publishes a detached copy
of the parameters at most every `publish_every` seconds; render threads draw from that copy while training goes on.
While paused it blocks the training thread (the viewer keeps serving), waking every 50 ms so Ctrl-C still works.
"""

import threading
import time

from splat4d.cameras import Cameras
from splat4d.pipeline import Pipeline
from viewer.scene import SceneSource, ViewedScene, detached_copy


class LiveTraining:
    """Trainer callback (`Trainer(callbacks=[live])`) feeding `source` and obeying pause/resume."""

    def __init__(
        self, source: SceneSource, cameras: Cameras | None = None, publish_every: float = 1.0
    ) -> None:
        self.source = source
        self.cameras = cameras
        self.publish_every = publish_every
        self.watchers = 0
        """Number of connected clients (set by the viewer); 0 makes the callback free."""
        self.step = 0
        self.total_steps: int | None = None
        self.done = False
        self._paused = threading.Event()
        self._last_publish = -float("inf")
        self._published_step = -1

    # -- GUI side ---------------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    # -- training side ----------------------------------------------------------------------------------------------
    def publish(self, step: int, pipeline: Pipeline) -> None:
        """Publish a copy of the pipeline's current scene, now."""
        scene = ViewedScene(detached_copy(pipeline.gaussians), pipeline.settings(), self.cameras, step)
        self.source.publish(scene)
        self._last_publish = time.monotonic()
        self._published_step = step

    def __call__(self, step: int, pipeline: Pipeline) -> None:
        self.step = step
        if self._paused.is_set():
            if self._published_step != step:
                self.publish(step, pipeline)  # show exactly the paused state
            while self._paused.is_set():
                time.sleep(0.05)
            return
        if self.watchers and time.monotonic() - self._last_publish >= self.publish_every:
            self.publish(step, pipeline)

    def finish(self, step: int, pipeline: Pipeline) -> None:
        """Training is over: publish the final scene (whether or not anyone is watching yet)."""
        self.done = True
        self.step = step
        self.publish(step, pipeline)
