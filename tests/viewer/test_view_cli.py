"""`splat4d view` and `splat4d reconstruct --viewer` as users run them: a process, a port, a browser."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tests.viewer.helpers import free_port, screenshot, wait_until

pytestmark = pytest.mark.browser


def _start(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """The command running, and its stdout lines as they arrive."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "splat4d", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # a test run started in the background inherits an ignored SIGINT; the Ctrl-C tests need it back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _url(lines: list[str], marker: str) -> str:
    wait_until(lambda: any(marker in line for line in lines), 120, f"'{marker}' in the output")
    line = next(line for line in lines if marker in line)
    return next(word for word in line.split() if word.startswith("http://")).rstrip(",;")


def test_view_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splat4d", "view", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing" in result.stderr


def test_view_serves_a_scene_folder_until_ctrl_c(reconstructed_sample: Path, browser) -> None:
    port = free_port()
    proc, lines = _start("view", str(reconstructed_sample), "--port", str(port), "--device", "cpu")
    try:
        url = _url(lines, "viewer at")
        assert url == f"http://localhost:{port}"
        page = browser.open(url)
        page.wait_for_selector("text=3D Gaussians", timeout=30_000)
        wait_until(
            lambda: screenshot(page)[200:600, 100:800].std() > 5, 60, "the scene to appear on the canvas"
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0  # render threads finish their frame first: slow on a loaded machine
    finally:
        proc.kill()


def test_reconstruct_with_live_viewer(tmp_path: Path, browser) -> None:
    from splat4d.data.synthetic import SampleConfig, write_sample_scene

    photos = write_sample_scene(SampleConfig(n_views=8, width=80, height=60), tmp_path / "photos")
    port = free_port()
    proc, lines = _start(
        "reconstruct", str(photos), "-o", str(tmp_path / "scene"), "--preset", "fast", "--steps", "400",
        "--device", "cpu", "--no-progress", "--viewer", "--viewer-port", str(port), "--no-viewer-wait",
    )  # fmt: skip
    try:
        page = browser.open(_url(lines, "live viewer"))
        page.wait_for_selector("text=Pause training", timeout=60_000)
        page.wait_for_selector("text=/step [0-9,]+ \\/ 400/", timeout=60_000)
        assert proc.wait(timeout=300) == 0, "".join(lines)
        assert (tmp_path / "scene" / "point_cloud.ply").is_file()
    finally:
        proc.kill()


def test_listening_beyond_this_machine_warns() -> None:
    from viewer import SceneSource, ViewerApp, ViewerConfig

    console = Console(record=True, width=200)
    app = ViewerApp(SceneSource(), ViewerConfig(host="0.0.0.0", port=free_port()), console=console)
    try:
        assert "anyone who can reach this machine" in console.export_text()
    finally:
        app.close()
