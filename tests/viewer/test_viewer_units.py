"""Viewer parts that need no browser: camera conversions, browser splats, scene loading, live-training control."""

import contextlib
import math
import threading
import time

import numpy as np
import pytest
import torch

import cuda_rasterizer as cr
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.geometry import look_at
from splat4d.io.ply import write_ply, write_ply_4d
from splat4d.render import RenderSettings, render
from tests.viewer.helpers import moving_blob_scene
from viewer import LiveTraining, SceneSource, ViewedScene, ViewSceneError, load_view_scene
from viewer.camera import cameras_to_viser, fit_resolution, intrinsics_from_fov, viser_to_cameras
from viewer.client import frame_image
from viewer.splats import browser_splats


def _random_gaussians(n: int = 200, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        {
            "means": torch.randn(n, 3, generator=g),
            "log_scales": torch.randn(n, 3, generator=g) * 0.3 - 2.5,
            "quats": torch.randn(n, 4, generator=g),
            "opacity_logits": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g),
            "shN": torch.randn(n, 15, 3, generator=g) * 0.1,
        }
    )


def test_fit_resolution_keeps_aspect_and_caps_the_longer_side() -> None:
    assert fit_resolution(1920, 1080, 960) == (960, 540)
    assert fit_resolution(640, 480, 1024) == (640, 480)  # never upscaled
    assert fit_resolution(300, 900, 300) == (100, 300)
    assert fit_resolution(0, 0, 100) == (1, 1)


def test_intrinsics_from_fov_matches_the_vertical_field_of_view() -> None:
    K = intrinsics_from_fov(math.radians(90), 200, 100)
    assert K[1, 1] == pytest.approx(50.0) and K[0, 0] == K[1, 1]
    assert (K[0, 2], K[1, 2]) == (100.0, 50.0)


def test_camera_round_trip_through_viser_parameters() -> None:
    T = look_at(torch.tensor([2.0, -1.0, 3.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None]
    K = torch.tensor([[[120.0, 0, 80], [0, 120.0, 60], [0, 0, 1]]])
    cams = Cameras(T.float(), K, 160, 120)
    wxyz, position, fov, aspect = cameras_to_viser(cams, 0)
    assert aspect == pytest.approx(160 / 120)
    back = viser_to_cameras(wxyz, position, fov, 160, 120)
    torch.testing.assert_close(back.T_world_cam, cams.T_world_cam, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.Ks, cams.Ks, atol=1e-4, rtol=0)


def test_browser_splats_carry_the_rendered_covariances_colours_and_opacities() -> None:
    g = _random_gaussians()
    splats = browser_splats(g)
    packed = cr.quat_scale_to_covar(g.quats, g.scales)
    iu = torch.triu_indices(3, 3)
    np.testing.assert_allclose(
        splats.covariances[:, iu[0], iu[1]], packed.detach().numpy(), rtol=1e-4, atol=1e-9
    )
    np.testing.assert_allclose(splats.covariances, splats.covariances.transpose(0, 2, 1))
    assert splats.rgbs.min() >= 0 and splats.rgbs.max() <= 1
    np.testing.assert_allclose(splats.opacities[:, 0], g.opacities.detach().numpy(), rtol=1e-6)
    assert splats.centers.shape == (200, 3)


def test_browser_splats_leave_out_diverged_gaussians_and_fit_float16() -> None:
    from viewer.splats import MAX_SPLAT_SCALE

    g = _random_gaussians(6)
    with torch.no_grad():
        g.params["means"][1, 0] = float("nan")
        g.params["log_scales"][2, 1] = float("inf")
        g.params["quats"][3] = 0.0
        g.params["opacity_logits"][4] = float("nan")
        g.params["log_scales"][5] = math.log(1e4)  # a far background blob larger than float16 holds squared
    splats = browser_splats(g)
    assert len(splats.centers) == 2 and splats.covariances.shape == (2, 3, 3)
    for array in splats:
        assert np.isfinite(array).all()
    packed = splats.covariances.astype(np.float16)  # what viser sends
    assert np.isfinite(packed).all()
    assert splats.covariances[1].diagonal().max() == pytest.approx(MAX_SPLAT_SCALE**2, rel=1e-4)
    empty = browser_splats(Gaussians.from_points(torch.zeros(0, 3), torch.zeros(0, 3)))
    assert empty.centers.shape == (0, 3) and empty.covariances.shape == (0, 3, 3)


def test_browser_splats_of_a_4d_scene_follow_time() -> None:
    gaussians, _ = moving_blob_scene()
    red = lambda s: s.centers[(s.rgbs[:, 0] > 0.8) & (s.rgbs[:, 1] < 0.2)]  # noqa: E731
    early, late = red(browser_splats(gaussians, 0.1)), red(browser_splats(gaussians, 0.9))
    assert early[:, 0].mean() < -0.5 < 0.5 < late[:, 0].mean()


def test_frame_image_modes() -> None:
    rgb = torch.rand(4, 5, 3)
    alpha = torch.rand(4, 5, 1)
    depth = torch.rand(4, 5, 1) + 1
    assert frame_image(rgb, alpha, depth, "rgb").dtype == np.uint8
    a = frame_image(rgb, alpha, depth, "alpha")
    assert (a[..., 0] == a[..., 2]).all() and a.shape == (4, 5, 3)
    assert frame_image(rgb, alpha, depth, "depth").shape == (4, 5, 3)


def test_load_view_scene_reads_3d_and_4d_ply_files(tmp_path) -> None:
    g3 = _random_gaussians()
    write_ply(tmp_path / "s.ply", g3)
    scene = load_view_scene(tmp_path / "s.ply", {}, torch.device("cpu"))
    assert not scene.is_4d and len(scene.gaussians) == 200 and scene.cameras is None
    g4, _ = moving_blob_scene()
    write_ply_4d(tmp_path / "d.ply", g4)
    scene4 = load_view_scene(tmp_path / "d.ply", {}, torch.device("cpu"))
    assert scene4.is_4d and len(scene4.gaussians) == len(g4)


def test_load_view_scene_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(ViewSceneError, match="nothing"):
        load_view_scene(tmp_path / "nothing", {}, torch.device("cpu"))
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    with pytest.raises(ViewSceneError, match=r"bad\.ply"):
        load_view_scene(tmp_path / "bad.ply", {}, torch.device("cpu"))


def test_scene_folder_gives_the_pipeline_render_and_training_cameras(reconstructed_sample) -> None:
    from pipelines import PIPELINES
    from splat4d.reconstruct import load_trained

    scene = load_view_scene(reconstructed_sample, PIPELINES, torch.device("cpu"))
    trained = load_trained(reconstructed_sample, PIPELINES, torch.device("cpu"))
    assert len(scene.cameras) == len(trained.scene.train_indices)
    cam = scene.cameras[0]
    direct = trained.pipeline.render_view(cam).rgb
    torch.testing.assert_close(render(scene.gaussians, cam, scene.settings).rgb, direct)


class _FakePipeline:
    def __init__(self) -> None:
        self.gaussians = _random_gaussians(50)

    def settings(self) -> RenderSettings:
        return RenderSettings(background=(1.0, 1.0, 1.0))


def test_live_training_publishes_only_while_watched() -> None:
    source = SceneSource()
    live = LiveTraining(source, publish_every=0.0)
    pipeline = _FakePipeline()
    live(1, pipeline)
    assert source.current()[1] == 0  # nobody watching: nothing copied
    live.watchers = 1
    live(2, pipeline)
    scene, version = source.current()
    assert version == 1 and scene.step == 2 and scene.settings.background == (1.0, 1.0, 1.0)
    # a snapshot, not a view of the live parameters
    with torch.no_grad():
        pipeline.gaussians.params["means"] += 1.0
    assert not torch.equal(scene.gaussians.means, pipeline.gaussians.means)


def test_live_training_publishes_at_most_every_interval() -> None:
    source = SceneSource()
    live = LiveTraining(source, publish_every=60.0)
    live.watchers = 1
    for step in range(1, 20):
        live(step, _FakePipeline())
    assert source.current()[1] == 1


def test_pause_blocks_the_training_thread_until_resumed() -> None:
    source = SceneSource()
    live = LiveTraining(source, publish_every=60.0)
    pipeline = _FakePipeline()
    steps: list[int] = []

    def train() -> None:
        for step in range(1, 6):
            live(step, pipeline)
            steps.append(step)

    live.pause()
    worker = threading.Thread(target=train)
    worker.start()
    time.sleep(0.3)
    assert steps == [] and live.step == 1
    assert source.current()[0].step == 1  # the paused state is shown even though nobody was watching
    live.resume()
    worker.join(5)
    assert steps == [1, 2, 3, 4, 5]


def test_viewed_scene_frame_times_and_bounds() -> None:
    g4, cams = moving_blob_scene()
    times = torch.tensor([0.0, 0.5, 0.5, 1.0])
    cams4 = Cameras(cams.T_world_cam.repeat(4, 1, 1), cams.Ks.repeat(4, 1, 1), 320, 240, times=times)
    scene = ViewedScene(g4, cameras=cams4)
    assert scene.frame_times == [0.0, 0.5, 1.0]
    lo, hi = scene.bounds()
    assert all(a < b for a, b in zip(lo, hi, strict=True))
    assert ViewedScene(Gaussians4D.from_points(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0))).bounds()


class _FakeCamera:
    def __init__(self, cameras: Cameras) -> None:
        self.wxyz, self.position, self.fov, _ = cameras_to_viser(cameras, 0)
        self.image_width, self.image_height = 640, 480
        self._callbacks: list = []

    def on_update(self, callback) -> None:
        self._callbacks.append(callback)

    def nudge(self) -> None:
        self.position = self.position + 0.01
        for callback in self._callbacks:
            callback(self)


class _FakeHandle:
    def __init__(self, value=None) -> None:
        self.value = value
        self.removed = False
        self._callbacks: list = []

    def on_update(self, callback) -> None:
        self._callbacks.append(callback)

    def choose(self, value) -> None:
        """What the browser does when the user picks `value`."""
        self.value = value
        for callback in self._callbacks:
            callback(self)

    def remove(self) -> None:
        self.removed = True


class _FakeClient:
    """What the viewer uses of a viser client; records the frames (None: background cleared), splats and GUI
    elements it is sent."""

    def __init__(self, cameras: Cameras, client_id: int = 0) -> None:
        self.client_id = client_id
        self.camera = _FakeCamera(cameras)
        self.frames: list[np.ndarray | None] = []
        self.splats: list[_FakeHandle] = []
        self.dropdowns: dict[str, _FakeHandle] = {}
        self.fail = False
        outer = self

        class _Scene:
            def set_background_image(self, image, format="jpeg", jpeg_quality=None) -> None:
                if outer.fail:
                    raise ConnectionError("client went away")
                outer.frames.append(image)

            def add_gaussian_splats(self, name, centers, covariances, rgbs, opacities) -> _FakeHandle:
                outer.splats.append(_FakeHandle(len(centers)))
                return outer.splats[-1]

        class _Gui:
            def add_dropdown(self, label, options, initial_value=None, order=None) -> _FakeHandle:
                outer.dropdowns[label] = _FakeHandle(initial_value)
                return outer.dropdowns[label]

        self.scene = _Scene()
        self.gui = _Gui()

    @contextlib.contextmanager
    def atomic(self):
        yield


def _renderer_for(scene: ViewedScene, **state):
    from viewer.client import ClientRenderer, ViewState

    source = SceneSource(scene)
    view = ViewState(1, 0.0, "rgb", 400, 100)._replace(**state)
    client = _FakeClient(scene.cameras)
    return client, ClientRenderer(client, source, lambda: view, threading.Lock(), torch.device("cpu"), 0.3)


def test_frames_are_small_while_the_camera_moves_and_full_once_it_stops() -> None:
    gaussians, cameras = moving_blob_scene()
    client, renderer = _renderer_for(ViewedScene(gaussians, cameras=cameras))
    try:
        deadline = time.monotonic() + 10
        while not any(f.shape == (300, 400, 3) for f in client.frames) and time.monotonic() < deadline:
            time.sleep(0.02)
        # a quick small frame first, then the full one: longer side max_resolution, the canvas's aspect
        assert [f.shape for f in client.frames] == [(75, 100, 3), (300, 400, 3)]
        for _ in range(10):  # dragging
            client.camera.nudge()
            time.sleep(0.05)
        moving = list(client.frames)
        time.sleep(1.0)  # let go
        assert any(f.shape == (75, 100, 3) for f in moving[1:]), [f.shape for f in moving]
        assert client.frames[-1].shape == (300, 400, 3)
        count = len(client.frames)
        time.sleep(0.5)
        assert len(client.frames) == count  # nothing changed: nothing re-rendered
    finally:
        renderer.stop()
        renderer.join(5)


def test_a_failing_client_ends_its_thread_without_raising() -> None:
    gaussians, cameras = moving_blob_scene()
    client, renderer = _renderer_for(ViewedScene(gaussians, cameras=cameras))
    client.fail = True
    client.camera.nudge()
    time.sleep(0.5)
    assert renderer.alive and "went away" in (renderer.last_error or "")
    renderer.stop()
    renderer.join(5)
    assert not renderer.alive


def test_each_tab_has_its_own_render_path() -> None:
    from tests.viewer.helpers import free_port, wait_until
    from viewer import ViewerApp, ViewerConfig
    from viewer.app import PATHS

    gaussians, cameras = moving_blob_scene()
    app = ViewerApp(
        SceneSource(ViewedScene(gaussians, cameras=cameras)), ViewerConfig(port=free_port()), "cpu"
    )
    switching, watching = _FakeClient(cameras, client_id=101), _FakeClient(cameras, client_id=102)
    try:
        app._connect(switching)
        app._connect(watching)
        wait_until(lambda: switching.frames and watching.frames, 30, "a frame in each tab")
        browser = next(label for label, server_side in PATHS.items() if not server_side)
        switching.dropdowns["Path"].choose(browser)  # one tab picks the browser's WebGL splats ...
        assert not app.renderers[101].server_side and app.splats_sent_to(101)
        assert len(switching.splats) == 1 and switching.splats[0].value > 0
        wait_until(lambda: switching.frames[-1] is None, 10, "the switching tab's background to be cleared")
        # ... the other tab is still rendered on the server, and only it gets new frames.
        assert app.renderers[102].server_side and not app.splats_sent_to(102) and not watching.splats
        assert watching.dropdowns["Path"].value != browser
        before, cleared = len(watching.frames), len(switching.frames)
        switching.camera.nudge()
        watching.camera.nudge()
        wait_until(lambda: len(watching.frames) > before, 30, "a new frame for the other tab")
        time.sleep(0.3)
        assert len(switching.frames) == cleared
        # Back to the server: the tab's splats go and its frames come back.
        switching.dropdowns["Path"].choose(next(iter(PATHS)))
        assert switching.splats[0].removed and not app.splats_sent_to(101)
        wait_until(lambda: switching.frames[-1] is not None, 30, "server frames in the switching tab again")
    finally:
        app.close()
