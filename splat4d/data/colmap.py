"""Reader for COLMAP workspaces: a sparse model (text or binary) and the images it was made from.

Layouts found: `<path>/sparse/0/`, `<path>/sparse/` or `<path>` itself holding `cameras`, `images` and `points3D`
(`.bin` or `.txt`; newer models also have `rigs` and `frames`, which pycolmap reads too); images in the `images/`
folder next to `sparse/`. Any pycolmap camera model is accepted: non-pinhole cameras are undistorted into
`<workdir>/undistorted/` once and read from there afterwards.

COLMAP stores `cam_from_world` (world → camera) with OpenCV camera axes and pixel centres at +0.5, the same
conventions as `splat4d.cameras`, so the only conversion is the inverse to `T_world_cam`.
"""

from pathlib import Path

import numpy as np
import pycolmap
import torch
from jaxtyping import Float
from PIL import Image, UnidentifiedImageError

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.config import DataConfig
from splat4d.data.undistort import DistortedView, PinholeView, is_pinhole, undistort_views

MODEL_FILES = ("cameras", "images", "points3D")
"""Files (`.bin` or `.txt`) that make a folder a COLMAP sparse model."""
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
    """(width, height) of an image file from its header, checking that the file is an intact image.

    Raises:
        DatasetError: naming the file when it is missing or cannot be read.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: image not found")
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from exc
    return size


def check_same_size(sizes: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    """The one image size shared by all files (Cameras holds a single width and height).

    Raises:
        DatasetError: naming two files of different sizes.
    """
    (first, size), *rest = sizes.items()
    for path, other in rest:
        if other != size:
            raise DatasetError(
                f"images differ in size: {first} is {size[0]}x{size[1]}, {path} is {other[0]}x{other[1]}; "
                "all images of a scene must have one size"
            )
    return size


def find_mask(masks: Path, name: str) -> Path:
    """The mask of image `name` in folder `masks`: `<name>`, `<name>.png` or `<name with .png suffix>`.

    Raises:
        DatasetError: naming the expected file when none of them exists.
    """
    candidates = [masks / name, masks / f"{name}.png", (masks / name).with_suffix(".png")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DatasetError(f"{masks / name}: mask not found (also tried {name}.png)")
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
                raise DatasetError(
                    f"{path}: image is {size[0]}x{size[1]} but its camera is {expected[0]}x{expected[1]}"
                )


def scene_from_reconstruction(
    reconstruction: pycolmap.Reconstruction,
    images_dir: Path,
    cfg: DataConfig,
    workdir: Path,
    source: Path,
    progress: bool = True,
) -> SceneData:
    """SceneData of the registered images of a reconstruction, sorted by name, undistorted to pinhole.

    Args:
        reconstruction: cameras, registered image poses and 3D points.
        images_dir: folder the image names are relative to.
        cfg: masks folder and test split.
        workdir: undistorted images go to `workdir/undistorted/` (only for non-pinhole cameras).
        source: named in error messages and recorded in the metadata.
        progress: show a progress bar while undistorting.

    Raises:
        DatasetError: naming the file when an image listed in the model is missing, unreadable or of another
            size than its camera, when a mask is missing, or when the images end up at different sizes.
    """
    images = sorted(
        (reconstruction.images[i] for i in reconstruction.reg_image_ids()), key=lambda im: im.name
    )
    if not images:
        raise DatasetError(f"{source}: the COLMAP model has no registered images")
    views = []
    for image in images:
        image_path = images_dir / image.name
        if not image_path.is_file():
            raise DatasetError(f"{image_path}: listed in the COLMAP model but not found")
        mask_path = None if cfg.masks is None else find_mask(Path(cfg.masks), image.name)
        views.append(
            DistortedView(image.name, image_path, reconstruction.cameras[image.camera_id], mask_path)
        )
    _check_pinhole_files(views)
    pinhole: list[PinholeView] = undistort_views(views, Path(workdir) / "undistorted", progress=progress)
    width, height = check_same_size({v.image_path: (v.width, v.height) for v in pinhole})

    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack([_T_world_cam(im) for im in images])).float(),
        Ks=torch.from_numpy(np.stack([v.K for v in pinhole])).float(),
        width=width,
        height=height,
    )
    points3D = list(reconstruction.points3D.values())
    points = colors = None
    if points3D:
        points = np.array([p.xyz for p in points3D], dtype=np.float32)
        colors = np.array([p.color for p in points3D], dtype=np.float32) / 255.0
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
        DatasetError: naming the file when the model is missing or unreadable, or an image is missing,
            unreadable or of another size.
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
    try:
        reconstruction = pycolmap.Reconstruction(model_dir)
    except ValueError as exc:
        raise DatasetError(f"{model_dir}: cannot read the COLMAP model ({exc})") from exc
    return scene_from_reconstruction(reconstruction, images_dir, cfg, workdir, source=path)
