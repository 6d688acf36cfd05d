"""Helpers for the viewer tests: ports, waiting, image correlation, screenshots, a 4D sample scene."""

import contextlib
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 720}
SCREENSHOT_DIR = os.environ.get("SPLAT4D_SCREENSHOT_DIR")
"""Where the browser tests also save their screenshots (the README's picture comes from here)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / math.sqrt((a @ a) * (b @ b) + 1e-12))


def screenshot(page, name: str | None = None) -> np.ndarray:
    png = page.screenshot()
    if SCREENSHOT_DIR and name:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOT_DIR) / f"{name}.png").write_bytes(png)
    return iio.imread(png)[..., :3]


class Browser:
    """Opens pages (each its own browser context, i.e. its own viser client)."""

    def __init__(self, browser) -> None:
        self._browser = browser
        self._contexts: list = []

    def open(self, url: str):
        context = self._browser.new_context(viewport=VIEWPORT)
        self._contexts.append(context)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("text=Connected", timeout=30_000)
        # viser's "Software WebGL rendering detected" notice covers part of the canvas: close it when shown.
        with contextlib.suppress(Exception):
            page.locator(".mantine-Notification-closeButton").first.click(timeout=3000)
        return page

    def close_all(self) -> None:
        for context in self._contexts:
            with contextlib.suppress(Exception):
                context.close()
        self._contexts.clear()


def moving_blob_scene() -> tuple[Gaussians4D, Cameras]:
    """A 4D scene whose red blob crosses from x = −1 (t = 0) to x = +1 (t = 1) in front of a static grey wall,
    and one camera looking at it from z = −4 (OpenCV axes: +z forward, +y down)."""
    g = torch.Generator().manual_seed(0)
    blob, wall = [], []
    for t in torch.linspace(0, 1, 21):
        centre = torch.tensor([-1.0 + 2.0 * float(t), 0.0, 0.0])
        blob.append(torch.cat([centre + 0.15 * torch.randn(150, 3, generator=g), t.repeat(150, 1)], 1))
    u, v = torch.meshgrid(torch.linspace(-2.5, 2.5, 40), torch.linspace(-1.5, 1.5, 24), indexing="ij")
    for t in torch.linspace(0, 1, 5):
        wall.append(
            torch.stack([u.ravel(), v.ravel(), torch.full_like(u.ravel(), 1.0), t.repeat(u.numel())], 1)
        )
    blob_pts, wall_pts = torch.cat(blob), torch.cat(wall)
    points = torch.cat([blob_pts, wall_pts])
    rgb = torch.cat(
        [torch.tensor([0.9, 0.1, 0.1]).repeat(len(blob_pts), 1), torch.full((len(wall_pts), 3), 0.6)]
    )
    gaussians = Gaussians4D.from_points(points[:, :3], rgb, points[:, 3], sh_degree=0, init_opacity=0.9)
    n_blob = len(blob_pts)
    with torch.no_grad():  # explicit sizes: the wall repeats its points at 5 times, so 3-NN distances are 0
        log_scales = gaussians.params["log_scales4"]
        log_scales[:n_blob] = torch.log(torch.tensor([0.06, 0.06, 0.06, 0.05]))
        log_scales[n_blob:] = torch.log(torch.tensor([0.09, 0.09, 0.09, 0.35]))
    T = torch.eye(4)
    T[2, 3] = -4.0
    K = torch.tensor([[160.0, 0, 160], [0, 160.0, 120], [0, 0, 1]])
    cameras = Cameras(T[None], K[None], 320, 240, times=torch.tensor([0.0]))
    return gaussians, cameras
