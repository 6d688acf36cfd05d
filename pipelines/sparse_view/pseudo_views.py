"""Pseudo views: cameras between the input cameras, where no photo exists, for the co-regularisation term.

A pseudo view interpolates a pair of neighbouring training cameras: its centre moves along the segment between
theirs (lerp) and its rotation along the shorter great arc between theirs (slerp), so s = 0 and s = 1 give the
two input cameras back. Pairs are a random training camera and one of its nearest training cameras by centre
distance (FSGS and CoR-GS sample pseudo views near the inputs, where the renders should stay plausible).
"""

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.export.camera_path import slerp
from splat4d.geometry import quat_to_rotmat, rotmat_to_quat


def interpolate_poses(
    T_world_a: Float[Tensor, "B 4 4"], T_world_b: Float[Tensor, "B 4 4"], s: Float[Tensor, " B"]
) -> Float[Tensor, "B 4 4"]:
    """Camera-to-world poses a fraction `s` of the way from `T_world_a` to `T_world_b`: centres lerped,
    rotations slerped (s = 0 gives a, s = 1 gives b)."""
    s = s.to(T_world_a)
    q = slerp(rotmat_to_quat(T_world_a[:, :3, :3]), rotmat_to_quat(T_world_b[:, :3, :3]), s)
    out = torch.zeros_like(T_world_a)
    out[:, :3, :3] = quat_to_rotmat(q)
    out[:, :3, 3] = torch.lerp(T_world_a[:, :3, 3], T_world_b[:, :3, 3], s[:, None])
    out[:, 3, 3] = 1.0
    return out


def nearest_cameras(cameras: Cameras, k: int) -> list[list[int]]:
    """For each camera, the indices of its `k` nearest other cameras by centre distance (fewer if there are
    fewer)."""
    c = cameras.centers.detach().double().cpu()
    d = torch.cdist(c, c)
    d.fill_diagonal_(float("inf"))
    k = min(k, len(c) - 1)
    return [row.argsort()[:k].tolist() for row in d] if k > 0 else [[] for _ in range(len(c))]


def sample_pseudo_camera(
    cameras: Cameras, neighbours: list[list[int]], generator: torch.Generator | None = None
) -> Cameras:
    """One camera between a random training camera i and a random one of its `neighbours[i]`, at a uniform
    fraction of the way; intrinsics and image size are camera i's. `cameras` with a single camera: itself."""
    i = int(torch.randint(len(cameras), (), generator=generator))
    if not neighbours[i]:
        return cameras[i]
    j = neighbours[i][int(torch.randint(len(neighbours[i]), (), generator=generator))]
    s = torch.rand(1, generator=generator)
    T = interpolate_poses(
        cameras.T_world_cam[i : i + 1], cameras.T_world_cam[j : j + 1], s.to(cameras.device)
    )
    return Cameras(T, cameras.Ks[i : i + 1].clone(), cameras.width, cameras.height)
