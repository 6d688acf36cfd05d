"""LLFF's `poses_bounds.npy` (Mildenhall et al. 2019), shared by the LLFF reader and the N3DV video reader.

Each row is a camera: a 3x5 matrix [R | t | hwf] flattened row-major (camera-to-world, camera axes (down, right,
backwards); the fifth column holds the image height, width and focal length in pixels), then the near and far
depth bounds of the scene seen from it.
"""

from pathlib import Path

import numpy as np
from jaxtyping import Float

from splat4d.data.base import DatasetError
from splat4d.errors import one_line

__all__ = [
    "ASPECT_TOLERANCE",
    "OPENCV_AXES_IN_LLFF",
    "POSES_FILE",
    "POSE_COLUMNS",
    "camera_of_row",
    "llff_to_opencv",
    "load_poses_bounds",
    "opencv_to_llff",
]

POSES_FILE = "poses_bounds.npy"
POSE_COLUMNS = 17
"""3x5 pose-and-intrinsics matrix, flattened, plus the near and far bounds."""
ASPECT_TOLERANCE = 0.02
"""Images or videos may be a resized copy of the hwf size if the aspect ratio agrees this closely (LLFF's own
downsampled sets round sizes: 3024 / 8 = 378 exactly, but odd originals do not divide)."""
OPENCV_AXES_IN_LLFF = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""R_llff_opencv: OpenCV camera axes (right, down, forward) expressed in LLFF's (down, right, backwards)."""


def load_poses_bounds(path: Path, rows: str = "video") -> np.ndarray:
    """The N x 17 array of `poses_bounds.npy`, checked: a real, finite .npy array of that shape."""
    hint = f"it must be the N x {POSE_COLUMNS} float array of LLFF poses and bounds, one row per {rows}"
    try:
        poses = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = "not in .npy format" if "pickle" in str(exc) else one_line(str(exc))
        raise DatasetError(f"{path}: not a readable .npy array ({reason}); {hint}") from exc
    if not isinstance(poses, np.ndarray):  # an .npz archive under the .npy name
        poses.close()
        raise DatasetError(f"{path}: is an .npz archive, not an .npy array; {hint}")
    if poses.ndim != 2 or poses.shape[1] != POSE_COLUMNS or len(poses) < 1:
        raise DatasetError(f"{path}: expected an N x {POSE_COLUMNS} array, got shape {poses.shape}; {hint}")
    if not (np.issubdtype(poses.dtype, np.floating) or np.issubdtype(poses.dtype, np.integer)):
        raise DatasetError(f"{path}: holds {poses.dtype} values, not real numbers; {hint}")
    finite = np.isfinite(poses).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite).tolist()
        raise DatasetError(
            f"{path}: row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:5]))} "
            f"{'hold' if len(rows) > 1 else 'holds'} a NaN or infinite value; fix or remove the camera"
        )
    return poses.astype(np.float64)


def camera_of_row(
    pose: Float[np.ndarray, "3 5"], width: int, height: int, poses_path: Path, what: str, media: str
) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "4 4"]]:
    """(K, T_world_cam in OpenCV axes) of one LLFF row, for images of `width` x `height` (a resized copy of the
    hwf size): fx = f W / w, fy = f H / h, principal point at the image centre.

    Raises:
        DatasetError: `<poses_path>: <what>: ...` when hwf is not positive, the aspect ratio differs from the
            `media`'s (the images or videos read), or the intrinsics or pose are invalid.
    """
    from splat4d.data.checks import check_intrinsics, check_pose

    h, w, focal = pose[:, 4]
    if min(h, w, focal) <= 0:
        raise DatasetError(
            f"{poses_path}: {what}: image size and focal length (h, w, f) must be positive, got "
            f"({h:g}, {w:g}, {focal:g}); fix the camera's hwf column"
        )
    if abs((width / w) / (height / h) - 1) > ASPECT_TOLERANCE:
        raise DatasetError(
            f"{poses_path}: {what}: the poses are for {w:g}x{h:g} but the {media} are {width}x{height} (another "
            f"aspect ratio); use the {media} the poses were made for"
        )
    K = np.array([[focal * width / w, 0, width / 2], [0, focal * height / h, height / 2], [0, 0, 1]])
    check_intrinsics(K, width, height, poses_path, what, "fix the camera's hwf column")
    return K, check_pose(llff_to_opencv(pose), poses_path, f"the pose in {what}", "fix the camera")


def llff_to_opencv(pose: Float[np.ndarray, "3 c"]) -> Float[np.ndarray, "4 4"]:
    """T_world_cam [4, 4] in OpenCV axes from an LLFF 3x5 (or 3x4) camera-to-world matrix with axes (down,
    right, backwards)."""
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = pose[:, :3] @ OPENCV_AXES_IN_LLFF
    T_world_cam[:3, 3] = pose[:, 3]
    return T_world_cam


def opencv_to_llff(
    T_world_cam: Float[np.ndarray, "4 4"], height: float, width: float, focal: float
) -> Float[np.ndarray, "3 5"]:
    """The inverse of `llff_to_opencv`: the LLFF 3x5 matrix [R | t | hwf] of an OpenCV camera-to-world pose."""
    pose = np.empty((3, 5))
    pose[:, :3] = T_world_cam[:3, :3] @ OPENCV_AXES_IN_LLFF.T
    pose[:, 3] = T_world_cam[:3, 3]
    pose[:, 4] = (height, width, focal)
    return pose
