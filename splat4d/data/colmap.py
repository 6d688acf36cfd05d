"""Reader for COLMAP workspaces: a sparse model (text or binary) and the images it was made from.

Layouts found: `<path>/sparse/0/`, `<path>/sparse/` or `<path>` itself holding `cameras`, `images` and `points3D`
(`.bin` or `.txt`; newer models also have `rigs` and `frames`, which pycolmap reads too); images in the `images/`
folder next to `sparse/`. Any pycolmap camera model is accepted: non-pinhole cameras are undistorted into
`<workdir>/undistorted/` once and read from there afterwards. A model may hold several cameras, of different
sizes: every image keeps its own. Images are read as stored, their EXIF orientation not applied, since COLMAP
computed the cameras on the stored pixels (`splat4d.data.orientation`).

COLMAP stores `cam_from_world` (world → camera) with OpenCV camera axes and pixel centres at +0.5, the same
conventions as `splat4d.cameras`, so the only conversion is the inverse to `T_world_cam`. Reading a model needs
pycolmap (imported there, `splat4d.optional`); detecting one does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import MAX_IMAGE_SIDE, QUATERNION_TOLERANCE, check_image, check_pose
from splat4d.data.colmap_files import HINT, check_model_files, model_file, pose_file
from splat4d.data.config import DataConfig
from splat4d.data.orientation import size_mismatch
from splat4d.data.undistort import DistortedView, PinholeView, is_pinhole, undistort_views
from splat4d.errors import one_line
from splat4d.optional import require

if TYPE_CHECKING:
    import pycolmap

MODEL_FILES = ("cameras", "images", "points3D")
"""Files (`.bin` or `.txt`) that make a folder a COLMAP sparse model."""
PYCOLMAP_ERRORS = (ValueError, IndexError, RuntimeError, MemoryError, OverflowError)
"""What pycolmap raises on a model it cannot read (its C++ checks, missing ids, unknown enum values)."""
IMAGE_DIR_SEARCH_DEPTH = 3
"""`images/` is looked for beside the model folder and up to this many levels above it (sparse/0 → workspace)."""


def _has_model(folder: Path) -> bool:
    return all(any((folder / f"{name}{ext}").is_file() for ext in (".bin", ".txt")) for name in MODEL_FILES)


def find_model(path: Path) -> Path | None:
    """The sparse model folder of a COLMAP workspace: `sparse/0`, `sparse`, the folder itself, or else the first
    numbered model under `sparse/`; None when there is none."""
    path = Path(path)
    sparse = path / "sparse"
    candidates = [sparse / "0", sparse, path]
    if sparse.is_dir():
        candidates += sorted(p for p in sparse.iterdir() if p.is_dir())
    return next((c for c in candidates if _has_model(c)), None)


def is_colmap(path: Path) -> bool:
    """True for a folder holding a COLMAP sparse model (see `find_model`)."""
    path = Path(path)
    return path.is_dir() and find_model(path) is not None


def _find_images_dir(model_dir: Path) -> Path | None:
    for folder in [model_dir, *model_dir.parents][:IMAGE_DIR_SEARCH_DEPTH]:
        if (folder / "images").is_dir():
            return folder / "images"
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, checking that all of it decodes (`splat4d.data.checks.check_image`:
    pycolmap's reader would pad a truncated file with grey without a word).

    Raises:
        DatasetError: naming the file when it is missing, empty, not an image, truncated or corrupt.
    """
    return check_image(path)


def find_mask(masks: Path, name: str) -> Path:
    """The mask of image `name` in folder `masks`: `<name>`, `<name>.png` or `<name with .png suffix>`.

    Raises:
        DatasetError: naming the expected file when none of them exists.
    """
    candidates = [masks / name, masks / f"{name}.png", (masks / name).with_suffix(".png")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DatasetError(
            f"{masks / name}: mask not found (also tried {name}.png); add the mask or drop --data.masks"
        )
    return found


def split_every(n: int, test_every: int) -> tuple[list[int], list[int]]:
    """(train, test) indices: every `test_every`-th index, starting at 0, is a test index; none if < 1."""
    if test_every < 1:
        return list(range(n)), []
    test = list(range(0, n, test_every))
    return [i for i in range(n) if i % test_every != 0], test


def _T_world_cam(image: pycolmap.Image) -> Float[np.ndarray, "4 4"]:
    T_cam_world = np.eye(4)
    T_cam_world[:3] = image.cam_from_world().matrix()
    return np.linalg.inv(T_cam_world)


def _check_pinhole_files(views: list[DistortedView]) -> None:
    """Undistortion reads every image anyway; pinhole views are checked here, from the file headers."""
    for view in views:
        if not is_pinhole(view.camera):
            continue
        expected = (view.camera.width, view.camera.height)
        for path in [view.image_path] + ([view.mask_path] if view.mask_path is not None else []):
            size = image_size(path)
            if size != expected:
                raise size_mismatch(path, size, expected)


def scene_from_reconstruction(
    reconstruction: pycolmap.Reconstruction,
    images_dir: Path,
    cfg: DataConfig,
    workdir: Path,
    source: Path,
    progress: bool = True,
    model_dir: Path | None = None,
) -> SceneData:
    """SceneData of the registered images of a reconstruction, sorted by name, undistorted to pinhole. Each image
    keeps its own camera's intrinsics and size (a model may have several cameras, of different sizes).

    Images are read as stored, without their EXIF orientation: COLMAP computed the cameras on the stored pixels
    (`splat4d.data.orientation`).

    Args:
        reconstruction: cameras, registered image poses and 3D points.
        images_dir: folder the image names are relative to.
        cfg: masks folder and test split.
        workdir: undistorted images go to `workdir/undistorted/` (only for non-pinhole cameras).
        source: named in error messages and recorded in the metadata.
        progress: show a progress bar while undistorting.
        model_dir: the folder the model was read from, to name its files in error messages (else `source`).

    Raises:
        DatasetError: naming the file when a camera is unusable (size, focal length, parameters), a pose is not a
            unit quaternion and finite translation, a point is not finite, an image listed in the model is
            missing, unreadable or of another size than its camera, or a mask is missing.
    """
    images = sorted(
        (reconstruction.images[i] for i in reconstruction.reg_image_ids()), key=lambda im: im.name
    )
    if not images:
        raise DatasetError(f"{source}: the COLMAP model has no registered images")

    def file(name: str) -> Path:
        return source if model_dir is None else model_file(Path(model_dir), name)

    _check_cameras(reconstruction, images, file("cameras"))
    T_world_cam = _checked_poses(images, source if model_dir is None else pose_file(Path(model_dir)))
    points, colors = _checked_points(reconstruction, file("points3D"))
    views = []
    for image in images:
        image_path = images_dir / image.name
        if not image_path.is_file():
            raise DatasetError(
                f"{image_path}: listed in the COLMAP model but not found; restore it or remove it from the model"
            )
        mask_path = None if cfg.masks is None else find_mask(Path(cfg.masks), image.name)
        views.append(
            DistortedView(image.name, image_path, reconstruction.cameras[image.camera_id], mask_path)
        )
    _check_pinhole_files(views)
    pinhole: list[PinholeView] = undistort_views(views, Path(workdir) / "undistorted", progress=progress)
    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack(T_world_cam)).float(),
        Ks=torch.from_numpy(np.stack([v.K for v in pinhole])).float(),
        width=[v.width for v in pinhole],
        height=[v.height for v in pinhole],
    )
    train, test = split_every(len(images), cfg.test_every)
    return SceneData(
        cameras=cameras,
        image_paths=[v.image_path for v in pinhole],
        depth_paths=[None] * len(images),
        train_indices=train,
        test_indices=test,
        points=points,
        point_colors=colors,
        mask_paths=None if cfg.masks is None else [v.mask_path for v in pinhole],
        metadata={
            "source": str(source),
            "format": "colmap",
            "image_names": [im.name for im in images],
            "camera_models": sorted({reconstruction.cameras[im.camera_id].model_name for im in images}),
        },
    )


def read_colmap(cfg: DataConfig, workdir: Path) -> SceneData:
    """Read the COLMAP workspace at `cfg.path` (see the module docstring for the layouts).

    Images are sorted by name; every `cfg.test_every`-th one is a test image. Masks, when `cfg.masks` is set,
    are `cfg.masks/<image name>` (or that name plus `.png`).

    Args:
        cfg: data configuration; `path`, `masks` and `test_every` are used.
        workdir: folder for derived files (`undistorted/`), reused across runs.

    Returns:
        Pinhole cameras, image paths (undistorted copies for other camera models), the model's 3D points and
        their colours.

    Raises:
        DatasetError: naming the file when the model is missing, truncated, corrupt or malformed (each file is
            walked before pycolmap reads it: `splat4d.data.colmap_files`), holds an unusable camera, pose or
            point, or an image is missing, does not decode in full or is of another size; or pycolmap is not
            installed.
    """
    path = Path(cfg.path)
    model_dir = find_model(path) if path.is_dir() else None
    if model_dir is None:
        raise DatasetError(
            f"{path}: no COLMAP model (cameras, images and points3D as .bin or .txt) in it, sparse/ or sparse/0/"
        )
    images_dir = _find_images_dir(model_dir)
    if images_dir is None:
        raise DatasetError(f"{model_dir}: no images/ folder next to this COLMAP model")
    pycolmap = require("pycolmap", "read COLMAP workspaces", DatasetError)
    check_model_files(model_dir)
    try:
        reconstruction = pycolmap.Reconstruction(model_dir)
    except PYCOLMAP_ERRORS as exc:
        reason = one_line(str(exc)).split("] ", 1)[-1]  # drop pycolmap's [source.cc:line] prefix
        raise DatasetError(f"{model_dir}: cannot read the COLMAP model ({reason}); {HINT}") from exc
    return scene_from_reconstruction(
        reconstruction, images_dir, cfg, workdir, source=path, model_dir=model_dir
    )


def _check_cameras(reconstruction: pycolmap.Reconstruction, images: list, file: Path) -> None:
    """Every camera of the registered images has a size in 1..MAX_IMAGE_SIDE, finite parameters and positive
    focal lengths."""
    for camera_id in sorted({im.camera_id for im in images}):
        camera = reconstruction.cameras[camera_id]
        what = f"camera {camera_id} ({camera.model_name})"
        hint = "fix the camera or re-run COLMAP"
        params = np.asarray(camera.params, dtype=np.float64)
        if not np.isfinite(params).all():
            raise DatasetError(
                f"{file}: {what} has parameters that are not finite: {params.tolist()}; {hint}"
            )
        if not all(1 <= side <= MAX_IMAGE_SIDE for side in (camera.width, camera.height)):
            raise DatasetError(
                f"{file}: {what} has image size {camera.width}x{camera.height}, not in 1..{MAX_IMAGE_SIDE}; {hint}"
            )
        focal = params[list(camera.focal_length_idxs())]
        if (focal <= 0).any():
            raise DatasetError(f"{file}: {what} has focal length {focal.tolist()}, not positive; {hint}")


def _checked_poses(images: list, file: Path) -> list[Float[np.ndarray, "4 4"]]:
    """T_world_cam of each image, from a finite unit quaternion and a finite translation (checked here: pycolmap
    turns a zero quaternion into the identity rotation without a word)."""
    hint = "fix the pose (a unit quaternion QW QX QY QZ and a finite translation) or remove the image"
    poses = []
    for image in images:
        cam_from_world = image.cam_from_world()
        q = np.asarray(cam_from_world.rotation.quat, dtype=np.float64)
        t = np.asarray(cam_from_world.translation, dtype=np.float64)
        what = f"the pose of {image.name}"
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            qwxyz = " ".join(f"{v:.4g}" for v in (q[3], *q[:3]))
            raise DatasetError(
                f"{file}: {what} is not finite (quaternion {qwxyz}, translation {' '.join(f'{v:.4g}' for v in t)}); "
                f"{hint}"
            )
        norm = float(np.linalg.norm(q))
        if abs(norm - 1.0) > QUATERNION_TOLERANCE:
            raise DatasetError(
                f"{file}: {what} has a quaternion of norm {norm:.4g}, not a unit quaternion; {hint}"
            )
        poses.append(check_pose(_T_world_cam(image), file, what, hint))
    return poses


def _checked_points(
    reconstruction: pycolmap.Reconstruction, file: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The model's 3D points and colours in [0, 1], refusing non-finite positions."""
    points3D = reconstruction.points3D
    if not len(points3D):
        return None, None
    ids = list(points3D.keys())
    xyz = np.array([points3D[i].xyz for i in ids], dtype=np.float64)
    bad = ~np.isfinite(xyz).all(axis=1) | (np.abs(xyz) > np.finfo(np.float32).max).any(axis=1)
    if bad.any():
        raise DatasetError(
            f"{file}: {int(bad.sum())} of {len(ids)} points have a non-finite position (point {ids[int(np.argmax(bad))]}); "
            f"{HINT}"
        )
    colors = np.array([points3D[i].color for i in ids], dtype=np.float32) / 255.0
    return xyz.astype(np.float32), colors
