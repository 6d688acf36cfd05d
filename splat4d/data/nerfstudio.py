"""Reader for nerfstudio `transforms.json` scenes, including `ns-process-data` output.

Poses are camera-to-world in OpenGL axes and become OpenCV `T_world_cam`. Intrinsics, image size (`w`, `h`) and
distortion (`k1`…`k4`, `p1`, `p2`) may be global or per frame, so frames may differ in size (each keeps its own);
frames with distortion (or `camera_model: OPENCV_FISHEYE`) are undistorted to pinhole with pycolmap into a work
folder (`splat4d.data.undistort`). `ns-process-data` output also carries
per-frame `mask_path` (used as masks, undistorted with their images) and `applied_transform`, the transform it already applied to the COLMAP
poses and to `ply_file_path`; both are in the file's frame, so it is only recorded in the metadata. Depth maps
of undistorted frames are dropped: they stay in the distorted geometry. Only undistortion needs pycolmap
(imported there, `splat4d.optional`): pinhole frames are read without it. Images are read as stored, their EXIF
orientation not applied, as nerfstudio reads them: the cameras were computed on the stored pixels
(`ns-process-data` runs COLMAP on its copies of the photos, which ffmpeg may already have turned upright;
`splat4d.data.orientation`).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
import trimesh

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import (
    check_intrinsics,
    check_pose,
    image_header_size,
    image_side,
    load_json_object,
    matrix,
    number,
    unit_time,
)
from splat4d.data.orientation import size_mismatch
from splat4d.data.undistort import DistortedView, undistort_views
from splat4d.geometry import OPENGL_FROM_OPENCV
from splat4d.optional import require

if TYPE_CHECKING:
    import pycolmap

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
"""nerfstudio's distortion parameters: radial k1…k4 (perspective: powers r², r⁴, r⁶, r⁸), tangential p1, p2."""
PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
FISHEYE_MODEL = "OPENCV_FISHEYE"


def _get(meta: dict, frame: dict, key: str, path: Path, default: float | None = None) -> float:
    """Frame `key` (per frame, else global, else `default`) as a finite number."""
    name = frame.get("file_path", "?")
    if key in frame:
        return number(frame[key], path, f"{key} of {name}")
    if key in meta:
        return number(meta[key], path, key)
    if default is not None:
        return default
    raise DatasetError(f"{path}: no '{key}' for frame {name}; give it globally or in every frame")


def _intrinsics(meta: dict, frame: dict, path: Path) -> tuple[np.ndarray, int, int]:
    def get(key: str) -> float:
        return _get(meta, frame, key, path)

    name = frame.get("file_path", "?")
    K = np.array([[get("fl_x"), 0, get("cx")], [0, get("fl_y"), get("cy")], [0, 0, 1]], dtype=np.float64)
    for key, value in (("fl_x", K[0, 0]), ("fl_y", K[1, 1])):
        if value <= 0:
            raise DatasetError(
                f"{path}: {key} of {name} is {value:g}, not positive; write the focal length in pixels"
            )
    sizes = []
    for key in ("w", "h"):
        if key not in frame and key not in meta:
            raise DatasetError(
                f"{path}: no '{key}' for frame {name}; give the image size globally or in every frame"
            )
        sizes.append(image_side(frame[key] if key in frame else meta[key], path, f"{key} of {name}"))
    check_intrinsics(K, sizes[0], sizes[1], path, f"camera of {name}")
    return K.astype(np.float32), sizes[0], sizes[1]


def _pycolmap(path: Path) -> ModuleType:
    return require("pycolmap", f"undistort the frames with lens distortion in {path}", DatasetError)


def _distorted_camera(
    meta: dict, frame: dict, K: np.ndarray, w: int, h: int, path: Path
) -> pycolmap.Camera | None:
    """The frame's camera as a pycolmap camera with distortion, or None when it is a plain pinhole."""
    model = frame.get("camera_model", meta.get("camera_model", "OPENCV"))
    if not isinstance(model, str):
        raise DatasetError(f"{path}: camera_model {model!r} is not a name; use OPENCV or OPENCV_FISHEYE")
    d = {key: _get(meta, frame, key, path, default=0.0) for key in DISTORTION_KEYS}
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if model == FISHEYE_MODEL:
        params = [fx, fy, cx, cy, d["k1"], d["k2"], d["k3"], d["k4"]]
    elif model in PERSPECTIVE_MODELS:
        if not any(d.values()):
            return None
        if d["k4"] != 0:
            raise DatasetError(
                f"{path}: frame {frame.get('file_path', '?')} has k4 (an r⁸ radial term), which COLMAP's "
                "perspective models cannot express"
            )
        model = "OPENCV" if d["k3"] == 0 else "FULL_OPENCV"
        params = [fx, fy, cx, cy, d["k1"], d["k2"], d["p1"], d["p2"]]
        if model == "FULL_OPENCV":
            params += [d["k3"], 0.0, 0.0, 0.0]  # FULL_OPENCV: k3 is the r⁶ term; k4…k6 form a denominator
    else:
        raise DatasetError(f"{path}: camera_model {model!r} is not supported (use OPENCV or OPENCV_FISHEYE)")
    return _pycolmap(path).Camera(model=model, width=w, height=h, params=params)


def _cache_name(file_path: str, index: int) -> str:
    """A relative name for the undistorted copy that stays inside the cache folder."""
    name = os.path.normpath(file_path)
    if os.path.isabs(name) or name.startswith(".."):
        return f"{index:05d}_{Path(file_path).name}"
    return name


def read_nerfstudio(path: Path, test_every: int = 8, workdir: Path | None = None) -> SceneData:
    """Read `path` (a transforms.json or the folder holding one).

    The split comes from the file's `train_filenames`/`test_filenames` when present, else every `test_every`-th frame
    is a test frame (none when test_every < 1). Times (`time` per frame) become `Cameras.times`; per-frame `mask_path`s become masks.

    Args:
        path: transforms.json or its folder.
        test_every: test split period when the file defines no split.
        workdir: folder for undistorted copies (`workdir/undistorted/`); needed only when frames have distortion.

    Every value is checked where it is read (`splat4d.data.checks`): poses are finite rigid 4x4 matrices,
    intrinsics finite with positive focal lengths, `w` and `h` whole numbers that match each image's header,
    times in [0, 1] on every frame or none, file names strings, the point cloud finite.

    Raises:
        DatasetError: naming the file, the frame and the value when the file is missing or malformed, an image is
            missing or of another size than its `w` x `h`, or frames have distortion and no `workdir` is given or
            pycolmap is not installed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    meta = load_json_object(path, "'frames'")
    frames = meta.get("frames")
    if not isinstance(frames, list):
        found = "no 'frames'" if frames is None else f"'frames' is a {type(frames).__name__}, not a list"
        raise DatasetError(f"{path}: {found}; list the images with their poses under 'frames'")
    if not frames:
        raise DatasetError(f"{path}: 'frames' is empty; list the images with their poses under 'frames'")
    root = path.parent

    names = _file_paths(frames, path)
    Ks, T_world_cam, sizes, times, distorted = [], [], [], [], []
    for frame, name in zip(frames, names, strict=True):
        K, w, h = _intrinsics(meta, frame, path)
        Ks.append(K)
        sizes.append((w, h))
        distorted.append(_distorted_camera(meta, frame, K, w, h, path))
        T = matrix(
            frame.get("transform_matrix"),
            (4, 4),
            path,
            f"transform_matrix of {name}",
            "fix or remove the frame",
        )
        T = check_pose(T, path, f"transform_matrix of {name}")
        T_world_cam.append((T @ OPENGL_FROM_OPENCV.double().numpy()).astype(np.float32))
        times.append(None if "time" not in frame else unit_time(frame["time"], path, f"time of {name}"))
    _check_times(times, names, path)

    image_paths = [root / n for n in names]
    for image, expected in zip(image_paths, sizes, strict=True):
        size = image_header_size(image, listed_in=path.name)
        if size != expected:
            raise size_mismatch(image, size, expected, f"{path.name} says", "fix 'w' and 'h' or the image")
    depth_paths = [_optional_path(root, f, "depth_file_path", path) for f in frames]
    has_masks = any("mask_path" in f for f in frames)
    mask_paths = [_optional_path(root, f, "mask_path", path) for f in frames] if has_masks else None
    if any(camera is not None for camera in distorted):
        if workdir is None:
            raise DatasetError(f"{path}: frames have lens distortion; undistorting them needs a work folder")
        pycolmap = _pycolmap(path)
        views = [
            DistortedView(
                _cache_name(n, i),
                root / n,
                camera
                or pycolmap.Camera(model="PINHOLE", width=w, height=h, params=K[[0, 1, 0, 1], [0, 1, 2, 2]]),
                None if mask_paths is None else mask_paths[i],
            )
            for i, (n, camera, K, (w, h)) in enumerate(zip(names, distorted, Ks, sizes, strict=True))
        ]
        pinhole = undistort_views(views, Path(workdir) / "undistorted")
        Ks = [v.K.astype(np.float32) for v in pinhole]
        sizes = [(v.width, v.height) for v in pinhole]
        image_paths = [v.image_path for v in pinhole]
        mask_paths = None if mask_paths is None else [v.mask_path for v in pinhole]
        # Depth maps stay in the distorted geometry, so they no longer line up with the undistorted images.
        depth_paths = [
            d if camera is None else None for d, camera in zip(depth_paths, distorted, strict=True)
        ]
    has_time = times[0] is not None
    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack(T_world_cam)),
        Ks=torch.from_numpy(np.stack(Ks)),
        width=[w for w, _ in sizes],
        height=[h for _, h in sizes],
        times=torch.tensor(times, dtype=torch.float32) if has_time else None,
    )
    train, test = _split(meta, names, test_every, path)
    points, colors = _load_points(root, meta, path)
    metadata = {"source": str(path), "format": "nerfstudio"}
    if "applied_transform" in meta:
        applied = meta["applied_transform"]
        shape = (4, 4) if isinstance(applied, list) and len(applied) == 4 else (3, 4)
        hint = "fix it or remove the key (it is only recorded)"
        applied = matrix(applied, shape, path, "applied_transform", hint)
        if not np.isfinite(applied).all():
            raise DatasetError(f"{path}: applied_transform is not finite; {hint}")
        metadata["applied_transform"] = applied.tolist()
    return SceneData(
        cameras=cameras,
        image_paths=image_paths,
        depth_paths=depth_paths,
        train_indices=train,
        test_indices=test,
        points=points,
        point_colors=colors,
        mask_paths=mask_paths,
        metadata=metadata,
    )


def _file_paths(frames: list, path: Path) -> list[str]:
    """Each frame's `file_path`, checking that every frame is an object with its own image."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DatasetError(
                f"{path}: frame {i} is a {type(frame).__name__}, not a JSON object; fix or remove the frame"
            )
        name = frame.get("file_path")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{path}: frame {i} has no 'file_path'; give every frame the image it shows")
        key = os.path.normpath(name)
        if key in seen:
            raise DatasetError(
                f"{path}: frames {seen[key]} and {i} both show {name}; remove the duplicate frame"
            )
        seen[key] = i
        names.append(name)
    return names


def _check_times(times: list[float | None], names: list[str], path: Path) -> None:
    """Every frame has a time (a dynamic scene) or none does."""
    for name, time in zip(names, times, strict=True):
        if (time is None) != (times[0] is None):
            which, other = (name, names[0]) if time is None else (names[0], name)
            raise DatasetError(
                f"{path}: frame {which} has no 'time' but {other} has one; give every frame a time or none"
            )


def _optional_path(root: Path, frame: dict, key: str, path: Path) -> Path | None:
    value = frame.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(
            f"{path}: {key} of {frame['file_path']} is {value!r}, not a file name; fix or remove it"
        )
    return root / value


def _split(meta: dict, names: list[str], test_every: int, path: Path) -> tuple[list[int], list[int]]:
    """(train, test): the file's `train_filenames`/`test_filenames`, else every `test_every`-th frame tests
    (none when test_every < 1)."""
    if "train_filenames" in meta and "test_filenames" in meta:
        index = {n: i for i, n in enumerate(names)}
        lists = []
        for key in ("train_filenames", "test_filenames"):
            listed = meta[key]
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise DatasetError(
                    f"{path}: {key} is not a list of file names; fix it or remove both split lists"
                )
            unknown = [n for n in listed if n not in index]
            if unknown:
                raise DatasetError(
                    f"{path}: {key} lists {unknown[0]}, which is not the file_path of any frame; fix the split"
                )
            lists.append([index[n] for n in listed])
        return lists[0], lists[1]
    n = len(names)
    if test_every < 1:
        return list(range(n)), []
    return [i for i in range(n) if i % test_every != 0], list(range(0, n, test_every))


def _load_points(root: Path, meta: dict, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The initial point cloud of `ply_file_path` (positions, colours in [0, 1] or None), when the file exists."""
    name = meta.get("ply_file_path")
    if name is None:
        return None, None
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{path}: ply_file_path is {name!r}, not a file name; fix or remove it")
    ply = root / name
    if not ply.is_file():
        return None, None
    hint = "fix or replace it, or remove ply_file_path to start from random points"
    try:
        cloud = trimesh.load(ply)
        vertices = np.asarray(cloud.vertices, dtype=np.float64)
        colors = getattr(cloud, "colors", None)
        colors = None if colors is None or not len(colors) else np.asarray(colors, dtype=np.float64)
    except Exception as exc:  # trimesh's loaders raise all kinds of errors on malformed files
        raise DatasetError(
            f"{ply}: not a readable point cloud ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise DatasetError(f"{ply}: has no 3D points (vertices of shape {vertices.shape}); {hint}")
    if not len(vertices):
        return None, None
    if not np.isfinite(vertices).all() or np.abs(vertices).max() > np.finfo(np.float32).max:
        bad = int((~np.isfinite(vertices).all(axis=1)).sum())
        raise DatasetError(f"{ply}: {bad} of {len(vertices)} points have a non-finite position; {hint}")
    if colors is not None and (colors.ndim != 2 or len(colors) != len(vertices) or colors.shape[1] < 3):
        colors = None
    rgb = None if colors is None else (np.clip(colors[:, :3], 0, 255) / 255.0).astype(np.float32)
    return vertices.astype(np.float32), rgb
