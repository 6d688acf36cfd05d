"""Dataset readers: the `DATAPARSERS` registry, format detection and `load_scene`.

Every reader turns one input layout into a `SceneData` (pinhole cameras in OpenCV axes, image paths, split).
`load_scene` picks the reader (detecting the format unless `DataConfig.format` names one), runs it, checks the
result and attaches `DataConfig.masks`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from splat4d.data.base import DatasetError, SceneData, VideoFrame
from splat4d.data.blender import is_blender, read_blender
from splat4d.data.colmap import is_colmap, read_colmap
from splat4d.data.config import DataConfig
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
    scene.metadata.setdefault("format", name)
    return scene


def _validate(scene: SceneData, source: Path) -> None:
    n = len(scene.cameras)
    lengths = {"image_paths": len(scene.image_paths), "depth_paths": len(scene.depth_paths)}
    if scene.mask_paths is not None:
        lengths["mask_paths"] = len(scene.mask_paths)
    for field, length in lengths.items():
        if length != n:
            raise DatasetError(f"{source}: the reader returned {n} cameras but {length} {field}")
    if not scene.train_indices:
        raise DatasetError(f"{source}: no training images")
    bad = [i for i in scene.train_indices + scene.test_indices if not 0 <= i < n]
    if bad:
        raise DatasetError(f"{source}: split indices {bad[:5]} out of range for {n} images")


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
        raise DatasetError(f"{folder}: mask folder not found")
    masks: list[Path | None] = []
    for image in image_paths:
        names = (image.name, image.stem + MASK_SUFFIX, image.name + MASK_SUFFIX)
        candidates = [base / name for base in (folder / image.parent.name, folder) for name in names]
        masks.append(next((c for c in candidates if c.is_file()), None))
    if image_paths and all(m is None for m in masks):
        raise DatasetError(
            f"{folder}: no mask named like any image (e.g. {image_paths[0].stem}{MASK_SUFFIX})"
        )
    return masks
