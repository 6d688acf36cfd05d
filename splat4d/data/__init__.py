"""Dataset readers: the `DATAPARSERS` registry, format detection and `load_scene`.

Every reader turns one input layout into a `SceneData` (pinhole cameras in OpenCV axes, image paths, split).
`load_scene` picks the reader (detecting the format unless `DataConfig.format` names one), runs it, checks the
result and attaches `DataConfig.masks`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from splat4d.data.base import DatasetError, SceneData, VideoFrame
from splat4d.data.blender import is_blender, read_blender
from splat4d.data.checks import (
    BOTTOM_ROW_TOLERANCE,
    MAX_IMAGE_SIDE,
    ROTATION_TOLERANCE,
    describe_intrinsics_problem,
    describe_pose_problem,
    image_header_size,
)
from splat4d.data.colmap import is_colmap, read_colmap
from splat4d.data.config import DataConfig
from splat4d.data.llff import is_llff, read_llff
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.sfm import is_images, is_video, read_images, read_video
from splat4d.data.video import is_multiview_video, read_multiview_video

NERFSTUDIO_FILE = "transforms.json"
MASK_SUFFIX = ".png"


class DataParser(NamedTuple):
    """One input format: what it is, how to recognise it, how to read it."""

    description: str
    """One line for help texts and error messages."""
    detect: Callable[[Path], bool]
    """Whether a path (folder or file) is in this format; cheap, looks only at names."""
    read: Callable[[DataConfig, Path], SceneData]
    """Reads `cfg.path`; the second argument is a work folder for derived files (undistorted images, SfM)."""


def _is_nerfstudio(path: Path) -> bool:
    path = Path(path)
    return (path.is_file() and path.name == NERFSTUDIO_FILE) or (path / NERFSTUDIO_FILE).is_file()


def _read_nerfstudio(cfg: DataConfig, workdir: Path) -> SceneData:
    return read_nerfstudio(cfg.path, test_every=cfg.test_every, workdir=workdir)


# Detection tries the entries in this order: the first match wins.
DATAPARSERS: dict[str, DataParser] = {
    "blender": DataParser("Blender / NeRF-synthetic (transforms_train.json)", is_blender, read_blender),
    "nerfstudio": DataParser("nerfstudio transforms.json (or its folder)", _is_nerfstudio, _read_nerfstudio),
    # Before COLMAP: LLFF's own folders also hold sparse/, and the sparse-view protocols use poses_bounds.npy.
    "llff": DataParser("LLFF forward-facing scene (poses_bounds.npy + images_<k>/)", is_llff, read_llff),
    "colmap": DataParser("COLMAP workspace (images/ and sparse/0/)", is_colmap, read_colmap),
    "n3dv": DataParser(
        "synchronised multi-view video, N3DV / DyNeRF layout (poses_bounds.npy + cam*.mp4)",
        is_multiview_video,
        read_multiview_video,
    ),
    "video": DataParser("video file, frames posed with SfM", is_video, read_video),
    "images": DataParser("folder of unposed photos, posed with SfM", is_images, read_images),
}


def detect_format(path: Path) -> str:
    """Name of the first `DATAPARSERS` entry whose `detect` accepts `path`.

    Raises:
        DatasetError: the path does not exist, or no reader recognises it.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    for name, parser in DATAPARSERS.items():
        if parser.detect(path):
            return name
    raise DatasetError(f"{path}: not a dataset splat4d can read (expected one of: {', '.join(DATAPARSERS)})")


def load_scene(cfg: DataConfig, workdir: Path) -> SceneData:
    """Read the scene `cfg` describes: detect or take the format, read, validate, attach masks.

    Args:
        cfg: the input path, format, split and mask folder.
        workdir: folder for files derived from the input (created by readers that need it).

    Returns:
        The scene, with `metadata["format"]` naming the reader used.

    Raises:
        DatasetError: the input is missing, unrecognised or malformed, has no training image, or the mask
            folder matches none of its images.
    """
    path = Path(cfg.path)
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    name = detect_format(path) if cfg.format == "auto" else cfg.format
    if name not in DATAPARSERS:
        raise DatasetError(f"{path}: unknown format {name!r} (expected one of: {', '.join(DATAPARSERS)})")
    scene = DATAPARSERS[name].read(cfg, Path(workdir))
    _validate(scene, path)
    if cfg.masks is not None and scene.mask_paths is None:
        scene.mask_paths = find_masks(Path(cfg.masks), scene.image_paths)
        for mask in scene.mask_paths:
            if mask is not None:
                image_header_size(mask)
    scene.metadata.setdefault("format", name)
    return scene


def _validate(scene: SceneData, source: Path) -> None:
    """The last line of defence behind the readers' own checks: the scene's lists agree, its split is in range,
    and every camera is usable (a finite rigid pose, finite intrinsics with positive focal lengths, a size of at
    least one pixel, a time in [0, 1]) and its points are finite, whatever reader made it.

    Raises:
        DatasetError: naming the image of the first unusable camera (or `source`) and what is wrong with it.
    """
    n = len(scene.cameras)
    lengths = {"image_paths": len(scene.image_paths), "depth_paths": len(scene.depth_paths)}
    if scene.mask_paths is not None:
        lengths["mask_paths"] = len(scene.mask_paths)
    for field, length in lengths.items():
        if length != n:
            raise DatasetError(f"{source}: the reader returned {n} cameras but {length} {field}")
    if not scene.train_indices:
        raise DatasetError(
            f"{source}: no training images; check the dataset's split (every image is a test image)"
        )
    bad = [i for i in scene.train_indices + scene.test_indices if not 0 <= i < n]
    if bad:
        raise DatasetError(f"{source}: split indices {bad[:5]} out of range for {n} images")
    _validate_cameras(scene, source)
    _validate_points(scene, source)


def _validate_cameras(scene: SceneData, source: Path) -> None:
    cameras = scene.cameras
    hint = f"fix or remove this view in {source}"
    for i, (width, height) in enumerate(cameras.sizes):
        if not all(1 <= side <= MAX_IMAGE_SIDE for side in (width, height)):
            raise DatasetError(
                f"{scene.image_paths[i]}: its image size {width}x{height} is not in 1..{MAX_IMAGE_SIDE} pixels; {hint}"
            )
    T = cameras.T_world_cam.detach().double().cpu().numpy()
    Ks = cameras.Ks.detach().double().cpu().numpy()
    # Vectorised first (scenes of multi-view video have tens of thousands of views), described one by one after.
    finite = np.isfinite(T).all(axis=(1, 2)) & np.isfinite(Ks).all(axis=(1, 2))
    T_safe = np.where(finite[:, None, None], T, np.eye(4))
    R = T_safe[:, :3, :3]
    orthonormal = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2)) <= ROTATION_TOLERANCE
    bottom = np.abs(T_safe[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) <= BOTTOM_ROW_TOLERANCE
    focal = (Ks[:, 0, 0] > 0) & (Ks[:, 1, 1] > 0)
    ok = finite & orthonormal & bottom & (np.linalg.det(R) > 0) & focal
    for i in np.flatnonzero(~ok):
        problem = describe_pose_problem(T[i])
        if problem is not None:
            raise DatasetError(f"{scene.image_paths[i]}: its camera pose {problem}; {hint}")
        problem = describe_intrinsics_problem(Ks[i], cameras.widths[i], cameras.heights[i])
        if problem is not None:
            raise DatasetError(f"{scene.image_paths[i]}: its camera's {problem}; {hint}")
    if cameras.times is not None:
        times = cameras.times.detach().double().cpu().numpy()
        bad = ~(np.isfinite(times) & (times >= 0.0) & (times <= 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{scene.image_paths[i]}: its time {times[i]:g} is not in [0, 1]; {hint}")


def _validate_points(scene: SceneData, source: Path) -> None:
    hint = "fix or remove the point cloud (training then starts from random points)"
    if scene.points is None:
        return
    points = np.asarray(scene.points)
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        raise DatasetError(f"{source}: the initial points are not a finite P x 3 array; {hint}")
    if scene.point_colors is not None:
        colors = np.asarray(scene.point_colors)
        if colors.shape != points.shape or not np.isfinite(colors).all():
            raise DatasetError(f"{source}: the initial points' colours are not a finite P x 3 array; {hint}")


def find_masks(folder: Path, image_paths: list[Path | VideoFrame]) -> list[Path | None]:
    """Each image's mask in `folder`, or None where it has none.

    For an image `<dir>/<name>.<ext>` the candidates are, in order, `<folder>/<dir name>/...` then
    `<folder>/...` with the file names `<name>.<ext>`, `<name>.png` and `<name>.<ext>.png` (COLMAP's
    convention). The first candidate that exists is used. A video frame (`VideoFrame`) is named like
    `cam00_000012` (frame 12 of cam00.mp4), its <dir> being the video's folder.

    Raises:
        DatasetError: `folder` is not a folder, or holds a mask for none of the images.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: mask folder not found; check --data.masks")
    masks: list[Path | None] = []
    for image in image_paths:
        names = (image.name, image.stem + MASK_SUFFIX, image.name + MASK_SUFFIX)
        candidates = [base / name for base in (folder / image.parent.name, folder) for name in names]
        masks.append(next((c for c in candidates if c.is_file()), None))
    if image_paths and all(m is None for m in masks):
        raise DatasetError(
            f"{folder}: no mask named like any image (e.g. {image_paths[0].stem}{MASK_SUFFIX}); check --data.masks"
        )
    return masks
