"""EXIF orientation: which way up a photo's stored pixels are, and upright copies for SfM.

Phones store a photo as the sensor read it and record in the EXIF `Orientation` tag (1..8) how to turn it for
display: a portrait photo taken with the phone upright is typically stored 800×600 with orientation 6 (rotate 90°
clockwise) and shown 600×800. Pillow's `ImageOps.exif_transpose` applies the tag; COLMAP (and pycolmap, and
nerfstudio's loaders) ignore it and work on the stored pixels.

The rule splat4d follows, so that every reader is consistent end to end:

- A folder of photos that splat4d poses itself (`splat4d.data.sfm`, the `images` format) is read **upright**:
  when any photo (or mask) carries an orientation other than 1, SfM, undistortion and training all read upright
  copies written once into the work folder (`upright_copies`), so the cameras describe the photos as they are
  shown. Photos already upright are linked, not copied.
- A video that splat4d poses itself (`splat4d.data.sfm.read_video`) is read **upright** too: phones record a
  portrait video as landscape frames plus a display matrix saying how to turn them (ffprobe's "rotation of
  -90.00 degrees"), and the kept frames are written turned as a player shows them (`upright_video_frame`).
- Datasets that come with cameras (COLMAP, nerfstudio, LLFF, Blender, N3DV) are read **as stored**: their
  intrinsics and poses were computed on the stored pixels (COLMAP ignores the tag), so applying it would turn the
  image under its camera. When such an image does not match its camera but would once turned upright, the error
  says so (`size_mismatch`).
"""

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps
from rich.progress import track

from splat4d.data.base import DatasetError
from splat4d.data.checks import IMAGE_ERRORS
from splat4d.data.undistort import fingerprint, replace_dir, stamp_matches

ORIENTATION_TAG = 0x0112
"""The EXIF (TIFF) tag holding the orientation."""
UPRIGHT = 1
"""Orientation 1: the stored pixels are upright."""
TRANSPOSING = (5, 6, 7, 8)
"""Orientations that turn the image by 90° (with or without a mirror), swapping its width and height."""
JPEG_QUALITY = 95
"""Quality of upright copies of JPEG photos (visually lossless; the frames kept from a video use the same)."""
JPEG_SUFFIXES = (".jpg", ".jpeg")


def exif_orientation(path: Path) -> int:
    """The EXIF orientation (1..8) of an image file; 1 when it has none, an invalid one, or cannot be read
    (readers report unreadable files themselves)."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get(ORIENTATION_TAG, UPRIGHT)
    except (*IMAGE_ERRORS, Image.DecompressionBombError):
        return UPRIGHT
    return value if isinstance(value, int) and 1 <= value <= 8 else UPRIGHT


def upright_video_frame(image: Image.Image, rotation: int | float) -> Image.Image:
    """A decoded video frame turned as a player shows it: `rotation` is the counter-clockwise angle of the
    stream's display matrix in degrees (PyAV's `VideoFrame.rotation`), rounded to a quarter turn (cameras
    record only those)."""
    quarter_turns = round(rotation / 90.0) % 4
    if quarter_turns == 0:
        return image
    turn = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)[
        quarter_turns - 1
    ]
    return image.transpose(turn)


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) of an image stored at `size` once `orientation` is applied."""
    return (size[1], size[0]) if orientation in TRANSPOSING else size


def size_mismatch(
    path: object,
    size: tuple[int, int],
    expected: tuple[int, int],
    says: str = "its camera is",
    hint: str = "fix the camera or the image",
) -> DatasetError:
    """The error for an image (or mask) of `size` whose camera says `expected`, as one line
    (`<path>: image is 800x600 but <says> 600x800; ...`). When the file's EXIF orientation would give `expected`,
    it says that the photo is stored turned and how to fix that.

    Args:
        path: the image file (or a video frame, which has no orientation).
        size: the image's (width, height) as stored.
        expected: the (width, height) its camera says.
        says: who says `expected`, e.g. "the camera says" or "transforms.json says".
        hint: what to do when the orientation does not explain the difference.
    """
    message = f"{path}: image is {size[0]}x{size[1]} but {says} {expected[0]}x{expected[1]}"
    if not isinstance(path, Path):
        return DatasetError(f"{message}; {hint}")
    orientation = exif_orientation(path)
    if orientation != UPRIGHT and upright_size(size, orientation) == tuple(expected):
        return DatasetError(
            f"{message}: the photo is stored turned (EXIF orientation {orientation}), and a dataset's cameras "
            "describe the stored pixels; if they were computed on the upright photos, save the photos upright "
            "(e.g. `mogrify -auto-orient`), or let splat4d pose the bare photo folder"
        )
    return DatasetError(f"{message}; {hint}")


def _write_upright(source: Path, target: Path) -> None:
    """`source` turned upright (`ImageOps.exif_transpose`) into `target`, in the same format, its other EXIF
    tags (camera make, model and focal length, which COLMAP uses to guess the intrinsics) and colour profile
    kept."""
    try:
        with Image.open(source) as image:
            upright = ImageOps.exif_transpose(image)
            options: dict = {"exif": upright.getexif()}
            if image.info.get("icc_profile"):
                options["icc_profile"] = image.info["icc_profile"]
            if source.suffix.lower() in JPEG_SUFFIXES:
                upright.save(target, format="JPEG", quality=JPEG_QUALITY, **options)
            else:
                upright.save(target, format=image.format or "PNG", **options)
    except (*IMAGE_ERRORS, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{source}: cannot turn the photo upright ({exc}); replace or remove it") from exc


def _link(source: Path, target: Path) -> None:
    """`target` naming the same file as `source`: a symbolic link, or a copy where links cannot be made."""
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def upright_copies(files: Sequence[Path], folder: Path, progress: bool = True) -> list[Path]:
    """The files as upright images: `files` themselves when none carries an EXIF orientation other than 1, else
    their counterparts in `folder` (same names): turned copies of the turned ones, links to the others. The
    folder is reused while the files are unchanged (`splat4d.data.undistort.replace_dir`).

    Args:
        files: image files with distinct names.
        folder: cache folder for the copies.
        progress: show a progress bar while writing copies.

    Raises:
        DatasetError: a turned photo cannot be decoded or written.
    """
    files = [Path(f) for f in files]
    orientations = [exif_orientation(f) for f in files]
    if all(o == UPRIGHT for o in orientations):
        return files
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError("upright_copies: file names must be distinct")
    key = {"files": [fingerprint(f) for f in files], "jpeg_quality": JPEG_QUALITY}
    if not stamp_matches(folder, key):
        turned = sum(o != UPRIGHT for o in orientations)
        with replace_dir(folder, key) as tmp:
            steps = track(
                list(zip(files, orientations, strict=True)),
                description=f"Turning {turned} photos upright (EXIF orientation)",
                disable=not progress,
                transient=True,
            )
            for source, orientation in steps:
                (_link if orientation == UPRIGHT else _write_upright)(source, tmp / source.name)
    return [folder / name for name in names]
