"""Multi-view patch consistency: neighbours, and 1 − NCC that is ~0 for the true plane, larger for a plane at the
wrong depth, with a gradient that moves the plane back."""

import math

import torch

from pipelines.static.multiview import neighbours, patch_ncc_loss
from splat4d.cameras import Cameras, pixel_rays
from splat4d.geometry import look_at

W, H = 64, 48
K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])


def _texture(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return 0.5 + 0.2 * torch.sin(7 * x + 1) * torch.cos(5 * y)


def _photo(T_world_cam: torch.Tensor) -> torch.Tensor:
    """Grey image of the textured floor z = 0 seen by a camera."""
    rays = pixel_rays(K[None], W, H)[0] @ T_world_cam[:3, :3].T
    origin = T_world_cam[:3, 3]
    s = -origin[2] / rays[..., 2]
    return _texture(origin[:2] + s[..., None] * rays[..., :2])


def _cameras() -> Cameras:
    eyes = [torch.tensor([0.0, -2.0, 1.5]), torch.tensor([0.8, -2.0, 1.5]), torch.tensor([0.0, 2.0, 1.5])]
    T = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, 0.0, -1.0])) for e in eyes])
    return Cameras(T, K.expand(3, 3, 3).clone(), W, H)


def _loss(cams: Cameras, height: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The loss of view 0 against view 1 for the plane z = height (in world), expressed in view 0's frame."""
    T_cam_world = cams.T_cam_world
    n_world = torch.tensor([0.0, 0.0, 1.0])
    n_cam = T_cam_world[0, :3, :3] @ n_world
    # n_world · X_world = height with X_world = R X_cam + c  ⇔  (Rᵀ n_world) · X_cam = height − n_world · c
    d = height - n_world @ cams.T_world_cam[0, :3, 3]
    if float(d.detach()) > 0:
        n_cam, d = -n_cam, -d
    normals = n_cam.expand(H, W, 3)
    dists = d.expand(H, W)
    T_nbr_ref = T_cam_world[1] @ cams.T_world_cam[0]
    valid = torch.ones(H, W, dtype=torch.bool)
    return patch_ncc_loss(
        _photo(cams.T_world_cam[0]), _photo(cams.T_world_cam[1]), K, K, T_nbr_ref, normals, dists, valid,
        num_patches=400, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def test_neighbours_are_near_cameras_looking_the_same_way() -> None:
    assert neighbours(_cameras(), k=2) == [[1], [0], []]  # camera 2 faces the others


def test_true_plane_matches_and_a_wrong_one_is_pulled_back() -> None:
    cams = _cameras()
    truth, used = _loss(cams, torch.tensor(0.0))
    assert used > 300 and float(truth) < 0.06  # resampling a foreshortened texture: NCC 0.96 at best
    height = torch.tensor(0.08, requires_grad=True)  # a floor hovering 8 cm too high
    wrong, _ = _loss(cams, height)
    wrong_value = float(wrong.detach())
    assert wrong_value > float(truth) + 0.03
    wrong.backward()
    assert height.grad > 0  # descending lowers the plane towards z = 0
    lower, _ = _loss(cams, torch.tensor(0.04))
    assert float(truth) < float(lower) < wrong_value
    assert math.isfinite(float(height.grad))
