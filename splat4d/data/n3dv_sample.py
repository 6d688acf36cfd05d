"""A multi-view dynamic sample (`write_sample_scene` with `layout="multiview"`) re-encoded as an N3DV / DyNeRF
folder: one H.264 video per camera and `poses_bounds.npy` in LLFF axes, so that the multi-view video path (reader,
lazy PyAV decoding, initial points triangulated from the first frames) is trained and scored against a scene with
known ground truth.

    out/
      cam00.mp4 ...       the sample's camXX_tNNNN.png frames of each camera, in time order
      poses_bounds.npy    one row per camera: LLFF 3x5 [R | t | hwf] and the near/far depth of the sample's points

Like N3DV's own files, the folder has no point cloud: the dynamic pipeline triangulates the training cameras' first
frames at the known poses (`pipelines.dynamic.scene`).
"""

import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from splat4d.data.base import DatasetError
from splat4d.data.llff_poses import POSES_FILE, opencv_to_llff
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.optional import require

FRAME_NAME = re.compile(r"cam(\d+)_t(\d+)$")
"""How the sample writer names a multi-view frame: camera index and frame index."""
DEFAULT_NEAR_FAR = (0.1, 100.0)
"""Bounds written when the sample has no points to measure them from."""


def encode_video(path: Path, frames: list[np.ndarray], fps: int = 30, crf: int = 10, gop: int = 10) -> None:
    """H.264 (yuv420p) of RGB uint8 `frames` at `crf` (lower: closer to the frames) with a keyframe every `gop`.

    Raises:
        UserError: PyAV is not installed.
    """
    av = require("av", "encode videos")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            )
        container.mux(stream.encode())


def write_n3dv_sample(sample: Path, out: Path, crf: int = 10, gop: int = 10) -> Path:
    """Write the multi-view sample folder `sample` as an N3DV folder `out` (which must not exist); returns `out`.

    Raises:
        DatasetError: `sample` is not a multi-view sample (frames not named camXX_tNNNN, or cameras with unequal
            frame counts), or `out` exists.
    """
    scene = read_nerfstudio(Path(sample))
    cameras: dict[int, list[tuple[int, int]]] = {}
    for view, path in enumerate(scene.image_paths):
        match = FRAME_NAME.match(Path(path).stem)
        if match is None:
            raise DatasetError(f"{path}: not a multi-view sample frame (expected a name like cam00_t0000)")
        cameras.setdefault(int(match[1]), []).append((int(match[2]), view))
    counts = {len(v) for v in cameras.values()}
    if len(counts) != 1:
        raise DatasetError(f"{sample}: cameras have unequal frame counts {sorted(counts)}")
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out}: already exists; choose a new folder")
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True)
    width, height = scene.cameras.width, scene.cameras.height
    rows = []
    for c in sorted(cameras):
        views = [v for _, v in sorted(cameras[c])]
        encode_video(
            tmp / f"cam{c:02d}.mp4",
            [iio.imread(scene.image_paths[v])[..., :3] for v in views],
            crf=crf,
            gop=gop,
        )
        T = scene.cameras.T_world_cam[views[0]].double().numpy()
        pose = opencv_to_llff(T, float(height), float(width), float(scene.cameras.Ks[views[0], 0, 0]))
        rows.append(np.concatenate([pose.reshape(-1), _near_far(scene.points, T)]))
    np.save(tmp / POSES_FILE, np.stack(rows))
    tmp.rename(out)
    return out


def _near_far(points: np.ndarray | None, T_world_cam: np.ndarray) -> tuple[float, float]:
    if points is None or len(points) == 0:
        return DEFAULT_NEAR_FAR
    T = np.linalg.inv(T_world_cam)
    z = (np.asarray(points, dtype=np.float64) @ T[:3, :3].T + T[:3, 3])[:, 2]
    z = z[z > 0]
    if len(z) == 0:
        return DEFAULT_NEAR_FAR
    return float(np.percentile(z, 1)), float(np.percentile(z, 99))
