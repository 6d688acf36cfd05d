"""Between viser's browser camera and splat4d's `Cameras`.

viser reports each client's camera as `wxyz` and `position`: the rotation and translation of T_world_camera in
the OpenCV convention (+Z forward, +Y down), which is splat4d's convention too, plus a vertical field of view and
the canvas's size. So the conversion is a pose, and pinhole intrinsics built from the vertical FOV.
"""

import math

import numpy as np
import torch
from jaxtyping import Float

from splat4d.cameras import Cameras
from splat4d.geometry import quat_to_rotmat, rotmat_to_quat


def fit_resolution(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The canvas size scaled so that its longer side is at most `max_side`, aspect kept, at least 1×1."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def intrinsics_from_fov(fov_y: float, width: int, height: int) -> Float[np.ndarray, "3 3"]:
    """Pinhole K with square pixels and the principal point at the image centre for a vertical FOV (radians)."""
    f = 0.5 * height / math.tan(0.5 * fov_y)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def viser_to_cameras(
    wxyz: Float[np.ndarray, "4"],
    position: Float[np.ndarray, "3"],
    fov_y: float,
    width: int,
    height: int,
    device: torch.device | str = "cpu",
) -> Cameras:
    """One `Cameras` for a viser camera seen at `width` × `height` pixels."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = quat_to_rotmat(torch.as_tensor(np.asarray(wxyz, np.float64)))
    T[:3, 3] = torch.as_tensor(np.asarray(position, np.float64))
    K = torch.as_tensor(intrinsics_from_fov(fov_y, width, height))
    return Cameras(T[None].float(), K[None].float(), width, height).to(device)


def cameras_to_viser(cameras: Cameras, index: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(wxyz, position, vertical FOV, aspect) of camera `index`, to place a frustum or move a client there."""
    T = cameras.T_world_cam[index].detach().double().cpu()
    wxyz = rotmat_to_quat(T[:3, :3]).numpy()
    fy = float(cameras.Ks[index, 1, 1])
    width, height = cameras.widths[index], cameras.heights[index]  # cameras may differ in size
    fov_y = 2.0 * math.atan(0.5 * height / fy)
    return wxyz, T[:3, 3].numpy(), fov_y, width / height
