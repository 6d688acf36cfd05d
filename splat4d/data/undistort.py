"""Undistortion of images to pinhole cameras with pycolmap, and the cache folders readers keep in a work dir.

`SceneData` holds pinhole cameras only, so readers of distorted datasets (COLMAP models with radial or fisheye
cameras, nerfstudio frames with `k1`…`p2`) resample their images once into a work folder and read those. A
cache folder is valid when its `stamp.json` holds the same key (the inputs' names, sizes, modification times and
cameras); folders are filled under a temporary name and renamed into place, so an interrupted run never leaves a
folder that looks finished.

pycolmap is imported only where an image is resampled (`splat4d.optional`): readers of pinhole cameras need
nothing here but the cache helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float
from rich.progress import track

from splat4d.data.base import DatasetError
from splat4d.io.atomic import apply_default_permissions
from splat4d.optional import require

if TYPE_CHECKING:
    import pycolmap

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
"""pycolmap camera models that need no resampling."""
CACHE_VERSION = 1
"""Part of every cache key: bump it when the files a cache holds change meaning."""
STAMP_NAME = "stamp.json"


def _pycolmap(purpose: str = "undistort images taken with lens distortion") -> ModuleType:
    return require("pycolmap", purpose, DatasetError)


@contextmanager
def quiet_colmap() -> Iterator[None]:
    """Silence COLMAP's INFO log lines (one per image and stage) while the block runs; warnings still show."""
    pycolmap = _pycolmap("run COLMAP")
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = pycolmap.logging.WARNING.value
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def fingerprint(path: Path | None) -> list | None:
    """[name, size, mtime_ns] of a file: enough to notice that it changed since a cache was written."""
    if path is None:
        return None
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def stamp_matches(folder: Path, key: dict) -> bool:
    """True when `folder` was finished by `replace_dir` for exactly this key."""
    try:
        return json.loads((folder / STAMP_NAME).read_text()) == {"version": CACHE_VERSION, "key": key}
    except (OSError, json.JSONDecodeError):
        return False


@contextmanager
def replace_dir(target: Path, key: dict) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; when the block succeeds, stamp it with `key` and rename
    it to `target`, replacing what was there. On an error the temporary folder is removed and `target` kept.

    The temporary folder is locked (`flock`) while the block runs; first, the ones a killed earlier build left
    beside `target` (`.NAME.tmp-*` and `.NAME.tmp-*.old`: no `finally` runs after SIGKILL or a power cut) are
    removed unless a live build holds them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    lock = _lock_folder(tmp)
    try:
        yield tmp
        (tmp / STAMP_NAME).write_text(json.dumps({"version": CACHE_VERSION, "key": key}, indent=1))
        old = target.with_name(f"{tmp.name}.old")
        if target.exists():
            os.replace(target, old)
        apply_default_permissions(tmp)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def _lock_folder(path: Path) -> int | None:
    """Open folder `path` and take an exclusive `flock` on it without waiting. Returns the open descriptor, which
    holds the lock until it is closed or the process ends, however it ends; None when another build holds the
    lock or it cannot be taken (no `flock` on Windows or on some network filesystems)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary folders of earlier builds of `target` that no live build holds locked."""
    prefix = f".{target.name}.tmp-"
    try:
        found = [path for path in target.parent.iterdir() if path.name.startswith(prefix)]
    except OSError:
        return
    for path in found:
        if path.is_symlink() or not path.is_dir():
            continue
        lock = _lock_folder(path)
        if lock is None:
            continue  # a build in progress (or no locks here to tell: leave it)
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(lock)


def is_pinhole(camera: pycolmap.Camera) -> bool:
    return camera.model_name in PINHOLE_MODELS


def pinhole_K(camera: pycolmap.Camera) -> Float[np.ndarray, "3 3"]:
    """Intrinsics matrix of a pinhole camera (COLMAP and we both put pixel centres at +0.5)."""
    return np.array(
        [
            [camera.focal_length_x, 0.0, camera.principal_point_x],
            [0.0, camera.focal_length_y, camera.principal_point_y],
            [0.0, 0.0, 1.0],
        ]
    )


@dataclass(frozen=True)
class DistortedView:
    """One image, the camera it was taken with, and optionally its mask (same size, white = use the pixel)."""

    name: str
    """Relative path of the undistorted image inside the cache folder; unique per view."""
    image_path: Path
    camera: pycolmap.Camera
    mask_path: Path | None = None


@dataclass(frozen=True)
class PinholeView:
    """A view after undistortion: the files to train on and their pinhole camera."""

    image_path: Path
    mask_path: Path | None
    K: Float[np.ndarray, "3 3"]
    width: int
    height: int


def _cache_key(views: Sequence[DistortedView]) -> dict:
    entries = [
        [
            v.name,
            fingerprint(v.image_path),
            fingerprint(v.mask_path),
            v.camera.model_name,
            v.camera.width,
            v.camera.height,
            [float(p) for p in v.camera.params],
        ]
        for v in views
        if not is_pinhole(v.camera)
    ]
    return {"views": entries}


def _read_bitmap(path: Path, camera: pycolmap.Camera, as_rgb: bool) -> pycolmap.Bitmap:
    bitmap = _pycolmap().Bitmap.read(path, as_rgb=as_rgb)
    if bitmap is None:
        raise DatasetError(f"{path}: cannot read image")
    if (bitmap.width, bitmap.height) != (camera.width, camera.height):
        raise DatasetError(
            f"{path}: image is {bitmap.width}x{bitmap.height} but its camera is {camera.width}x{camera.height}"
        )
    return bitmap


def _mask_name(name: str) -> str:
    return str(Path("masks") / Path(name).with_suffix(".png"))


def _undistort_into(folder: Path, views: Sequence[DistortedView], progress: bool) -> None:
    pycolmap = _pycolmap()
    options = pycolmap.UndistortCameraOptions()
    distorted = [v for v in views if not is_pinhole(v.camera)]
    for view in track(distorted, description="Undistorting images", disable=not progress):
        image, _ = pycolmap.undistort_image(
            options, _read_bitmap(view.image_path, view.camera, True), view.camera
        )
        out = folder / "images" / view.name
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.write(out):
            raise DatasetError(f"{out}: cannot write the undistorted image")
        if view.mask_path is not None:
            mask, _ = pycolmap.undistort_image(
                options, _read_bitmap(view.mask_path, view.camera, False), view.camera
            )
            out = folder / _mask_name(view.name)
            out.parent.mkdir(parents=True, exist_ok=True)
            if not mask.write(out):
                raise DatasetError(f"{out}: cannot write the undistorted mask")


def undistort_views(views: Sequence[DistortedView], folder: Path, progress: bool = True) -> list[PinholeView]:
    """Resample every view whose camera is not pinhole into `folder` (cached), and return pinhole views.

    Views that already have a pinhole camera keep their files and are not copied. Masks are resampled like their
    images; pixels that fall outside the original image become 0 (unused). Undistorted images keep their names
    and formats under `folder/images/`, masks go to `folder/masks/` as PNG.

    Args:
        views: images with their cameras and optional masks, in the order of the result.
        folder: cache folder, reused when it was written for the same files and cameras.
        progress: show a progress bar while resampling.

    Returns:
        One `PinholeView` per input view. Each undistorted camera is sized to the largest rectangle of valid
        pixels (pycolmap's default), so views with different distortion may end up at different sizes.

    Raises:
        DatasetError: a view needs resampling and pycolmap is not installed, an image cannot be read or is of
            another size than its camera, or undistortion gives no usable pinhole camera.
    """
    from splat4d.data.checks import check_image, describe_intrinsics_problem

    views = list(views)
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError("undistort_views: view names must be unique")
    result = []
    for view in views:
        if is_pinhole(view.camera):
            camera, image_path, mask_path = view.camera, view.image_path, view.mask_path
        else:
            pycolmap = _pycolmap()
            camera = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), view.camera)
            image_path = folder / "images" / view.name
            mask_path = None if view.mask_path is None else folder / _mask_name(view.name)
        K = pinhole_K(camera)
        problem = describe_intrinsics_problem(K, camera.width, camera.height)
        if problem is not None:
            raise DatasetError(
                f"{view.image_path}: undistorting it with its {view.camera.model_name} camera gives no usable "
                f"pinhole camera ({problem}); check the camera's distortion parameters"
            )
        result.append(PinholeView(image_path, mask_path, K, camera.width, camera.height))

    if any(not is_pinhole(v.camera) for v in views):
        key = _cache_key(views)
        if not stamp_matches(folder, key):
            # pycolmap's reader pads a truncated image with grey without a word: decode each file in full first.
            for view in views:
                if not is_pinhole(view.camera):
                    for path in (view.image_path, view.mask_path):
                        if path is not None:
                            check_image(path)
            with quiet_colmap(), replace_dir(folder, key) as tmp:
                _undistort_into(tmp, views, progress)
    return result
