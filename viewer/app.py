"""`ViewerApp`: the viser server, its GUI, and one `ClientRenderer` per connected browser tab.

GUI: the render path, per tab (server-side images from splat4d's rasterizer, or viser's WebGL splats in that
browser: a dropdown each tab gets for itself, so switching one tab leaves the others as they are); shared by all
tabs, the render mode (RGB, depth, alpha) and resolution; for 4D scenes a time slider, play/pause, speed and frame
stepping; a scene panel (number of Gaussians, bounds, training cameras as frustums: click one to look through it);
during live training, the step and a pause/resume button.
"""

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import viser
from rich.console import Console

from splat4d.progress import make_console
from viewer.camera import cameras_to_viser
from viewer.client import ClientRenderer, ViewState
from viewer.live import LiveTraining
from viewer.scene import SceneSource, ViewedScene
from viewer.splats import browser_splats

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MODES = {"RGB": "rgb", "Depth": "depth", "Alpha": "alpha"}
PATHS = {"Server (splat4d rasterizer)": True, "Browser (WebGL splats)": False}


@dataclass
class ViewerConfig:
    """The web viewer's address and rendering."""

    host: str = "127.0.0.1"
    """Address to listen on. The default is reachable from this machine only; 0.0.0.0 exposes the scene (and
    pause/resume of training) to anyone who can reach this machine."""
    port: int = 8080
    """Port (the next free one is taken when it is in use)."""
    render_path: Literal["server", "browser"] = "server"
    """Initial render path: images rendered by splat4d, or viser's WebGL splats (3D colour only, SH band 0)."""
    max_resolution: int = 1024
    """Longer side of frames rendered once the camera is still."""
    moving_resolution: int = 320
    """Longer side of frames rendered while the camera moves."""
    still_after: float = 0.2
    """Seconds without camera motion before the full-resolution frame."""
    jpeg_quality: int = 85
    max_frustums: int = 200
    """At most this many training cameras are drawn (evenly subsampled)."""
    sweep_seconds: float = 5.0
    """4D playback: seconds for the whole time range at speed 1."""


class ViewerApp:
    def __init__(
        self,
        source: SceneSource,
        cfg: ViewerConfig | None = None,
        device: torch.device | str = "cpu",
        training: LiveTraining | None = None,
        console: Console | None = None,
    ) -> None:
        self.cfg = cfg = cfg or ViewerConfig()
        self.source = source
        self.device = torch.device(device)
        self.training = training
        self.console = console or make_console()
        if cfg.host not in LOCAL_HOSTS:
            self.console.print(
                f"[yellow]warning:[/] the viewer listens on {cfg.host}: anyone who can reach this machine on port "
                f"{cfg.port} sees the scene{' and can pause training' if training else ''}"
            )
        self.server = viser.ViserServer(host=cfg.host, port=cfg.port, verbose=False)
        self.server.gui.configure_theme(show_share_button=False)
        self.server.gui.main_panel.dock_right()
        self.time = 0.0
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._renderers: dict[int, ClientRenderer] = {}
        self._shown_version = -1
        self._splats_lock = threading.Lock()
        self._splats: dict[int, Any] = {}
        """Client id → the splats handle sent to that tab (tabs on the browser render path only)."""
        self._frustums: list[Any] = []
        self._closed = threading.Event()
        self._build_gui()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        source.on_publish(self._scene_changed)
        self._scene_changed()
        self._ticker = threading.Thread(target=self._tick, name="viewer-ticker", daemon=True)
        self._ticker.start()

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = "localhost" if self.cfg.host in ("127.0.0.1", "::1") else self.cfg.host
        return f"http://{host}:{self.port}"

    @property
    def renderers(self) -> dict[int, ClientRenderer]:
        with self._lock:
            return dict(self._renderers)

    # -- GUI -------------------------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        gui = self.server.gui
        # Each tab adds its own "Path" dropdown at the top of this folder (`_connect`).
        with gui.add_folder("Render") as self.gui_render_folder:
            self.gui_mode = gui.add_dropdown("Mode", tuple(MODES), initial_value="RGB")
            self.gui_resolution = gui.add_slider(
                "Resolution", min=128, max=4096, step=64, initial_value=self.cfg.max_resolution
            )
        self.gui_mode.on_update(lambda _: self._invalidate())
        self.gui_resolution.on_update(lambda _: self._invalidate())
        with gui.add_folder("Time") as self.gui_time_folder:
            self.gui_time = gui.add_slider("t", min=0.0, max=1.0, step=0.001, initial_value=0.0)
            self.gui_play = gui.add_checkbox("Play", initial_value=False)
            self.gui_speed = gui.add_slider("Speed", min=0.1, max=4.0, step=0.1, initial_value=1.0)
            buttons = gui.add_button_group("Frame", ("◀ previous", "next ▶"))
        self.gui_time_folder.visible = False
        self.gui_time.on_update(lambda _: self._set_time(float(self.gui_time.value)))
        buttons.on_click(lambda event: self._step_frame(-1 if event.target.value.startswith("◀") else 1))
        with gui.add_folder("Scene"):
            self.gui_stats = gui.add_markdown("waiting for a scene ...")
            self.gui_show_cameras = gui.add_checkbox("Show cameras", initial_value=True)
        self.gui_show_cameras.on_update(lambda _: self._set_frustums_visible(self.gui_show_cameras.value))
        if self.training is not None:
            with gui.add_folder("Training"):
                self.gui_training = gui.add_markdown("starting ...")
                self.gui_pause = gui.add_button("Pause training")
            self.gui_pause.on_click(lambda _: self._toggle_pause())

    def view_state(self) -> ViewState:
        scene_version = self.source.current()[1]
        return ViewState(
            scene_version=scene_version,
            time=round(self.time, 6),
            mode=MODES[self.gui_mode.value],
            max_resolution=int(self.gui_resolution.value),
            moving_resolution=min(self.cfg.moving_resolution, int(self.gui_resolution.value)),
        )

    def _invalidate(self) -> None:
        for renderer in self.renderers.values():
            renderer.invalidate()

    def _set_time(self, t: float) -> None:
        t = min(max(t, 0.0), 1.0)
        if t == self.time:
            return
        self.time = t
        if abs(float(self.gui_time.value) - t) > 1e-9:
            self.gui_time.value = t
        self._invalidate()
        scene, _ = self.source.current()
        if scene is not None and scene.is_4d:
            self._send_splats(scene)

    def _step_frame(self, direction: int) -> None:
        scene, _ = self.source.current()
        times = scene.frame_times if scene is not None else []
        if not times:
            times = [i / 30 for i in range(31)]
        if direction > 0:
            later = [t for t in times if t > self.time + 1e-6]
            self._set_time(later[0] if later else times[0])
        else:
            earlier = [t for t in times if t < self.time - 1e-6]
            self._set_time(earlier[-1] if earlier else times[-1])

    def _toggle_pause(self) -> None:
        assert self.training is not None
        if self.training.paused:
            self.training.resume()
            self.gui_pause.label = "Pause training"
        else:
            self.training.pause()
            self.gui_pause.label = "Resume training"

    # -- scene -----------------------------------------------------------------------------------------------------
    def _scene_changed(self) -> None:
        scene, version = self.source.current()
        if scene is None:
            return
        with self._lock:
            first = self._shown_version <= 0
            cameras_changed = scene.cameras is not None and not self._frustums
            self._shown_version = version
        if first:
            self.gui_time_folder.visible = scene.is_4d
            self._set_up_direction(scene)
        if cameras_changed:
            self._add_frustums(scene)
            for renderer in self.renderers.values():  # tabs opened before the cameras were known
                self.move_client_to_camera(renderer.client, 0)
        self.gui_stats.content = _stats_markdown(scene)
        self._send_splats(scene)
        self._invalidate()

    def _set_up_direction(self, scene: ViewedScene) -> None:
        if scene.cameras is None:
            return
        # OpenCV cameras look along +z with +y down: the photographers' average "up" is −y.
        up = -scene.cameras.T_world_cam[:, :3, 1].double().mean(0)
        if float(up.norm()) > 1e-6:
            self.server.scene.set_up_direction(tuple((up / up.norm()).tolist()))

    def _add_frustums(self, scene: ViewedScene) -> None:
        cameras = scene.cameras
        if cameras is None or len(cameras) == 0:
            return
        centers = cameras.centers.double()
        spread = float((centers - centers.mean(0)).norm(dim=-1).median()) if len(cameras) > 1 else 1.0
        scale = 0.08 * max(spread, 1e-3)
        n = len(cameras)
        keep = np.unique(np.linspace(0, n - 1, min(n, self.cfg.max_frustums)).round().astype(int))
        for i in keep:
            wxyz, position, fov, aspect = cameras_to_viser(cameras, int(i))
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i}", fov=fov, aspect=aspect, scale=scale, thickness=0.03 * scale, wxyz=wxyz, position=position,
                color=(60, 120, 220), visible=bool(self.gui_show_cameras.value),
            )  # fmt: skip
            frustum.on_click(lambda event, i=int(i): self.move_client_to_camera(event.client, i))
            self._frustums.append(frustum)

    def _set_frustums_visible(self, visible: bool) -> None:
        for frustum in self._frustums:
            frustum.visible = visible

    def move_client_to_camera(self, client: viser.ClientHandle | None, index: int) -> None:
        """Look through training camera `index` (and at its time, for a 4D scene)."""
        scene, _ = self.source.current()
        if client is None or scene is None or scene.cameras is None:
            return
        wxyz, position, fov, _ = cameras_to_viser(scene.cameras, index)
        with client.atomic():
            client.camera.wxyz = wxyz
            client.camera.position = position
            client.camera.fov = fov
        if scene.is_4d and scene.cameras.times is not None:
            self._set_time(float(scene.cameras.times[index]))

    def set_render_path(self, client_id: int, server_side: bool) -> None:
        """Switch one tab between server-rendered images (True) and viser's WebGL splats in its browser (False);
        the other tabs keep theirs."""
        renderer = self.renderers.get(client_id)
        if renderer is None or renderer.server_side == server_side:
            return
        renderer.set_server_side(server_side)  # its thread clears the background image it had sent
        if server_side:
            with self._splats_lock:
                handle = self._splats.pop(client_id, None)
            if handle is not None:
                handle.remove()
        else:
            scene, _ = self.source.current()
            if scene is not None:
                self._send_splats(scene, [renderer])

    def _send_splats(self, scene: ViewedScene, renderers: list[ClientRenderer] | None = None) -> None:
        """Send the scene (at the current time) as WebGL splats to `renderers` (default: every tab on the browser
        render path). A scene with nothing drawable removes their splats instead (viser cannot size an empty
        set)."""
        targets = [r for r in (renderers or self.renderers.values()) if not r.server_side]
        if not targets:
            return
        t = self.time if scene.is_4d else None
        with self._render_lock:  # a streamed scene's segment cache is shared with the render threads
            gaussians = scene.at(t)
        splats = browser_splats(gaussians, t)
        for renderer in targets:
            client_id = renderer.client.client_id
            with self._splats_lock:
                # Switched back meanwhile: `set_render_path` flips the path first, then pops under this lock.
                if renderer.server_side:
                    continue
                if len(splats.centers) == 0:
                    handle = self._splats.pop(client_id, None)
                    if handle is not None:
                        handle.remove()
                    continue
                self._splats[client_id] = renderer.client.scene.add_gaussian_splats(
                    "/splats", splats.centers, splats.covariances, splats.rgbs, splats.opacities
                )

    def splats_sent_to(self, client_id: int) -> bool:
        """Whether the tab `client_id` holds WebGL splats sent by the viewer."""
        with self._splats_lock:
            return client_id in self._splats

    # -- clients ---------------------------------------------------------------------------------------------------
    def _connect(self, client: viser.ClientHandle) -> None:
        server_side = self.cfg.render_path == "server"
        renderer = ClientRenderer(
            client, self.source, self.view_state, self._render_lock, self.device, self.cfg.still_after,
            self.cfg.jpeg_quality, server_side,
        )  # fmt: skip
        with self._lock:
            self._renderers[client.client_id] = renderer
            count = len(self._renderers)
        if self.training is not None:
            self.training.watchers = count
        with self.gui_render_folder:  # this tab's own dropdown, first in the shared "Render" folder
            path = client.gui.add_dropdown(
                "Path", tuple(PATHS), initial_value=_path_label(server_side), order=0.0
            )
        path.on_update(lambda _: self.set_render_path(client.client_id, PATHS[path.value]))
        scene, _ = self.source.current()
        if scene is not None and scene.cameras is not None and len(scene.cameras):
            self.move_client_to_camera(client, 0)
        if scene is not None and not server_side:
            self._send_splats(scene, [renderer])
        renderer.invalidate()

    def _disconnect(self, client: viser.ClientHandle) -> None:
        with self._lock:
            renderer = self._renderers.pop(client.client_id, None)
            count = len(self._renderers)
        with self._splats_lock:
            self._splats.pop(client.client_id, None)  # went with the tab
        if self.training is not None:
            self.training.watchers = count
        if renderer is not None:
            renderer.stop()  # its thread ends after the frame in flight, if any

    def _tick(self) -> None:
        """Playback of 4D time and the training status line, ten times a second."""
        last = time.monotonic()
        while not self._closed.wait(0.1):
            now = time.monotonic()
            dt, last = now - last, now
            if self.gui_play.value and self.gui_time_folder.visible:
                t = self.time + dt * float(self.gui_speed.value) / self.cfg.sweep_seconds
                self._set_time(t - math.floor(t))
            if self.training is not None and self.renderers:
                self.gui_training.content = _training_markdown(self.training)

    def close(self) -> None:
        """Stop serving; waits for render threads to finish their frame (none is left running at exit)."""
        self._closed.set()
        renderers = self.renderers.values()
        for renderer in renderers:
            renderer.stop()
        for renderer in renderers:
            renderer.join(timeout=10)
        self._ticker.join(timeout=2)
        self.server.stop()

    def wait(self) -> None:
        """Serve until Ctrl-C."""
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()


def _path_label(server_side: bool) -> str:
    return next(label for label, value in PATHS.items() if value == server_side)


def _stats_markdown(scene: ViewedScene) -> str:
    lo, hi = scene.bounds()
    box = " × ".join(f"{b - a:.2f}" for a, b in zip(lo, hi, strict=True))
    lines = [
        f"**{scene.num_gaussians:,}** {'4D' if scene.is_4d else '3D'} Gaussians"
        + (" (streamed by time segment)" if scene.stream is not None else ""),
        f"bounds (98%): {box}",
        f"cameras: {0 if scene.cameras is None else len(scene.cameras)}",
    ]
    if scene.step is not None:
        lines.append(f"step: {scene.step:,}")
    return "  \n".join(lines)


def _training_markdown(training: LiveTraining) -> str:
    total = f" / {training.total_steps:,}" if training.total_steps else ""
    state = "done" if training.done else "paused" if training.paused else "running"
    return f"step {training.step:,}{total} — {state}"
