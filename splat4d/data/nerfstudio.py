"""Reader for nerfstudio `transforms.json` scenes, including `ns-process-data` output.

Poses are camera-to-world in OpenGL axes and become OpenCV `T_world_cam`. Intrinsics and distortion (`k1`…`k4`,
`p1`, `p2`) may be global or per frame; frames with distortion (or `camera_model: OPENCV_FISHEYE`) are undistorted
to pinhole with pycolmap into a work folder (`splat4d.data.undistort`). `ns-process-data` output also carries
per-frame `mask_path` (used as masks, undistorted with their images) and `applied_transform`, the transform it already applied to the COLMAP
poses and to `ply_file_path`; both are in the file's frame, so it is only recorded in the metadata. Depth maps
of undistorted frames are dropped: they stay in the distorted geometry.
"""

import json
import os
from pathlib import Path

import numpy as np
import pycolmap
import torch
import trimesh

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.undistort import DistortedView, undistort_views
from splat4d.geometry import OPENGL_FROM_OPENCV

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
"""nerfstudio's distortion parameters: radial k1…k4 (perspective: powers r², r⁴, r⁶, r⁸), tangential p1, p2."""
PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
FISHEYE_MODEL = "OPENCV_FISHEYE"


def _get(meta: dict, frame: dict, key: str, path: Path, default: float | None = None) -> float:
    if key in frame:
        return float(frame[key])
    if key in meta:
        return float(meta[key])
    if default is not None:
        return default
    raise DatasetError(f"{path}: no '{key}' for frame {frame.get('file_path', '?')}")


def _intrinsics(meta: dict, frame: dict, path: Path) -> tuple[np.ndarray, int, int]:
    def get(key: str) -> float:
        return _get(meta, frame, key, path)

    K = np.array([[get("fl_x"), 0, get("cx")], [0, get("fl_y"), get("cy")], [0, 0, 1]], dtype=np.float32)
    return K, int(get("w")), int(get("h"))


def _distorted_camera(
    meta: dict, frame: dict, K: np.ndarray, w: int, h: int, path: Path
) -> pycolmap.Camera | None:
    """The frame's camera as a pycolmap camera with distortion, or None when it is a plain pinhole."""
    model = frame.get("camera_model", meta.get("camera_model", "OPENCV"))
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
    return pycolmap.Camera(model=model, width=w, height=h, params=params)


def _cache_name(file_path: str, index: int) -> str:
    """A relative name for the undistorted copy that stays inside the cache folder."""
    name = os.path.normpath(file_path)
    if os.path.isabs(name) or name.startswith(".."):
        return f"{index:05d}_{Path(file_path).name}"
    return name


def read_nerfstudio(path: Path, test_every: int = 8, workdir: Path | None = None) -> SceneData:
    """Read `path` (a transforms.json or the folder holding one).

    The split comes from the file's `train_filenames`/`test_filenames` when present, else every `test_every`-th frame
    is a test frame. Times (`time` per frame) become `Cameras.times`; per-frame `mask_path`s become masks.

    Args:
        path: transforms.json or its folder.
        test_every: test split period when the file defines no split.
        workdir: folder for undistorted copies (`workdir/undistorted/`); needed only when frames have distortion.

    Raises:
        DatasetError: naming the file when it is missing or malformed, when frames end up at different image
            sizes, or when frames have distortion and no `workdir` is given.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    frames = meta.get("frames")
    if not frames:
        raise DatasetError(f"{path}: no 'frames'")
    root = path.parent

    Ks, T_world_cam, sizes, times, distorted = [], [], [], [], []
    for frame in frames:
        K, w, h = _intrinsics(meta, frame, path)
        Ks.append(K)
        sizes.append((w, h))
        distorted.append(_distorted_camera(meta, frame, K, w, h, path))
        T = np.asarray(frame["transform_matrix"], dtype=np.float32)
        if T.shape != (4, 4):
            raise DatasetError(f"{path}: transform_matrix of {frame['file_path']} is not 4x4")
        T_world_cam.append(T @ OPENGL_FROM_OPENCV.numpy())
        times.append(frame.get("time"))

    names = [f["file_path"] for f in frames]
    image_paths = [root / n for n in names]
    depth_paths = [root / f["depth_file_path"] if "depth_file_path" in f else None for f in frames]
    has_masks = any("mask_path" in f for f in frames)
    mask_paths = [root / f["mask_path"] if "mask_path" in f else None for f in frames] if has_masks else None
    if any(camera is not None for camera in distorted):
        if workdir is None:
            raise DatasetError(f"{path}: frames have lens distortion; undistorting them needs a work folder")
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
    for i, size in enumerate(sizes):
        if size != sizes[0]:
            raise DatasetError(
                f"{path}: frames differ in image size: {image_paths[0]} is {sizes[0][0]}x{sizes[0][1]}, "
                f"{image_paths[i]} is {size[0]}x{size[1]}"
            )
    (width, height) = sizes[0]
    has_time = all(t is not None for t in times)
    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack(T_world_cam)),
        Ks=torch.from_numpy(np.stack(Ks)),
        width=width,
        height=height,
        times=torch.tensor(times, dtype=torch.float32) if has_time else None,
    )

    if "train_filenames" in meta and "test_filenames" in meta:
        index = {n: i for i, n in enumerate(names)}
        unknown = [n for n in meta["train_filenames"] + meta["test_filenames"] if n not in index]
        if unknown:
            raise DatasetError(f"{path}: split lists {unknown[0]}, which is not the file_path of any frame")
        train = [index[n] for n in meta["train_filenames"]]
        test = [index[n] for n in meta["test_filenames"]]
    else:
        test = list(range(0, len(frames), test_every))
        train = [i for i in range(len(frames)) if i % test_every != 0]

    points = colors = None
    if "ply_file_path" in meta and (root / meta["ply_file_path"]).is_file():
        cloud = trimesh.load(root / meta["ply_file_path"])
        points = np.asarray(cloud.vertices, dtype=np.float32)
        if getattr(cloud, "colors", None) is not None and len(cloud.colors):
            colors = np.asarray(cloud.colors, dtype=np.float32)[:, :3] / 255.0

    metadata = {"source": str(path), "format": "nerfstudio"}
    if "applied_transform" in meta:
        metadata["applied_transform"] = np.asarray(meta["applied_transform"], dtype=np.float64).tolist()
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
