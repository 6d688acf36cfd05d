"""Builders of small datasets in every input layout, for the bad-dataset corpus (`test_bad_datasets.py`): a
Blender scene, COLMAP workspaces (binary and text, pinhole and with distortion), an N3DV folder and a folder of
JPEG photos, all made from the tiny procedural nerfstudio scene of `tests/reliability/conftest.py`."""

import json
import shutil
import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pycolmap

from splat4d.data.llff_poses import opencv_to_llff
from splat4d.data.n3dv_sample import encode_video

OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def read_meta(photos: Path) -> dict:
    return json.loads((photos / "transforms.json").read_text())


def write_meta(photos: Path, meta: object) -> None:
    """transforms.json as given (json writes NaN and Infinity as the bare words Python's reader accepts)."""
    (photos / "transforms.json").write_text(json.dumps(meta))


def blender_scene(photos: Path, root: Path) -> Path:
    """A Blender / NeRF-synthetic folder (transforms_train.json beside RGBA PNGs) of the tiny scene's views."""
    meta = read_meta(photos)
    (root / "train").mkdir(parents=True)
    frames = []
    for i, frame in enumerate(meta["frames"]):
        rgb = iio.imread(photos / frame["file_path"])[..., :3]
        rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], -1)
        iio.imwrite(root / "train" / f"r_{i}.png", rgba)
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": frame["transform_matrix"]})
    angle = 2 * np.arctan(0.5 * meta["w"] / meta["fl_x"])
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return root


def colmap_workspace(
    photos: Path, root: Path, text: bool, model: str = "PINHOLE", legacy: bool = False
) -> Path:
    """A COLMAP workspace (images/ and sparse/0) of the tiny scene at its known poses.

    `legacy` drops rigs and frames (models written before COLMAP 3.12, whose poses live in `images`). With another
    camera `model` than PINHOLE the camera gets a small radial distortion (the images are not warped: the reader
    only has to undistort them).
    """
    meta = read_meta(photos)
    params = [meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]]
    if model != "PINHOLE":
        params += [0.01, 0.0, 0.0, 0.0]
    camera = pycolmap.Camera(model=model, width=meta["w"], height=meta["h"], params=params, camera_id=1)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(camera)
    (root / "images").mkdir(parents=True)
    for i, frame in enumerate(meta["frames"]):
        name = Path(frame["file_path"]).name
        T_cam_world = np.linalg.inv(np.asarray(frame["transform_matrix"]) @ OPENGL_FROM_OPENCV)
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name=name, camera_id=1, image_id=i + 1), pycolmap.Rigid3d(T_cam_world[:3])
        )
        shutil.copy(photos / frame["file_path"], root / "images" / name)
    for k in range(10):
        rec.add_point3D(
            np.array([0.1 * k, 0.0, 0.0]), pycolmap.Track(), np.array([k, 2 * k, 3 * k], np.uint8)
        )
    model_dir = root / "sparse" / "0"
    model_dir.mkdir(parents=True)
    rec.write_text(model_dir) if text else rec.write(model_dir)
    if legacy:
        for name in ("rigs", "frames"):
            (model_dir / f"{name}.{'txt' if text else 'bin'}").unlink()
    return root


# Byte offsets in the binary files of `colmap_workspace`: a uint64 count, then the first record.
CAMERA_PARAMS = 8 + 4 + 4 + 8 + 8
"""cameras.bin: the first camera's parameters (after id, model, width, height)."""
IMAGE_QW = 8 + 4
"""images.bin: the first image's qw (then qx qy qz tx ty tz)."""
POINT_X = 8 + 8
"""points3D.bin: the first point's x (after its id)."""


def put_double(path: Path, offset: int, value: float) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + 8] = struct.pack("<d", value)
    path.write_bytes(bytes(data))


def n3dv_folder(photos: Path, root: Path, n_cameras: int = 2, n_frames: int = 3) -> Path:
    """An N3DV folder: one short H.264 video per camera (its image repeated) and poses_bounds.npy in LLFF axes."""
    meta = read_meta(photos)
    root.mkdir(parents=True)
    rows = []
    for c, frame in enumerate(meta["frames"][:n_cameras]):
        image = iio.imread(photos / frame["file_path"])[..., :3]
        encode_video(root / f"cam{c:02d}.mp4", [image] * n_frames)
        T_world_cam = np.asarray(frame["transform_matrix"]) @ OPENGL_FROM_OPENCV
        pose = opencv_to_llff(T_world_cam, float(meta["h"]), float(meta["w"]), float(meta["fl_x"]))
        rows.append(np.concatenate([pose.reshape(-1), [0.1, 100.0]]))
    np.save(root / "poses_bounds.npy", np.stack(rows))
    return root


def jpeg_folder(photos: Path, root: Path, n: int = 4) -> Path:
    """A folder of `n` JPEG photos (no poses: read with structure from motion)."""
    root.mkdir(parents=True)
    for path in sorted((photos / "images").glob("*.png"))[:n]:
        iio.imwrite(root / f"{path.stem}.jpg", iio.imread(path)[..., :3], quality=95)
    return root


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
