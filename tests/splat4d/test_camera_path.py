"""Camera paths: orbits look at the centre, interpolation passes through its keys, nerfstudio paths import, and the
default path stays where the cameras looked (an arc or ellipse for a one-sided capture, the orbit all round)."""

import json
import math
from pathlib import Path

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.export.camera_path import (
    arc_path,
    capture_coverage,
    choose_path,
    interpolate_path,
    load_nerfstudio_camera_path,
    orbit_path,
    scene_up,
    slerp,
    spiral_path,
)
from splat4d.geometry import look_at, quat_to_rotmat, rotmat_to_quat

CENTER = torch.tensor([0.5, -1.0, 2.0])
UP = torch.nn.functional.normalize(torch.tensor([0.2, 0.1, 1.0]), dim=0)


def _ring_cameras(n: int = 8, radius: float = 2.0, height: float = 0.5) -> Cameras:
    """Cameras evenly spaced on a tilted ring around CENTER, looking at it, level with UP."""
    e1 = torch.nn.functional.normalize(torch.linalg.cross(UP, torch.tensor([1.0, 0.0, 0.0])), dim=0)
    e2 = torch.linalg.cross(UP, e1)
    angles = torch.arange(n) * 2 * math.pi / n
    eyes = CENTER + height * UP + radius * (torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2)
    poses = torch.stack([look_at(eye, CENTER, UP) for eye in eyes])
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    return Cameras(poses, K.repeat(n, 1, 1), 64, 48, torch.linspace(0, 1, n))


def _assert_looks_at(cameras: Cameras, point: torch.Tensor) -> None:
    to_point = torch.nn.functional.normalize(point - cameras.centers, dim=-1)
    torch.testing.assert_close(cameras.T_world_cam[:, :3, 2], to_point, atol=1e-4, rtol=0)


def test_scene_up_is_the_cameras_mean_up() -> None:
    torch.testing.assert_close(scene_up(_ring_cameras()), UP, atol=1e-5, rtol=0)


def test_orbit_looks_at_the_centre_level_with_the_cameras() -> None:
    train = _ring_cameras()
    path = orbit_path(train, 12, width=32, height=24)
    assert len(path) == 12 and (path.width, path.height) == (32, 24)
    _assert_looks_at(path, CENTER)
    offsets = path.centers - CENTER
    torch.testing.assert_close(offsets @ UP, torch.full((12,), 0.5), atol=1e-4, rtol=0)
    horizontal = offsets - (offsets @ UP)[:, None] * UP
    torch.testing.assert_close(horizontal.norm(dim=-1), torch.full((12,), 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(path.T_world_cam[:, :3, 0] @ UP, torch.zeros(12), atol=1e-5, rtol=0)  # level
    torch.testing.assert_close(path.centers[0], train.centers[0], atol=1e-4, rtol=0)
    # Intrinsics rescaled to the requested size.
    torch.testing.assert_close(path.Ks[0], torch.tensor([[25.0, 0, 16], [0, 25.0, 12], [0, 0, 1]]))


def test_spiral_fits_the_camera_ring() -> None:
    path = spiral_path(_ring_cameras(), 10, spiral_height=0.0)
    _assert_looks_at(path, CENTER)
    ring_centre = CENTER + 0.5 * UP
    torch.testing.assert_close(
        (path.centers - ring_centre).norm(dim=-1), torch.full((10,), 2.0), atol=1e-4, rtol=0
    )
    rising = spiral_path(_ring_cameras(), 8, spiral_height=0.3)
    torch.testing.assert_close((rising.centers[2] - ring_centre) @ UP, torch.tensor(0.3), atol=1e-4, rtol=0)


def test_interpolation_passes_through_its_keys() -> None:
    train = _ring_cameras()
    keys = [0, 3, 5, 6]
    path = interpolate_path(train, keys, frames=3 * 4 + 1)
    for j, k in enumerate(keys):
        assert torch.equal(path.T_world_cam[4 * j], train.T_world_cam[k])
        assert torch.equal(path.Ks[4 * j], train.Ks[k])
        assert path.times is not None and train.times is not None
        torch.testing.assert_close(path.times[4 * j], train.times[k])
    R = path.T_world_cam[:, :3, :3]
    torch.testing.assert_close(R.mT @ R, torch.eye(3).expand(13, 3, 3), atol=1e-5, rtol=0)
    steps = (path.centers[1:] - path.centers[:-1]).norm(dim=-1)
    assert steps.max() < 3 * steps.min()  # smooth: no jumps between frames


def test_quaternion_round_trip_and_slerp() -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(100, 4, generator=generator), dim=-1)
    q = torch.cat([q, torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])])  # 180° turns
    q = torch.where(q[:, :1] < 0, -q, q)
    torch.testing.assert_close(rotmat_to_quat(quat_to_rotmat(q)), q, atol=1e-5, rtol=0)
    half = slerp(q[:1], q[1:2], torch.tensor([0.5]))
    angle = lambda a, b: 2 * torch.acos((a * b).sum(-1).abs().clamp(max=1))  # noqa: E731
    torch.testing.assert_close(angle(q[:1], half), angle(half, q[1:2]), atol=1e-5, rtol=0)


def test_nerfstudio_camera_path_import_matches_a_hand_computed_pose(tmp_path: Path) -> None:
    # OpenGL camera at (1, 2, 3) turned 90° about world y: it looks down world −x (its −z), its x axis is world −z.
    c2w_gl = [[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 2.0], [-1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
    doc = {
        "render_height": 30,
        "render_width": 40,
        "fps": 12,
        "seconds": 1.0 / 6,
        "camera_path": [
            {
                "camera_to_world": torch.tensor(c2w_gl).flatten().tolist(),
                "fov": 90.0,
                "aspect": 4 / 3,
                "time": 0.25,
            },
            {"camera_to_world": torch.eye(4).flatten().tolist(), "fov": 60.0, "aspect": 4 / 3, "time": 0.75},
        ],
    }
    (tmp_path / "camera_path.json").write_text(json.dumps(doc))
    imported = load_nerfstudio_camera_path(tmp_path / "camera_path.json")
    cams = imported.cameras
    assert imported.fps == 12 and (cams.width, cams.height) == (40, 30) and len(cams) == 2
    # OpenCV: x right = world −z, y down = world −y, z forward = world −x.
    expected = torch.tensor(
        [[0.0, 0.0, -1.0, 1.0], [0.0, -1.0, 0.0, 2.0], [-1.0, 0.0, 0.0, 3.0], [0, 0, 0, 1.0]]
    )
    torch.testing.assert_close(cams.T_world_cam[0], expected)
    torch.testing.assert_close(cams.Ks[0], torch.tensor([[15.0, 0, 20], [0, 15.0, 15], [0, 0, 1]]))
    torch.testing.assert_close(cams.Ks[1, 1, 1], torch.tensor(15.0 / math.tan(math.radians(30))))
    assert cams.times is not None
    torch.testing.assert_close(cams.times, torch.tensor([0.25, 0.75]))
    resized_path = load_nerfstudio_camera_path(tmp_path / "camera_path.json", width=80, height=60)
    torch.testing.assert_close(resized_path.cameras.Ks[0, 0, 0], torch.tensor(30.0))


def test_bad_camera_path_file_is_a_clear_error(tmp_path: Path) -> None:
    from splat4d.export.camera_path import CameraPathError

    (tmp_path / "bad.json").write_text('{"camera_path": [{"fov": 50}]}')
    with pytest.raises(CameraPathError, match=r"bad\.json"):
        load_nerfstudio_camera_path(tmp_path / "bad.json")


def _arc_cameras(degrees: float, n: int = 9) -> Cameras:
    """n cameras spread over `degrees` of azimuth around CENTER (radius 2, 0.5 above it), looking at it."""
    e1 = torch.nn.functional.normalize(torch.linalg.cross(UP, torch.tensor([1.0, 0.0, 0.0])), dim=0)
    e2 = torch.linalg.cross(UP, e1)
    angles = 0.4 + torch.linspace(0, math.radians(degrees), n)
    eyes = CENTER + 0.5 * UP + 2.0 * (torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2)
    poses = torch.stack([look_at(eye, CENTER, UP) for eye in eyes])
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    return Cameras(poses, K.repeat(n, 1, 1), 64, 48)


def _azimuths(points: torch.Tensor, reference: Cameras) -> torch.Tensor:
    """Azimuths of `points` around the up axis through the look-at point of `reference`, in its coverage's frame,
    unwrapped to start at the coverage's first camera (so that the covered arc is [0, span])."""
    coverage = capture_coverage(reference)
    offsets = points - coverage.center
    angles = torch.atan2(offsets @ coverage.e2, offsets @ coverage.e1)
    return torch.remainder(angles - coverage.start + 1e-4, 2 * math.pi) - 1e-4


@pytest.mark.parametrize("degrees", [100.0, 180.0])
def test_a_capture_from_one_side_gets_an_arc_within_the_cameras_azimuths(degrees: float) -> None:
    train = _arc_cameras(degrees)
    coverage = capture_coverage(train)
    assert coverage.converging and not coverage.surrounds()
    assert math.degrees(coverage.span) == pytest.approx(degrees, abs=1e-3)
    kind, why = choose_path(train)
    assert kind == "arc" and f"{degrees:.0f}°" in why
    path = arc_path(train, 30)
    _assert_looks_at(path, CENTER)
    covered = _azimuths(train.centers, train)
    along = _azimuths(path.centers, train)
    assert covered.min() >= 0 and covered.max() == pytest.approx(math.radians(degrees), abs=1e-4)
    assert (along >= covered.min() - 1e-4).all() and (along <= covered.max() + 1e-4).all()
    assert along.max() - along.min() > 0.95 * math.radians(degrees)  # and it uses the whole arc
    torch.testing.assert_close(path.T_world_cam[:, :3, 0] @ UP, torch.zeros(30), atol=1e-5, rtol=0)  # level
    steps = (path.centers - path.centers.roll(1, 0)).norm(dim=-1)
    fastest = 2.0 * math.radians(degrees) / 2 * 2 * math.pi / 30  # radius × the sine's top angular speed
    assert steps.max() <= 1.01 * fastest  # no jump, not even from the last frame back to the first


def test_a_forward_facing_capture_gets_the_ellipse_within_the_cameras_range() -> None:
    # A 4x3 grid of cameras on the plane z = 0, all looking down +z at a scene about 5 units away (LLFF-like).
    xs, ys = torch.meshgrid(torch.linspace(-0.6, 0.6, 4), torch.linspace(-0.3, 0.3, 3), indexing="ij")
    T = torch.eye(4).repeat(12, 1, 1)
    T[:, 0, 3], T[:, 1, 3] = xs.ravel(), ys.ravel()
    T[:, 2, 3] = 0.05 * torch.sin(torch.arange(12.0))  # hand-held: not exactly planar
    train = Cameras(T, torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).repeat(12, 1, 1), 64, 48)
    kind, why = choose_path(train)
    assert kind == "spiral" and "forward-facing" in why
    path = spiral_path(train, 40)
    scene_point = torch.tensor([0.0, 0.0, 5.0])

    def directions(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = points - scene_point
        return torch.atan2(d[:, 0], -d[:, 2]), torch.atan2(d[:, 1], -d[:, 2])  # azimuth, elevation

    (az, el), (train_az, train_el) = directions(path.centers), directions(train.centers)
    for along, seen in ((az, train_az), (el, train_el)):
        slack = 0.02 * (
            seen.max() - seen.min()
        )  # the ellipse also moves in and out by the cameras' depth spread
        assert (along >= seen.min() - slack).all() and (along <= seen.max() + slack).all()
    assert az.max() - az.min() > 0.5 * (train_az.max() - train_az.min())  # it does move


def test_cameras_all_around_get_the_orbit() -> None:
    kind, why = choose_path(_ring_cameras(8))
    assert kind == "orbit" and "surround" in why
    assert choose_path(_ring_cameras(4))[0] == "orbit"  # 90° apart: still all round
    assert choose_path(_arc_cameras(300, n=11))[0] == "orbit"  # a 60° gap
    assert choose_path(_arc_cameras(250, n=11))[0] == "arc"  # a 110° gap


def test_few_cameras_get_an_arc_between_them() -> None:
    train = _arc_cameras(40, n=2)
    assert choose_path(train)[0] == "arc"
    path = arc_path(train, 8)
    along = _azimuths(path.centers, train)
    assert (along >= -1e-4).all() and (along <= math.radians(40) + 1e-4).all()
