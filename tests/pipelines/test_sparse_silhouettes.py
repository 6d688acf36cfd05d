"""Silhouettes of RGBA photos in the sparse pipeline: visual-hull initial points and the alpha term."""

import dataclasses
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pipelines.sparse_view import PRESETS, build, load_sparse_scene
from pipelines.sparse_view.silhouettes import AlphaTerm, SilhouetteConfig, read_alpha, visual_hull_points
from splat4d.data.config import DataConfig
from splat4d.geometry import OPENGL_FROM_OPENCV

RADIUS = 0.5
"""A ball of this radius at the origin, seen by cameras at distance 4 (as NeRF-synthetic's)."""
SIZE = 64
FOV = 0.7


def _look_at(eye: np.ndarray) -> np.ndarray:
    """Camera-to-world (OpenCV axes) looking from `eye` at the origin, z up."""
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], axis=1)
    T[:3, 3] = eye
    return T


def _render_ball(T: np.ndarray) -> np.ndarray:
    """RGBA uint8 image of the red ball on a transparent background."""
    f = SIZE / 2 / math.tan(FOV / 2)
    v, u = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dirs = np.stack([(u - SIZE / 2) / f, (v - SIZE / 2) / f, np.ones_like(u)], -1) @ T[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    o = T[:3, 3]
    b = dirs @ o
    hit = b**2 - (o @ o - RADIUS**2) >= 0
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[hit] = (230, 40, 40, 255)
    return image


@pytest.fixture(scope="module")
def ball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Blender-style scene of a ball: 3 training and 2 test RGBA photos."""
    root = tmp_path_factory.mktemp("ball")
    (root / "train").mkdir()
    eyes = {
        "train": [(4, 0, 0.5), (-2, 3.4, 0.5), (-2, -3.4, 1.5)],
        "test": [(0, 4, 0.3), (2.8, 2.8, 0.8)],
    }
    for split, points in eyes.items():
        frames = []
        for k, eye in enumerate(points):
            T = _look_at(np.asarray(eye, dtype=float))
            iio.imwrite(root / "train" / f"{split}_{k}.png", _render_ball(T))
            matrix = T @ np.asarray(OPENGL_FROM_OPENCV, dtype=float)
            frames.append({"file_path": f"./train/{split}_{k}", "transform_matrix": matrix.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": FOV, "frames": frames}))
    return root


def _cfg(ball: Path, **silhouette):
    cfg = PRESETS["fast"]
    return dataclasses.replace(
        cfg,
        data=DataConfig(path=ball),
        silhouette=dataclasses.replace(cfg.silhouette, **silhouette),
        triangulation=dataclasses.replace(cfg.triangulation, mode="never"),
    )


def test_read_alpha_finds_the_alpha_channel_or_none(ball: Path, tmp_path: Path) -> None:
    alpha = read_alpha(ball / "train" / "train_0.png")
    assert alpha is not None and alpha.shape == (SIZE, SIZE) and set(alpha.unique().tolist()) == {0.0, 1.0}
    iio.imwrite(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    assert read_alpha(tmp_path / "rgb.png") is None


def test_hull_points_lie_in_and_around_the_ball_unlike_random_ones(ball: Path, tmp_path: Path) -> None:
    scene = load_sparse_scene(_cfg(ball), tmp_path)
    assert scene.metadata["hull_points"] == len(scene.points) == PRESETS["fast"].init.random_points
    distance = np.linalg.norm(scene.points, axis=-1)
    # Three silhouette cones of a ball meet in a body a little larger than the ball: nothing far outside it ...
    assert distance.max() < 2.0 * RADIUS
    # ... and most of it is the ball (random points in the cube around it: under 5 %)
    assert (distance < RADIUS).mean() > 0.4
    # colours come from the photos, where they see the point: the ball's red
    np.testing.assert_allclose(scene.point_colors.mean(0), [230 / 255, 40 / 255, 40 / 255], atol=0.02)
    # the Gaussians start there
    gaussians = build(_cfg(ball), scene, torch.device("cpu")).gaussians
    np.testing.assert_allclose(gaussians.means.detach().numpy(), scene.points, atol=1e-5)


def test_hull_init_can_be_turned_off_and_disagreeing_alpha_is_a_clear_error(
    ball: Path, tmp_path: Path
) -> None:
    assert load_sparse_scene(_cfg(ball, hull_init=False), tmp_path).points is None
    scene = load_sparse_scene(_cfg(ball, hull_init=False), tmp_path)
    empty = {i: torch.zeros(SIZE, SIZE) for i in scene.train_indices}
    with pytest.raises(Exception, match="alpha silhouette of every training photo"):
        visual_hull_points(scene, empty, 100, SilhouetteConfig())


def test_alpha_term_matches_rendered_opacity_to_the_photo_alpha(ball: Path, tmp_path: Path) -> None:
    scene = load_sparse_scene(_cfg(ball), tmp_path)
    term = AlphaTerm(SilhouetteConfig(weight=2.0))
    term.bind_views(scene, scene.train_indices, [(SIZE // 2, SIZE // 2)] * len(scene.train_indices))
    assert term.active
    index = scene.train_indices[0]
    target = term._sized[index]
    assert target.shape == (1, SIZE // 2, SIZE // 2, 1) and 0 < float(target.mean()) < 1
    parts: dict = {}
    assert float(term.loss(target.clone(), index, parts)) == pytest.approx(0.0, abs=1e-7)
    guess = torch.full_like(target, 0.5, requires_grad=True)
    loss = term.loss(guess, index, parts)
    expected = 2.0 * float(
        (0.5 - target).abs().mean()
    )  # 1 off the edges, where area resizing leaves fractions
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5) and "alpha" in parts
    loss.backward()
    # opacity rises where the photo is the ball and falls where it is background
    grad = guess.grad[0, ..., 0]
    assert (grad[target[0, ..., 0] > 0.99] < 0).all() and (grad[target[0, ..., 0] < 0.01] > 0).all()


def test_photos_without_alpha_leave_the_pipeline_as_it_was(tmp_path: Path) -> None:
    from splat4d.data.synthetic import SampleConfig, write_sample_scene

    photos = write_sample_scene(SampleConfig(n_views=6, width=48, height=36, n_points=50), tmp_path / "p")
    cfg = dataclasses.replace(PRESETS["fast"], data=DataConfig(path=photos), views=3)
    scene = load_sparse_scene(cfg, tmp_path / "work")
    assert "hull_points" not in scene.metadata
    term = AlphaTerm(cfg.silhouette)
    term.bind_views(scene, scene.train_indices, [(48, 36)] * len(scene.train_indices))
    assert not term.active
    assert float(term.loss(torch.ones(1, 36, 48, 1), scene.train_indices[0], {})) == 0.0
