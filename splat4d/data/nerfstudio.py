"""Reader for nerfstudio `transforms.json` scenes (pinhole subset; distortion handling comes with issue 5)."""

import json
from pathlib import Path

import numpy as np
import torch
import trimesh

from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.geometry import OPENGL_FROM_OPENCV


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


def _intrinsics(meta: dict, frame: dict, path: Path) -> tuple[np.ndarray, int, int]:
    def get(key: str) -> float:
        if key in frame:
            return float(frame[key])
        if key in meta:
            return float(meta[key])
        raise DatasetError(f"{path}: no '{key}' for frame {frame.get('file_path', '?')}")

    K = np.array([[get("fl_x"), 0, get("cx")], [0, get("fl_y"), get("cy")], [0, 0, 1]], dtype=np.float32)
    return K, int(get("w")), int(get("h"))


def read_nerfstudio(path: Path, test_every: int = 8) -> SceneData:
    """Read `path` (a transforms.json or the folder holding one).

    The split comes from the file's `train_filenames`/`test_filenames` when present, else every `test_every`-th frame
    is a test frame. Times (`time` per frame) become `Cameras.times`.
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

    Ks, T_world_cam, sizes, times = [], [], set(), []
    for frame in frames:
        K, w, h = _intrinsics(meta, frame, path)
        Ks.append(K)
        sizes.add((w, h))
        T = np.asarray(frame["transform_matrix"], dtype=np.float32)
        if T.shape != (4, 4):
            raise DatasetError(f"{path}: transform_matrix of {frame['file_path']} is not 4x4")
        T_world_cam.append(T @ OPENGL_FROM_OPENCV.numpy())
        times.append(frame.get("time"))
    if len(sizes) != 1:
        raise DatasetError(f"{path}: frames have different image sizes {sorted(sizes)}; not supported yet")
    (width, height) = sizes.pop()
    has_time = all(t is not None for t in times)
    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack(T_world_cam)),
        Ks=torch.from_numpy(np.stack(Ks)),
        width=width,
        height=height,
        times=torch.tensor(times, dtype=torch.float32) if has_time else None,
    )

    names = [f["file_path"] for f in frames]
    if "train_filenames" in meta and "test_filenames" in meta:
        index = {n: i for i, n in enumerate(names)}
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

    return SceneData(
        cameras=cameras,
        image_paths=[root / n for n in names],
        depth_paths=[root / f["depth_file_path"] if "depth_file_path" in f else None for f in frames],
        train_indices=train,
        test_indices=test,
        points=points,
        point_colors=colors,
        metadata={"source": str(path), "format": "nerfstudio"},
    )
