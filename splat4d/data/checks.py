"""Checks of the values readers take from dataset files, shared by every reader.

Each check either returns the value in the form splat4d uses or raises `DatasetError` with one line
`<file>: <what is wrong>; <what to do>`, so that readers check a value where they read it (and know the file) and
nothing invalid (a NaN pose, a reflection, a zero focal length, a truncated image) reaches training.
`describe_pose_problem` and `describe_intrinsics_problem` only describe; `load_scene` uses them again on the
whole scene as a last line of defence.
"""

import json
import math
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from splat4d.data.base import DatasetError

ROTATION_TOLERANCE = 2e-2
"""Largest |RᵀR − I| entry (dimensionless: a rotation's columns are unit vectors whatever the scene's scale) for
the 3x3 part of a pose to count as a rotation. Real poses are orthonormal to ~1e-7 in float64 and ~1e-5 after a
round trip through float32 (the NeRF-synthetic and D-NeRF files are within 2e-6); matrices written with 3
decimals are off by ~1e-3 and with 2 decimals by ~1e-2, and still mean a rotation. A rotation scaled by s is off
by |s² − 1|, so a stretch of more than ~1% (or a shear, or an all-zero block) is refused: it is not a camera pose.
`check_pose` returns accepted poses with their 3x3 part replaced by the nearest rotation."""
BOTTOM_ROW_TOLERANCE = 1e-4
"""Largest deviation of a 4x4 pose's bottom row from [0, 0, 0, 1] (float32 round-off stays below 1e-6)."""
QUATERNION_TOLERANCE = 1e-3
"""Largest | |q| − 1 | of a pose's unit quaternion (COLMAP writes them normalised to ~1e-16)."""
MAX_IMAGE_SIDE = 1 << 20
"""Largest image width or height accepted from a file (about a million pixels a side): anything larger is a
corrupt or mistyped value, not a camera."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Poses and intrinsics are stored in float32; larger finite values would become infinite there."""
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
"""What PIL's decoders raise on a malformed file (beside `Image.DecompressionBombError`)."""


def load_json_object(path: Path, expected: str) -> dict:
    """The JSON object in the UTF-8 file `path`.

    Args:
        path: the file.
        expected: what the object should hold, for the message when it is not an object (e.g. "'frames'").

    Raises:
        DatasetError: naming the file when it cannot be read, is not UTF-8, not valid JSON or not an object.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"{path}: cannot read ({exc.strerror or exc}); check the file and its permissions"
        ) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8 JSON"
        ) from exc
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix the file"
        ) from exc
    except RecursionError as exc:
        raise DatasetError(f"{path}: not valid JSON (nested too deeply); fix the file") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object with {expected}, found a {_json_type(meta)}")
    return meta


def describe_pose_problem(T: np.ndarray) -> str | None:
    """What keeps `T` from being a rigid 4x4 transform (finite, bottom row [0, 0, 0, 1], its 3x3 part a rotation
    within `ROTATION_TOLERANCE`), as a phrase such as "has a NaN", or None when it is one."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        return f"is {'x'.join(map(str, T.shape)) or 'a scalar'}, not 4x4"
    if np.isnan(T).any():
        return "has a NaN"
    if np.isinf(T).any():
        return "has an infinite value"
    if np.abs(T).max() > FLOAT32_MAX:
        return f"has a value too large for float32 ({np.abs(T).max():.3g})"
    if np.abs(T[3] - [0.0, 0.0, 0.0, 1.0]).max() > BOTTOM_ROW_TOLERANCE:
        return f"has bottom row {_numbers(T[3])}, not [0 0 0 1]"
    R = T[:3, :3]
    det = float(np.linalg.det(R))
    error = float(np.abs(R.T @ R - np.eye(3)).max())
    if det <= 0.0:
        kind = "a reflection" if det < 0 and error <= ROTATION_TOLERANCE else "not a rotation"
        return f"has a 3x3 part that is {kind} (determinant {det:.3g})"
    if error > ROTATION_TOLERANCE:
        return (
            f"has a 3x3 part that is not a rotation (scaled or sheared: determinant {det:.3g}, "
            f"RᵀR differs from I by {error:.2g})"
        )
    return None


def check_pose(
    T: np.ndarray, file: Path | str, what: str, hint: str = "fix or remove the frame"
) -> np.ndarray:
    """`T` as float64 when it is a rigid 4x4 transform within the tolerances (`describe_pose_problem`), made
    exactly rigid: its 3x3 part replaced by the nearest rotation (polar decomposition) and its bottom row by
    [0, 0, 0, 1], so rounding in the file never reaches the renderer.

    Raises:
        DatasetError: `<file>: <what> <problem>; <hint>`.
    """
    problem = describe_pose_problem(T)
    if problem is not None:
        raise DatasetError(f"{file}: {what} {problem}; {hint}")
    T = np.array(T, dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = U @ Vt  # det > 0 is checked above, so this is a rotation, not a reflection
    T[3] = [0.0, 0.0, 0.0, 1.0]
    return T


def describe_intrinsics_problem(K: np.ndarray, width: int, height: int) -> str | None:
    """What keeps (K, width, height) from being a usable pinhole camera (finite K with fx, fy > 0, width and
    height in [1, MAX_IMAGE_SIDE]), or None."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        return f"intrinsics are {'x'.join(map(str, K.shape))}, not 3x3"
    if not np.isfinite(K).all() or np.abs(K).max() > FLOAT32_MAX:
        return f"intrinsics {_numbers(K[:2].ravel())} are not all finite"
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        return f"focal length ({K[0, 0]:g}, {K[1, 1]:g}) is not positive"
    if not all(1 <= side <= MAX_IMAGE_SIDE for side in (width, height)):
        return f"image size {width}x{height} is not in 1..{MAX_IMAGE_SIDE}"
    return None


def check_intrinsics(
    K: np.ndarray, width: int, height: int, file: Path | str, what: str, hint: str = "fix the intrinsics"
) -> None:
    """Raises `DatasetError` (`<file>: <what>: <problem>; <hint>`) unless `describe_intrinsics_problem` is None."""
    problem = describe_intrinsics_problem(K, width, height)
    if problem is not None:
        raise DatasetError(f"{file}: {what}: {problem}; {hint}")


def number(value: object, file: Path | str, what: str, hint: str = "write a finite number") -> float:
    """A finite number read from a JSON value (a number, or a string holding one; not a boolean).

    Raises:
        DatasetError: `<file>: <what> is ...; <hint>` when it is missing, not a number or not finite.
    """
    if value is None:
        raise DatasetError(f"{file}: {what} is missing; {hint}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DatasetError(f"{file}: {what} is {_show(value)}, not a number; {hint}")
    try:
        result = float(value)
    except (ValueError, OverflowError) as exc:
        raise DatasetError(f"{file}: {what} is {_show(value)}, not a number; {hint}") from exc
    if not math.isfinite(result) or abs(result) > FLOAT32_MAX:
        raise DatasetError(f"{file}: {what} is {result:g}, not a finite number; {hint}")
    return result


def image_side(
    value: object, file: Path | str, what: str, hint: str = "write the image size in pixels"
) -> int:
    """A width or height: a whole number in [1, MAX_IMAGE_SIDE] (see `number`)."""
    result = number(value, file, what, hint)
    if result != int(result) or not 1 <= result <= MAX_IMAGE_SIDE:
        raise DatasetError(f"{file}: {what} is {result:g}, not a whole number of pixels >= 1; {hint}")
    return int(result)


def unit_time(value: object, file: Path | str, what: str) -> float:
    """A capture time in [0, 1] (see `number`)."""
    hint = "times are normalised to [0, 1]"
    result = number(value, file, what, hint)
    if not 0.0 <= result <= 1.0:
        raise DatasetError(f"{file}: {what} {result:g} is not in [0, 1]; {hint}")
    return result


def matrix(value: object, shape: tuple[int, ...], file: Path | str, what: str, hint: str) -> np.ndarray:
    """A float64 array of `shape` from nested JSON lists (NaN and infinity are left for `check_pose`).

    Raises:
        DatasetError: it is missing, ragged, holds something other than numbers, or has another shape.
    """
    if value is None:
        raise DatasetError(f"{file}: {what} is missing; {hint}")
    if isinstance(value, str | bytes | dict | bool):
        raise DatasetError(
            f"{file}: {what} is {_show(value)}, not a {'x'.join(map(str, shape))} matrix; {hint}"
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as exc:
        problem = "ragged" if "inhomogeneous" in str(exc) or "sequence" in str(exc) else "not all numbers"
        raise DatasetError(f"{file}: {what} is {problem}; {hint}") from exc
    if array.shape != shape:
        got = "x".join(map(str, array.shape)) or "a single number"
        raise DatasetError(f"{file}: {what} is {got}, not {'x'.join(map(str, shape))}; {hint}")
    return array


def image_header_size(path: Path, listed_in: Path | str | None = None) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels.

    Raises:
        DatasetError: naming the file when it is missing, empty or not an image.
    """
    _check_file(path, listed_in)
    try:
        with Image.open(path) as image:
            return image.size
    except (*IMAGE_ERRORS, Image.DecompressionBombError) as exc:
        raise DatasetError(_image_error(path, exc)) from exc


def check_image(path: Path, listed_in: Path | str | None = None) -> tuple[int, int]:
    """(width, height) of an image file after decoding all of it, which finds truncated and corrupt files (that
    pycolmap's reader would silently pad with grey).

    JPEGs are decoded at reduced scale (PIL's draft mode): the entropy-coded data is still read to its end, so
    truncation is still found, at a fraction of the cost.

    Raises:
        DatasetError: naming the file when it is missing, empty, not an image, truncated or corrupt.
    """
    _check_file(path, listed_in)
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
    except (*IMAGE_ERRORS, Image.DecompressionBombError) as exc:
        raise DatasetError(_image_error(path, exc)) from exc
    return size


def _check_file(path: Path, listed_in: Path | str | None) -> None:
    where = f" (listed in {listed_in})" if listed_in is not None else ""
    if not Path(path).is_file():
        raise DatasetError(f"{path}: image not found{where}; restore it or remove it from the dataset")
    if Path(path).stat().st_size == 0:
        raise DatasetError(f"{path}: cannot read image: the file is empty{where}; replace or remove it")


def _image_error(path: Path, exc: Exception) -> str:
    hint = "replace or remove it"
    if isinstance(exc, PermissionError):
        return f"{path}: cannot read image: permission denied; check the file's permissions"
    if isinstance(exc, UnidentifiedImageError):
        return f"{path}: cannot read image: not an image file, or in a format splat4d cannot read; {hint}"
    if isinstance(exc, Image.DecompressionBombError):
        return f"{path}: cannot read image: it is too large to decode safely ({exc}); downscale it"
    if "truncated" in str(exc):
        return (
            f"{path}: cannot read image: the file is truncated; copy it again from the original, or remove it"
        )
    return f"{path}: cannot read image: corrupt ({type(exc).__name__}: {exc}); {hint}"


def _numbers(values: np.ndarray) -> str:
    return "[" + " ".join(f"{v:g}" for v in np.asarray(values).ravel()) + "]"


def _json_type(value: object) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
