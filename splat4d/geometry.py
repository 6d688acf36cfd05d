"""Rigid-transform helpers with frame-named arguments."""

import torch
from jaxtyping import Float
from torch import Tensor

# nerfstudio / Blender / OpenGL cameras look down -z with y up; OpenCV cameras (ours) look down +z with y down.
# Right-multiplying a camera-to-world matrix by this flips between the two.
OPENGL_FROM_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def invert_rigid(T_a_b: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """T_b_a from T_a_b for rigid transforms, without a general matrix inverse."""
    R = T_a_b[..., :3, :3]
    t = T_a_b[..., :3, 3:]
    out = torch.zeros_like(T_a_b)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def look_at(
    eye: Float[Tensor, "3"], target: Float[Tensor, "3"], up: Float[Tensor, "3"]
) -> Float[Tensor, "4 4"]:
    """T_world_cam of an OpenCV camera at `eye` looking at `target` (image y points away from `up`)."""
    z = torch.nn.functional.normalize(target - eye, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up), dim=0)
    y = torch.linalg.cross(z, x)
    T = torch.eye(4, dtype=eye.dtype)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T
