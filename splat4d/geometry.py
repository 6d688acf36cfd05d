"""Rigid-transform and quaternion (w, x, y, z) helpers with frame-named arguments."""

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


def quat_to_rotmat(quats: Float[Tensor, "*B 4"]) -> Float[Tensor, "*B 3 3"]:
    """Rotation matrices of (not necessarily unit) quaternions (w, x, y, z)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def rotmat_to_quat(R: Float[Tensor, "*B 3 3"]) -> Float[Tensor, "*B 4"]:
    """Unit quaternions (w, x, y, z), w >= 0, of rotation matrices.

    Shepperd's method: of the four equivalent formulas, each matrix uses the one whose divisor (4·w, 4·x, 4·y or
    4·z) is largest, which keeps it accurate for every rotation (the w-only formula fails near 180°).
    """
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m00 - m11 - m22, m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m00 + m11 - m22, m[:, 1, 2] + m[:, 2, 1]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        dim=1,
    )  # fmt: skip
    best = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    q = candidates[torch.arange(len(m)), best.argmax(-1)]
    q = torch.nn.functional.normalize(q, dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


def similarity_residuals(src: Float[Tensor, "N 3"], dst: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
    """Distance of each point of `src` from its partner in `dst` after the least-squares similarity transform
    (rotation, uniform scale, translation; Umeyama 1991) that takes `src` onto `dst`: how far apart two point sets
    are in shape, whatever their frames (e.g. camera centres from SfM against the true ones)."""
    src, dst = src.double(), dst.double()
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    S, D = src - mu_src, dst - mu_dst
    U, sigma, Vt = torch.linalg.svd(D.T @ S / len(src))
    E = torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(torch.linalg.det(U @ Vt)))], dtype=src.dtype))
    R = U @ E @ Vt  # a rotation, never a reflection
    scale = torch.trace(torch.diag(sigma) @ E) / (S**2).sum(1).mean()
    return torch.linalg.norm(scale * S @ R.T + mu_dst - dst, dim=1)
