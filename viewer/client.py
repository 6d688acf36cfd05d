"""One browser tab: a thread that renders its camera on the server and sends the image as the page's background.

Each tab has its own render path (`ClientRenderer.server_side`): while a tab shows viser's WebGL splats instead, its
thread renders nothing and clears the background image it had sent, so that the splats are not hidden behind it.
While the camera moves the frames are small (`moving_resolution`, the longer side), so that dragging stays fluid;
once it has been still for `still_after` seconds one full-resolution frame (`max_resolution`) follows. A frame is
rendered only when something it depends on changed: the camera, the scene version, the time or the render mode.
A client that goes away mid-render makes its send fail; the thread then ends quietly and nobody else notices.
"""

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import viser

from splat4d.evaluate import colorize_depth
from splat4d.render import render
from viewer.camera import fit_resolution, viser_to_cameras
from viewer.scene import SceneSource


class ViewState(NamedTuple):
    """Everything shared by the tabs that a frame depends on besides the camera."""

    scene_version: int
    time: float
    mode: str
    max_resolution: int
    moving_resolution: int


class ClientRenderer:
    def __init__(
        self,
        client: viser.ClientHandle,
        source: SceneSource,
        state: Callable[[], ViewState],
        render_lock: threading.Lock,
        device: torch.device,
        still_after: float = 0.2,
        jpeg_quality: int = 85,
        server_side: bool = True,
    ) -> None:
        self.client = client
        self.server_side = server_side
        """This tab's render path: frames rendered here (True), or viser's WebGL splats in the browser (False)."""
        self.source = source
        self.state = state
        self.render_lock = render_lock
        self.device = device
        self.still_after = still_after
        self.jpeg_quality = jpeg_quality
        self.frames_sent = 0
        self.last_frame: np.ndarray | None = None
        self.last_scene_version = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_move = time.monotonic()
        self._sent_key: tuple | None = None
        self._sent_full = False
        self._background_shown = False
        client.camera.on_update(self._camera_moved)
        self._thread = threading.Thread(
            target=self._run, name=f"viewer-client-{client.client_id}", daemon=True
        )
        self._thread.start()

    def _camera_moved(self, _camera: Any) -> None:
        self._last_move = time.monotonic()
        self._wake.set()

    def invalidate(self) -> None:
        """Something shared changed (scene, time, mode): render again."""
        self._wake.set()

    def set_server_side(self, server_side: bool) -> None:
        """Switch this tab's render path (the thread clears or resumes its background image)."""
        self.server_side = server_side
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _camera_key(self) -> tuple | None:
        cam = self.client.camera
        try:
            width, height = int(cam.image_width), int(cam.image_height)
        except (AttributeError, TypeError):
            return None
        if width <= 0 or height <= 0:
            return None
        return (
            tuple(np.round(cam.wxyz, 6)),
            tuple(np.round(cam.position, 6)),
            round(float(cam.fov), 6),
            width,
            height,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.still_after / 2)
            self._wake.clear()
            if self._stop.is_set():
                break
            state = self.state()
            if not self.server_side:
                self._sent_key = None
                self._clear_background()
                continue
            camera = self._camera_key()
            if camera is None or state.scene_version == 0:
                continue
            key = (camera, state)
            moving = time.monotonic() - self._last_move < self.still_after
            if key == self._sent_key and (moving or self._sent_full):
                continue
            try:
                sent = self._send(camera, state, state.moving_resolution if moving else state.max_resolution)
            except Exception as exc:  # the client left mid-render, or the scene could not be rendered
                if self._stop.is_set():
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
                continue
            if sent:
                self._sent_key, self._sent_full = key, not moving

    def _clear_background(self) -> None:
        if not self._background_shown:
            return
        try:
            self.client.scene.set_background_image(None)
        except Exception as exc:  # the client left
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self._background_shown = False

    def _send(self, camera: tuple, state: ViewState, max_side: int) -> bool:
        """Render the camera and send the frame; False when there was nothing to send it for (no scene yet, the
        tab closing or switched to the browser's splats mid-render)."""
        scene, _ = self.source.current()
        if scene is None:
            return False
        wxyz, position, fov, canvas_w, canvas_h = camera
        width, height = fit_resolution(canvas_w, canvas_h, max_side)
        cameras = viser_to_cameras(np.array(wxyz), np.array(position), fov, width, height, self.device)
        t = state.time if scene.is_4d else None
        with self.render_lock, torch.no_grad():
            out = render(scene.at(t), cameras, scene.settings, t=t)
        image = frame_image(out.rgb[0], out.alpha[0], out.depth[0], state.mode)
        if self._stop.is_set() or not self.server_side:
            return False
        self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=self.jpeg_quality)
        self._background_shown = True
        self.last_frame = image
        self.last_scene_version = state.scene_version
        self.frames_sent += 1
        return True


def frame_image(rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor, mode: str) -> np.ndarray:
    """[H, W, 3] uint8 image of one render in `mode` ("rgb", "depth": colour-mapped, "alpha": grey)."""
    if mode == "depth":
        return colorize_depth(depth[..., 0].float().cpu().numpy())
    if mode == "alpha":
        a = (alpha[..., 0].float().clamp(0, 1) * 255).round().byte().cpu().numpy()
        return np.repeat(a[..., None], 3, axis=-1)
    return (rgb.float().clamp(0, 1) * 255).round().byte().cpu().numpy()
