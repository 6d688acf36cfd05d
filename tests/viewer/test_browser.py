"""The viewer in a real browser (headless Chromium): connects, shows the scene, follows the time slider, serves
several clients and survives one that drops."""

import time

import numpy as np
import pytest
import torch

from pipelines import PIPELINES
from splat4d.render import render
from tests.viewer.helpers import correlation, free_port, moving_blob_scene, screenshot, wait_until
from viewer import SceneSource, ViewedScene, ViewerApp, ViewerConfig, load_view_scene
from viewer.camera import cameras_to_viser, viser_to_cameras
from viewer.client import frame_image

pytestmark = pytest.mark.browser


def _app(scene: ViewedScene) -> ViewerApp:
    return ViewerApp(SceneSource(scene), ViewerConfig(port=free_port()), "cpu")


def _settled(app: ViewerApp, count: int = 1, timeout: float = 60.0) -> list:
    """The app's renderers once `count` clients have each been sent a full-resolution frame of their camera."""

    def done() -> bool:
        renderers = list(app.renderers.values())
        return len(renderers) == count and all(r._sent_full and r.frames_sent > 0 for r in renderers)

    wait_until(done, timeout, f"{count} client(s) to receive a full-resolution frame")
    time.sleep(0.7)  # the browser decodes and paints the last frame
    return list(app.renderers.values())


def _canvas(image: np.ndarray, renderer) -> np.ndarray:
    """The 3D canvas part of a page screenshot, without the top rows (viser's software-WebGL notice) and the
    bottom-left axes widget."""
    w, h = int(renderer.client.camera.image_width), int(renderer.client.camera.image_height)
    return image[150 : h - 80, :w]


def _direct_render(scene: ViewedScene, wxyz, position, fov, width, height, t=None) -> np.ndarray:
    cameras = viser_to_cameras(wxyz, position, fov, width, height)
    with torch.no_grad():
        out = render(scene.gaussians, cameras, scene.settings, t=t)
    return frame_image(out.rgb[0], out.alpha[0], out.depth[0], "rgb")


def _crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return image[150 : height - 80, :width]


def test_page_shows_the_scene_as_seen_from_the_training_camera(reconstructed_sample, browser) -> None:
    scene = load_view_scene(reconstructed_sample, PIPELINES, torch.device("cpu"))
    app = _app(scene)
    try:
        page = browser.open(app.url)
        (renderer,) = _settled(app)
        shot = screenshot(page, "viewer")
        w, h = int(renderer.client.camera.image_width), int(renderer.client.camera.image_height)
        # A new client looks through the first training camera; render that camera directly at the canvas size.
        wxyz, position, fov, _ = cameras_to_viser(scene.cameras, 0)
        same = _direct_render(scene, wxyz, position, fov, w, h)
        other = _direct_render(scene, *cameras_to_viser(scene.cameras, len(scene.cameras) // 2)[:3], w, h)
        r_same = correlation(_canvas(shot, renderer), _crop(same, w, h))
        r_other = correlation(_canvas(shot, renderer), _crop(other, w, h))
        assert r_same > 0.9, f"screenshot vs direct render: correlation {r_same:.3f}"
        assert r_same > r_other + 0.1, f"same camera {r_same:.3f} vs another camera {r_other:.3f}"
        assert "Gaussians" in page.content()
    finally:
        app.close()


def test_time_slider_moves_a_4d_scene(browser) -> None:
    gaussians, cameras = moving_blob_scene()
    scene = ViewedScene(gaussians, cameras=cameras)
    app = _app(scene)
    try:
        page = browser.open(app.url)
        (renderer,) = _settled(app)
        before = screenshot(page)
        w, h = int(renderer.client.camera.image_width), int(renderer.client.camera.image_height)
        t_input = _time_input(page)
        t_input.fill("0.9")
        t_input.press("Enter")
        wait_until(lambda: abs(app.time - 0.9) < 1e-6, 20, "the server to receive t = 0.9")
        _settled(app)
        after = screenshot(page, "viewer-4d")
        diff = np.abs(_canvas(after, renderer).astype(float) - _canvas(before, renderer)).mean()
        assert diff > 2.0, f"moving the time slider changed the canvas by only {diff:.2f} grey levels"
        pose = cameras_to_viser(cameras, 0)[:3]
        expected = _direct_render(scene, *pose, w, h, t=0.9)
        assert correlation(_canvas(after, renderer), _crop(expected, w, h)) > 0.9
    finally:
        app.close()


def _time_input(page):
    """The text box of the "t" slider: the only slider text box at 0 (Resolution is at 1024, Speed at 1)."""
    boxes = page.locator("input[type='text']")
    matches = [boxes.nth(i) for i in range(boxes.count()) if boxes.nth(i).input_value() == "0"]
    assert len(matches) == 1, f"expected one slider box at 0, found {len(matches)}"
    return matches[0]


def test_two_clients_and_one_that_drops(reconstructed_sample, browser) -> None:
    scene = load_view_scene(reconstructed_sample, PIPELINES, torch.device("cpu"))
    app = _app(scene)
    try:
        first = browser.open(app.url)
        browser.open(app.url)
        renderers = _settled(app, count=2)
        assert all(r.frames_sent > 0 for r in renderers)
        # Drop the second client in the middle of a stream of frames (its camera is moving).
        leaving = renderers[1]
        for k in range(5):
            app.move_client_to_camera(leaving.client, k % len(scene.cameras))
        browser._contexts[1].close()
        wait_until(lambda: len(app.renderers) == 1, 20, "the server to notice the dropped client")
        wait_until(lambda: not leaving.alive, 20, "the dropped client's render thread to end")
        # The one left still follows its camera ...
        (staying,) = _settled(app)
        sent = staying.frames_sent
        app.move_client_to_camera(staying.client, 3)
        wait_until(lambda: staying.frames_sent > sent, 30, "a frame for the remaining client")
        _settled(app)
        w, h = int(staying.client.camera.image_width), int(staying.client.camera.image_height)
        expected = _direct_render(scene, *cameras_to_viser(scene.cameras, 3)[:3], w, h)
        assert correlation(_canvas(screenshot(first), staying), _crop(expected, w, h)) > 0.9
        # ... and new clients are still welcome.
        browser.open(app.url)
        _settled(app, count=2)
    finally:
        app.close()
