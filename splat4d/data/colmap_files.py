"""Structural checks of COLMAP model files, run before pycolmap reads them.

pycolmap trusts its input: a truncated or garbage `.bin` file makes it read past the end (a truncated
`cameras.bin` loads as cameras of size 0 with zero focal lengths), reserve memory for a count read from garbage
(`points3D.bin`: `std::bad_alloc`, or the process killed for memory) or loop forever looking for the end of an
image name (`images.bin`, `frames.bin`). Its text reader names no file or line when a number does not parse. So
every file is walked here first, record by record, checking that each count fits in the bytes that follow and
that the file ends where its last record does (binary), or that each line has the fields it needs as finite
numbers (text). The values themselves (positive focal lengths, unit quaternions) are checked after loading, in
`splat4d.data.colmap`, for both formats alike.

Formats: COLMAP's `src/colmap/scene/reconstruction_io_binary.cc` and `reconstruction_io_text.cc` (all binary
data little-endian; `rigs` and `frames` exist in models written by COLMAP 3.12 and later).
"""

import functools
import math
import struct
from collections.abc import Iterator
from pathlib import Path

from splat4d.data.base import DatasetError
from splat4d.optional import require

REQUIRED = ("cameras", "images", "points3D")
OPTIONAL = ("rigs", "frames")
HINT = "re-export the model (e.g. `colmap model_converter`) or restore the file from a backup"


@functools.cache
def camera_models() -> dict[int, tuple[str, int]]:
    """Camera model id → (name, number of parameters), from pycolmap's own table.

    Raises:
        DatasetError: pycolmap is not installed.
    """
    pycolmap = require("pycolmap", "read COLMAP models", DatasetError)
    table = {}
    for name, model in pycolmap.CameraModelId.__members__.items():
        if int(model) >= 0:
            camera = pycolmap.Camera.create_from_model_id(1, model, 1.0, 1, 1)
            table[int(model)] = (name, len(camera.params))
    return table


@functools.cache
def _camera_models_by_name() -> dict[str, tuple[int, int]]:
    """Camera model name → (id, number of parameters)."""
    return {name: (model_id, n) for model_id, (name, n) in camera_models().items()}


def model_format(model_dir: Path) -> str:
    """ "bin" when the three required binary files exist (pycolmap then reads the binary model), else "txt"."""
    return "bin" if all((model_dir / f"{name}.bin").is_file() for name in REQUIRED) else "txt"


def model_file(model_dir: Path, name: str) -> Path:
    """The file pycolmap reads for `name` ("cameras", "images", ...)."""
    return model_dir / f"{name}.{model_format(model_dir)}"


def pose_file(model_dir: Path) -> Path:
    """The file the image poses come from: `frames` in models that have one (the poses in `images` are then
    ignored), else `images`."""
    frames = model_file(model_dir, "frames")
    return frames if frames.is_file() else model_file(model_dir, "images")


def check_model_files(model_dir: Path) -> None:
    """Walk every file of the model in `model_dir` that pycolmap will read.

    Raises:
        DatasetError: `<model_dir>: cannot read the COLMAP model: <file> ...`, naming the file (and for text files
            the line) that is truncated, corrupt or malformed.
    """
    fmt = model_format(model_dir)
    checks = _BINARY_CHECKS if fmt == "bin" else _TEXT_CHECKS
    for name in (*OPTIONAL, *REQUIRED):
        path = model_dir / f"{name}.{fmt}"
        if path.is_file():
            checks[name](path)


# --- binary ----------------------------------------------------------------------------------------------------


class _CorruptError(Exception):
    pass


class _Bytes:
    """A cursor over a file's bytes that refuses to read past the end."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.pos = 0

    def take(self, fmt: struct.Struct) -> tuple:
        if self.pos + fmt.size > len(self.data):
            raise _CorruptError(f"it ends in the middle of a record, at byte {len(self.data)}")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def skip(self, count: int, size: int, what: str) -> None:
        if count * size > len(self.data) - self.pos:
            raise _CorruptError(
                f"{what} count {count} at byte {self.pos} does not fit in the rest of the file"
            )
        self.pos += count * size

    def count(self, min_record: int, what: str) -> int:
        (n,) = self.take(_U64)
        if n * min_record > len(self.data) - self.pos:
            raise _CorruptError(f"it says it holds {n} {what} but is only {len(self.data)} bytes long")
        return n

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise _CorruptError(f"the name at byte {self.pos} never ends")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _CorruptError(f"the name at byte {self.pos - len(raw) - 1} is not UTF-8 text") from exc

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _CorruptError(f"{len(self.data) - self.pos} bytes follow its last record")


_U64 = struct.Struct("<Q")
_CAMERA = struct.Struct("<IiQQ")  # camera_id, model_id, width, height
_IMAGE = struct.Struct("<I7dI")  # image_id, qw qx qy qz, tx ty tz, camera_id
_POINT = struct.Struct("<Q3d3BdQ")  # point3D_id, xyz, rgb, error, track length
_RIG = struct.Struct("<II")  # rig_id, number of sensors
_SENSOR = struct.Struct("<iI")  # sensor type, sensor id
_SENSOR_POSE = struct.Struct("<iIB")  # sensor type, sensor id, has_pose
_FRAME = struct.Struct("<II7dI")  # frame_id, rig_id, rig_from_world (q, t), number of data ids
_RIGID = 7 * 8
_POINT2D = 2 * 8 + 8  # x, y, point3D_id
_TRACK_ELEMENT = 4 + 4  # image_id, point2D_idx
_DATA_ID = 4 + 4 + 8  # sensor type, sensor id, data id


def _walk(path: Path, body) -> None:
    try:
        cursor = _Bytes(path)
        body(cursor)
        cursor.end()
    except _CorruptError as exc:
        raise DatasetError(
            f"{path.parent}: cannot read the COLMAP model: {path.name} is truncated or corrupt ({exc}); {HINT}"
        ) from exc


def _cameras_bin(path: Path) -> None:
    def body(b: _Bytes) -> None:
        models = camera_models()
        for _ in range(b.count(_CAMERA.size, "cameras")):
            camera_id, model_id, _, _ = b.take(_CAMERA)
            if model_id not in models:
                raise _CorruptError(f"camera {camera_id} has unknown camera model id {model_id}")
            b.skip(models[model_id][1], 8, "parameter")

    _walk(path, body)


def _images_bin(path: Path) -> None:
    def body(b: _Bytes) -> None:
        for _ in range(b.count(_IMAGE.size + 1 + 8, "images")):
            b.take(_IMAGE)
            b.string()
            (n,) = b.take(_U64)
            b.skip(n, _POINT2D, "2D point")

    _walk(path, body)


def _points_bin(path: Path) -> None:
    def body(b: _Bytes) -> None:
        for _ in range(b.count(_POINT.size, "points")):
            *_, track_length = b.take(_POINT)
            b.skip(track_length, _TRACK_ELEMENT, "track")

    _walk(path, body)


def _rigs_bin(path: Path) -> None:
    def body(b: _Bytes) -> None:
        for _ in range(b.count(_RIG.size, "rigs")):
            _, sensors = b.take(_RIG)
            if sensors > 0:
                b.take(_SENSOR)
            for _ in range(max(sensors - 1, 0)):  # every take() is bounded, so a garbage count ends soon
                *_, has_pose = b.take(_SENSOR_POSE)
                if has_pose:
                    b.skip(1, _RIGID, "sensor pose")

    _walk(path, body)


def _frames_bin(path: Path) -> None:
    def body(b: _Bytes) -> None:
        for _ in range(b.count(_FRAME.size, "frames")):
            *_, n = b.take(_FRAME)
            b.skip(n, _DATA_ID, "data id")

    _walk(path, body)


# --- text ------------------------------------------------------------------------------------------------------


class _BadLineError(Exception):
    pass


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each line that is neither empty nor a comment."""
    for number, fields in _all_lines(path):
        if fields and not fields[0].startswith("#"):
            yield number, fields


def _all_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path.parent}: cannot read the COLMAP model: {path.name} is not a text file (byte "
            f"0x{exc.object[exc.start]:02x} at offset {exc.start}); {HINT}"
        ) from exc
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line.split()


def _float(token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _BadLineError(f"{what} {_short(token)} is not a number") from None
    if not math.isfinite(value):
        raise _BadLineError(f"{what} {token} is not a finite number")
    return value


def _int(token: str, what: str, low: int = 0) -> int:
    try:
        value = int(token)
    except ValueError:
        raise _BadLineError(f"{what} {_short(token)} is not a whole number") from None
    if value < low:
        raise _BadLineError(f"{what} {value} is less than {low}")
    return value


def _need(fields: list[str], n: int, layout: str) -> None:
    if len(fields) < n:
        raise _BadLineError(f"{len(fields)} fields where {n} are needed ({layout})")


def _text_check(path: Path, check_line, lines: Iterator[tuple[int, list[str]]] | None = None) -> None:
    for number, fields in lines if lines is not None else _lines(path):
        try:
            check_line(fields)
        except _BadLineError as exc:
            raise DatasetError(
                f"{path.parent}: cannot read the COLMAP model: {path.name} line {number}: {exc}; fix the line or "
                f"{HINT}"
            ) from exc


def _rigid(fields: list[str], what: str) -> None:
    for token, name in zip(fields, ("qw", "qx", "qy", "qz", "tx", "ty", "tz"), strict=True):
        _float(token, f"{what} {name}")


def _camera_line(fields: list[str]) -> None:
    _need(fields, 4, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
    _int(fields[0], "camera id")
    models = _camera_models_by_name()
    if fields[1] not in models:
        raise _BadLineError(f"camera model {_short(fields[1])} is not a COLMAP camera model")
    _int(fields[2], "width", low=1)
    _int(fields[3], "height", low=1)
    expected = models[fields[1]][1]
    if len(fields) - 4 != expected:
        raise _BadLineError(
            f"a {fields[1]} camera has {expected} parameters, this line has {len(fields) - 4}"
        )
    for token in fields[4:]:
        _float(token, "parameter")


def _image_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The pose line of each image: COLMAP reads the line after each pose line as its 2D points, even when
    that line is empty."""
    lines = _all_lines(path)
    for number, fields in lines:
        if fields and not fields[0].startswith("#"):
            yield number, fields
            next(lines, None)


def _image_line(fields: list[str]) -> None:
    _need(fields, 10, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
    _int(fields[0], "image id")
    _rigid(fields[1:8], "pose")
    _int(fields[8], "camera id")


def _point_line(fields: list[str]) -> None:
    _need(fields, 8, "POINT3D_ID X Y Z R G B ERROR TRACK[]")
    _int(fields[0], "point id")
    for token, name in zip(fields[1:4], "XYZ", strict=True):
        _float(token, name)
    for token, name in zip(fields[4:7], "RGB", strict=True):
        if _int(token, name) > 255:
            raise _BadLineError(f"colour {name} {token} is more than 255")
    _float(fields[7], "error")
    if (len(fields) - 8) % 2:
        raise _BadLineError("the track has an odd number of fields (expected IMAGE_ID POINT2D_IDX pairs)")


def _frame_line(fields: list[str]) -> None:
    _need(fields, 10, "FRAME_ID RIG_ID QW QX QY QZ TX TY TZ NUM_DATA_IDS DATA_IDS[]")
    _int(fields[0], "frame id")
    _int(fields[1], "rig id")
    _rigid(fields[2:9], "pose")
    n = _int(fields[9], "number of data ids")
    if len(fields) != 10 + 3 * n:
        raise _BadLineError(f"{n} data ids need {10 + 3 * n} fields, the line has {len(fields)}")


def _rig_line(fields: list[str]) -> None:
    _need(fields, 2, "RIG_ID NUM_SENSORS ...")
    _int(fields[0], "rig id")
    sensors = _int(fields[1], "number of sensors")
    pos = 2 + (2 if sensors > 0 else 0)
    for _ in range(max(sensors - 1, 0)):
        _need(fields, pos + 3, "SENSOR_TYPE SENSOR_ID HAS_POSE per sensor")
        has_pose = _int(fields[pos + 2], "has_pose")
        pos += 3
        if has_pose:
            _need(fields, pos + 7, "a sensor pose QW QX QY QZ TX TY TZ")
            _rigid(fields[pos : pos + 7], "sensor pose")
            pos += 7


def _short(token: str) -> str:
    return repr(token if len(token) <= 20 else token[:17] + "...")


_BINARY_CHECKS = {
    "cameras": _cameras_bin,
    "images": _images_bin,
    "points3D": _points_bin,
    "rigs": _rigs_bin,
    "frames": _frames_bin,
}
_TEXT_CHECKS = {
    "cameras": lambda path: _text_check(path, _camera_line),
    "images": lambda path: _text_check(path, _image_line, _image_lines(path)),
    "points3D": lambda path: _text_check(path, _point_line),
    "rigs": lambda path: _text_check(path, _rig_line),
    "frames": lambda path: _text_check(path, _frame_line),
}
