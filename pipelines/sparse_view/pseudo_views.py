"""Pseudo views: cameras between the input cameras, where no photo exists, for the co-regularisation term.

A pseudo view interpolates a pair of neighbouring training cameras: its centre moves along the segment between
theirs (lerp), or along the arc between them when the cameras orbit a common point (`orbit_pivot`), and its
rotation along the shorter great arc between theirs (slerp; on an orbit, turned to face the orbit's centre), so
s = 0 and s = 1 give the two input cameras back (on an orbit, up to how far they look past its centre). Pairs
are a random training camera and one of its nearest training cameras by centre distance (FSGS and CoR-GS sample
pseudo views near the inputs, where the renders should stay plausible).
"""

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.export.camera_path import slerp
from splat4d.geometry import quat_to_rotmat, rotmat_to_quat
from splat4d.initialization import look_at_point


def interpolate_poses(
    T_world_a: Float[Tensor, "B 4 4"],
    T_world_b: Float[Tensor, "B 4 4"],
    s: Float[Tensor, " B"],
    pivot: Float[Tensor, "3"] | None = None,
) -> Float[Tensor, "B 4 4"]:
    """Camera-to-world poses a fraction `s` of the way from `T_world_a` to `T_world_b` (s = 0 gives a, s = 1
    gives b): rotations slerped; centres lerped, or, about a `pivot` the cameras orbit, moved along the arc
    between them (direction from the pivot slerped, distance lerped) and the slerped rotation turned to look at
    the pivot, so that a pseudo view between two cameras far apart on an orbit stays on the orbit, facing the
    subject, instead of cutting across it towards the subject."""
    s = s.to(T_world_a)
    q = slerp(rotmat_to_quat(T_world_a[:, :3, :3]), rotmat_to_quat(T_world_b[:, :3, :3]), s)
    out = torch.zeros_like(T_world_a)
    out[:, :3, :3] = quat_to_rotmat(q)
    a, b = T_world_a[:, :3, 3], T_world_b[:, :3, 3]
    if pivot is None:
        out[:, :3, 3] = torch.lerp(a, b, s[:, None])
    else:
        pivot = pivot.to(a)
        ra, rb = (a - pivot).norm(dim=-1, keepdim=True), (b - pivot).norm(dim=-1, keepdim=True)
        u, v = (a - pivot) / ra.clamp_min(1e-12), (b - pivot) / rb.clamp_min(1e-12)
        angle = torch.arccos((u * v).sum(-1, keepdim=True).clamp(-1.0, 1.0))
        sin = torch.sin(angle)
        t = s[:, None]
        straight = sin < 1e-6  # (nearly) the same direction: lerp
        wa = torch.where(straight, 1 - t, torch.sin((1 - t) * angle) / sin.clamp_min(1e-6))
        wb = torch.where(straight, t, torch.sin(t * angle) / sin.clamp_min(1e-6))
        out[:, :3, 3] = pivot + (wa * u + wb * v) * torch.lerp(ra, rb, t)
        out[:, :3, :3] = _aim(out[:, :3, :3], pivot - out[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def _aim(R: Float[Tensor, "B 3 3"], target_dir: Float[Tensor, "B 3"]) -> Float[Tensor, "B 3 3"]:
    """`R` turned by the smallest rotation that points its optical axis (third column) along `target_dir`."""
    z = R[:, :, 2]
    d = torch.nn.functional.normalize(target_dir, dim=-1)
    axis = torch.linalg.cross(z, d)
    sin, cos = axis.norm(dim=-1), (z * d).sum(-1)
    k = axis / sin.clamp_min(1e-12)[:, None]
    K = torch.zeros_like(R)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(1, 2)
    eye = torch.eye(3, dtype=R.dtype, device=R.device).expand_as(R)
    turn = eye + sin[:, None, None] * K + (1 - cos)[:, None, None] * (K @ K)  # Rodrigues
    turn = torch.where((sin < 1e-9)[:, None, None], eye, turn)
    return turn @ R


def orbit_pivot(cameras: Cameras, tolerance: float = 0.25) -> Float[Tensor, "3"] | None:
    """The point the cameras orbit, if they do: the least-squares meeting point of their optical axes when it
    lies in front of every camera and within `tolerance` × its distance of every axis; else None (e.g. a
    forward-facing or a panning capture, whose axes do not meet)."""
    if len(cameras) < 2:
        return None
    pivot = look_at_point(cameras.to("cpu"))
    T = cameras.T_world_cam.detach().cpu()
    offset = pivot - T[:, :3, 3]
    along = (offset * T[:, :3, 2]).sum(-1)  # depth of the pivot in each camera
    off_axis = (offset - along[:, None] * T[:, :3, 2]).norm(dim=-1)
    if not torch.isfinite(pivot).all() or (along <= 0).any() or (off_axis > tolerance * along).any():
        return None
    return pivot


def nearest_cameras(cameras: Cameras, k: int) -> list[list[int]]:
    """For each camera, the indices of its `k` nearest other cameras by centre distance (fewer if there are
    fewer)."""
    c = cameras.centers.detach().double().cpu()
    d = torch.cdist(c, c)
    d.fill_diagonal_(float("inf"))
    k = min(k, len(c) - 1)
    return [row.argsort()[:k].tolist() for row in d] if k > 0 else [[] for _ in range(len(c))]


def sample_pseudo_camera(
    cameras: Cameras,
    neighbours: list[list[int]],
    generator: torch.Generator | None = None,
    pivot: Float[Tensor, "3"] | None = None,
) -> Cameras:
    """One camera between a random training camera i and a random one of its `neighbours[i]`, at a uniform
    fraction of the way (along the orbit about `pivot` when given, see `interpolate_poses`); intrinsics and image
    size are camera i's. `cameras` with a single camera: itself."""
    i = int(torch.randint(len(cameras), (), generator=generator))
    if not neighbours[i]:
        return cameras[i]
    j = neighbours[i][int(torch.randint(len(neighbours[i]), (), generator=generator))]
    s = torch.rand(1, generator=generator)
    T = interpolate_poses(
        cameras.T_world_cam[i : i + 1], cameras.T_world_cam[j : j + 1], s.to(cameras.device), pivot
    )
    camera = cameras[i]
    return Cameras(T, camera.Ks.clone(), camera.width, camera.height)
