"""Camera paths for videos: an orbit, an arc over the part of the scene the cameras saw, an ellipse or spiral fitted
to the capture, a smooth path through chosen training cameras, and nerfstudio's `camera_path.json`.

Every path is a `Cameras` batch (OpenCV axes, `T_world_cam`) with the training cameras' intrinsics, rescaled to
the requested image size. "Up" is the training cameras' mean up direction (−y in OpenCV axes), so paths stay level
with the capture however the world frame is oriented.

`choose_path` picks a path that stays where the cameras looked: a full orbit only when the cameras surround the
scene, an arc over the azimuths they cover when they saw it from one side, and the fitted ellipse for a
forward-facing capture. A path that leaves the photographed side shows the unseen back of the scene as smears.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.checks import FLOAT32_MAX, describe_pose_problem
from splat4d.data.dataset import resize_cameras
from splat4d.errors import UserError
from splat4d.geometry import OPENGL_FROM_OPENCV, look_at, quat_to_rotmat, rotmat_to_quat
from splat4d.initialization import look_at_point


class CameraPathError(UserError):
    """A camera path cannot be built or read; the message says why."""


# --- quaternions (w, x, y, z) ---------------------------------------------------------------------------------


def slerp(
    q0: Float[Tensor, "*B 4"], q1: Float[Tensor, "*B 4"], s: Float[Tensor, "*B"]
) -> Float[Tensor, "*B 4"]:
    """Spherical linear interpolation of unit quaternions along the shorter arc; s = 0 gives q0, s = 1 gives q1."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    s = s[..., None]
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    # Nearly equal rotations: sin θ → 0, and linear interpolation is the limit.
    small = sin_theta < 1e-6
    w0 = torch.where(small, 1 - s, torch.sin((1 - s) * theta) / sin_theta.clamp_min(1e-12))
    w1 = torch.where(small, s, torch.sin(s * theta) / sin_theta.clamp_min(1e-12))
    return torch.nn.functional.normalize(w0 * q0 + w1 * q1, dim=-1)


# --- paths ------------------------------------------------------------------------------------------------------


def resized(cameras: Cameras, width: int | None = None, height: int | None = None) -> Cameras:
    """`cameras` rendering at `width` × `height` (default: each camera's own size), intrinsics scaled per axis."""
    return resize_cameras(
        cameras, [width or w for w in cameras.widths], [height or h for h in cameras.heights]
    )


LEVEL_SPREAD = 0.02
"""Second eigenvalue of the mean x-axis outer product (the unit image-right vectors' spread out of a line) above
which `scene_up` trusts the axis they are all orthogonal to: about 30° of turn around the scene."""


def scene_up(cameras: Cameras) -> Float[Tensor, "3"]:
    """Unit up direction of the capture.

    Photos held upright have a level x axis (image right) whatever their pitch, so when the cameras turn around the
    scene (their x axes span a plane, `LEVEL_SPREAD`) up is the direction orthogonal to every x axis, in least
    squares. Otherwise (a forward-facing capture, all x axes alike) it is the cameras' mean up (−y in OpenCV axes)
    made orthogonal to their mean x axis. Either way it points the way of the mean up. The mean up alone tilts
    towards the far side of cameras that look down on a scene from one side.

    Raises:
        CameraPathError: the cameras have no common up direction.
    """
    R = cameras.T_world_cam[:, :3, :3].detach().double().cpu()
    mean_up = -R[:, :, 1].mean(0)
    if mean_up.norm() < 1e-6:
        raise CameraPathError("the training cameras have no common up direction")
    right = R[:, :, 0]
    eigenvalues, eigenvectors = torch.linalg.eigh(right.T @ right / len(right))  # ascending
    if float(eigenvalues[1]) > LEVEL_SPREAD:
        up = eigenvectors[:, 0]
    else:
        mean_right = torch.nn.functional.normalize(right.mean(0), dim=0)
        up = mean_up - (mean_up @ mean_right) * mean_right
    if up.norm() < 1e-6:
        raise CameraPathError("the training cameras have no common up direction")
    up = torch.nn.functional.normalize(up, dim=0)
    return (up if up @ mean_up >= 0 else -up).float()


def _path_cameras(T_world_cam: Tensor, cameras: Cameras, width: int | None, height: int | None) -> Cameras:
    """Cameras at poses `T_world_cam` with the first training camera's intrinsics, at the requested size."""
    n = len(T_world_cam)
    template = Cameras(T_world_cam, cameras.Ks[:1].expand(n, 3, 3).clone(), *cameras.sizes[0])
    return resized(template, width, height)


def _basis(up: Tensor, towards: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors spanning the plane orthogonal to `up`, the first along `towards` projected onto it."""
    e1 = towards - (towards @ up) * up
    if e1.norm() < 1e-6:
        e1 = torch.linalg.cross(up, torch.eye(3, dtype=up.dtype)[int(up.abs().argmin())])
    e1 = torch.nn.functional.normalize(e1, dim=0)
    return e1, torch.linalg.cross(up, e1)


def orbit_path(
    cameras: Cameras,
    frames: int,
    width: int | None = None,
    height: int | None = None,
    radius_scale: float = 1.0,
) -> Cameras:
    """One full turn around the scene centre, level with the cameras, looking at the centre.

    The centre is the least-squares look-at point of the cameras; the radius and height are the cameras' mean
    distance from the up axis through it and mean height above it. The orbit starts at the first camera's azimuth
    and turns like a right-handed rotation about up.
    """
    center = look_at_point(cameras)
    up = scene_up(cameras)
    offsets = cameras.centers - center
    heights = offsets @ up
    horizontal = offsets - heights[:, None] * up
    radius = float(horizontal.norm(dim=-1).mean()) * radius_scale
    if radius < 1e-6:
        raise CameraPathError("the training cameras lie on one vertical line; no orbit radius")
    e1, e2 = _basis(up, horizontal[0])
    angles = torch.arange(frames, dtype=torch.float32) * (2 * math.pi / frames)
    eyes = (
        center
        + heights.mean() * up
        + radius * (torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2)
    )
    poses = torch.stack([look_at(eye, center, up) for eye in eyes])
    return _path_cameras(poses, cameras, width, height)


SURROUND_MAX_GAP_DEG = 90.0
"""The cameras surround the scene when no gap between neighbouring camera azimuths (around the up axis through the
scene centre) is wider than this: four cameras evenly round an object do, a half circle of them (a 180° gap) does
not, and an orbit would spend half its frames on the unphotographed side."""
ARC_MIN_SPAN_DEG = 60.0
"""An arc over fewer degrees than this barely moves; such a capture gets the ellipse fitted to the cameras."""
CONVERGING_OFF_AXIS = 0.5
"""The optical axes meet (a capture of an object, not a forward-facing one) when the scene centre lies in front of
every camera and, for the median camera, within this fraction of its depth from the optical axis (about 27°)."""


class Coverage(NamedTuple):
    """Where the cameras stand around the scene centre, in the horizontal plane (orthogonal to `scene_up`).

    Azimuths are measured about `up` from `e1` towards `e2` (right-handed). `start` and `span` give the shortest
    arc of azimuths that holds every camera: it starts at `start` and turns by `span` (0 for one camera, near 2π
    for cameras all around)."""

    center: Float[Tensor, "3"]
    up: Float[Tensor, "3"]
    e1: Float[Tensor, "3"]
    e2: Float[Tensor, "3"]
    radius: float
    """Mean distance of the camera centres from the up axis through `center`."""
    height: float
    """Mean height of the camera centres above `center`."""
    azimuths: Float[Tensor, "C"]
    """Each camera's azimuth in [0, 2π) (NaN for a camera on the up axis itself, which has none)."""
    start: float
    span: float
    largest_gap: float
    """The widest azimuth interval without a camera (radians); 2π − span."""
    converging: bool
    """Whether the optical axes meet in front of the cameras (`CONVERGING_OFF_AXIS`); False for a forward-facing
    capture, whose axes are (nearly) parallel."""

    def surrounds(self) -> bool:
        return self.largest_gap <= math.radians(SURROUND_MAX_GAP_DEG) + 1e-6  # 4 cameras 90° apart do


def capture_coverage(cameras: Cameras) -> Coverage:
    """The azimuth range of the camera centres around the up axis through their look-at point.

    Raises:
        CameraPathError: the cameras have no common up direction.
    """
    center = look_at_point(cameras).double()
    up = scene_up(cameras).double()
    T = cameras.T_world_cam.detach().double().cpu()
    offsets = T[:, :3, 3] - center
    heights = offsets @ up
    horizontal = offsets - heights[:, None] * up
    distance = horizontal.norm(dim=-1)
    e1, e2 = _basis(up, horizontal[int(distance.argmax())])
    on_axis = distance <= 1e-6 * max(float(distance.max()), 1e-12)
    azimuths = torch.remainder(torch.atan2(horizontal @ e2, horizontal @ e1), 2 * math.pi)
    azimuths[on_axis] = float("nan")
    ordered = azimuths[~on_axis].sort().values
    if len(ordered) == 0:
        start, span = 0.0, 0.0
    else:
        gaps = torch.cat([ordered[1:] - ordered[:-1], (ordered[:1] + 2 * math.pi) - ordered[-1:]])
        k = int(gaps.argmax())  # the arc starts after the widest gap: at the camera that follows it
        start, span = float(ordered[(k + 1) % len(ordered)]), 2 * math.pi - float(gaps[k])
    # Depth of the centre along each optical axis, and how far off the axis it lies.
    forward = torch.nn.functional.normalize(T[:, :3, 2], dim=-1)
    depth = (-offsets * forward).sum(-1)
    off_axis = (-offsets - depth[:, None] * forward).norm(dim=-1)
    # look_at_point falls back to a point just ahead of the cameras when their axes are (nearly) parallel.
    projectors = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]
    parallel = float(torch.linalg.cond(projectors.sum(0))) > 1e6
    converging = bool(
        not parallel
        and torch.isfinite(center).all()
        and (depth > 0).all()
        and float((off_axis / depth.clamp_min(1e-12)).median()) <= CONVERGING_OFF_AXIS
    )
    return Coverage(
        center.float(), up.float(), e1.float(), e2.float(), float(distance.mean()), float(heights.mean()),
        azimuths.float(), start, span, 2 * math.pi - span, converging,
    )  # fmt: skip


def arc_path(
    cameras: Cameras,
    frames: int,
    width: int | None = None,
    height: int | None = None,
) -> Cameras:
    """Back and forth over the arc of azimuths the cameras cover (`capture_coverage`), at their mean distance from
    the scene centre's up axis and their mean height, level, looking at the centre.

    The path starts in the middle of the arc, swings to one end, to the other and back (the azimuth follows a sine
    over the video, so it slows down at the ends and loops without a jump); it never leaves the azimuths between
    the two outermost cameras, so it shows only sides of the scene that were photographed.
    """
    coverage = capture_coverage(cameras)
    if coverage.radius < 1e-6:
        raise CameraPathError("the training cameras lie on one vertical line; no arc radius")
    s = torch.arange(frames, dtype=torch.float64) / frames
    half = coverage.span / 2
    angles = coverage.start + half + half * torch.sin(2 * math.pi * s)
    e1, e2, up = coverage.e1.double(), coverage.e2.double(), coverage.up.double()
    eyes = (
        coverage.center.double()
        + coverage.height * up
        + coverage.radius * (torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2)
    ).float()
    poses = torch.stack([look_at(eye, coverage.center, coverage.up) for eye in eyes])
    return _path_cameras(poses, cameras, width, height)


def choose_path(cameras: Cameras) -> tuple[str, str]:
    """The path kind a video of a capture should follow by default, and why (one clause, for the user).

    "orbit" when the cameras surround the scene (`SURROUND_MAX_GAP_DEG`); "arc" when they saw it from one side
    (`arc_path` stays within their azimuths); "spiral" (the ellipse fitted to the cameras) when they face one way
    (forward-facing) or cover less than `ARC_MIN_SPAN_DEG` around the scene.
    """
    if len(cameras) < 3:
        n = len(cameras)
        return (
            "arc",
            f"there {'is' if n == 1 else 'are'} only {n} training camera{'s' * (n != 1)}, too few to fit",
        )
    coverage = capture_coverage(cameras)
    span = math.degrees(coverage.span)
    if not coverage.converging:
        return "spiral", "the training cameras face one way (a forward-facing capture)"
    if coverage.surrounds():
        gap = math.degrees(coverage.largest_gap)
        return "orbit", f"the training cameras surround the scene (widest gap between them {gap:.0f}°)"
    if span < ARC_MIN_SPAN_DEG:
        return "spiral", f"the training cameras cover only {span:.0f}° around the scene centre"
    return "arc", f"the training cameras cover {span:.0f}° around the scene centre, not all round"


def spiral_path(
    cameras: Cameras,
    frames: int,
    width: int | None = None,
    height: int | None = None,
    turns: float = 1.0,
    spiral_height: float | None = None,
) -> Cameras:
    """An ellipse fitted to the camera centres (PCA plane fit), optionally rising and falling like a spiral, looking
    at the scene centre.

    The ellipse lies in the centres' best-fit plane, with semi-axes √2 × their standard deviation along its two
    principal directions (the radii of a circle or ellipse the centres were sampled evenly from); for a
    forward-facing capture (the cameras look across that plane, not along it) no farther out than the outermost
    camera along either direction. With
    `spiral_height` (None: the centres' standard deviation off the plane), the camera also moves sin(2π s · turns)
    × spiral_height along the plane's normal while going round `turns` times.
    """
    if len(cameras) < 3:
        raise CameraPathError("a spiral needs at least 3 training cameras to fit a plane")
    centres = cameras.centers.double()
    mean = centres.mean(0)
    _, S, Vh = torch.linalg.svd(centres - mean, full_matrices=False)
    std = S / math.sqrt(len(centres))
    e1, e2, normal = Vh[0], Vh[1], Vh[2]
    semi = math.sqrt(2) * std[:2]
    forward = torch.nn.functional.normalize(cameras.T_world_cam[:, :3, 2].double(), dim=-1)
    if float((forward @ normal).abs().mean()) > math.cos(math.radians(45)):
        # Forward-facing (the cameras look across the plane of their centres): a grid of a few cameras per row
        # has √2 σ beyond its outermost camera (3 per row: 1.15 × its half-width), where nothing was photographed.
        extent = ((centres - mean) @ torch.stack([e1, e2]).T).abs().max(0).values
        semi = torch.minimum(semi, extent)
    up = scene_up(cameras).double()
    if normal @ up < 0:
        normal, e2 = -normal, -e2  # keep (e1, e2, normal) right-handed with the normal pointing up
    amplitude = float(std[2]) if spiral_height is None else spiral_height
    s = torch.arange(frames, dtype=torch.float64) / frames
    angles = 2 * math.pi * turns * s
    eyes = (
        mean
        + semi[0] * torch.cos(angles)[:, None] * e1
        + semi[1] * torch.sin(angles)[:, None] * e2
        + amplitude * torch.sin(2 * math.pi * s)[:, None] * normal
    ).float()
    center = look_at_point(cameras)
    poses = torch.stack([look_at(eye, center, up.float()) for eye in eyes])
    return _path_cameras(poses, cameras, width, height)


def _catmull_rom(points: Tensor, u: Tensor) -> Tensor:
    """Uniform Catmull-Rom spline through `points` [K, D] at parameters u in [0, K−1]: passes through point i at
    u = i; the end tangents come from mirrored end points."""
    K = len(points)
    padded = torch.cat([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    i = u.floor().long().clamp(0, K - 2)
    s = (u - i)[:, None]
    p0, p1, p2, p3 = padded[i], padded[i + 1], padded[i + 2], padded[i + 3]
    return 0.5 * (
        2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3
    )


def interpolate_path(
    cameras: Cameras,
    keyframes: list[int],
    frames: int,
    width: int | None = None,
    height: int | None = None,
) -> Cameras:
    """A smooth path through the cameras `keyframes` (indices into `cameras`), in that order.

    Positions follow a Catmull-Rom spline, rotations slerp between consecutive keys, intrinsics (and times, when
    the cameras have them) interpolate linearly. The `frames` samples are spread evenly in the spline parameter from
    the first key to the last; when frames − 1 is a multiple of len(keyframes) − 1 every key is one of them,
    exactly.
    """
    if len(keyframes) < 2 or frames < 2:
        raise CameraPathError("interpolation needs at least 2 keyframes and 2 frames")
    if not all(-len(cameras) <= k < len(cameras) for k in keyframes):
        raise CameraPathError(f"keyframes {keyframes} out of range for {len(cameras)} cameras")
    keys = cameras[torch.tensor(keyframes)]
    keys = resized(keys, keys.widths[0], keys.heights[0])  # one size for the whole path (the first key's)
    K = len(keys)
    u = torch.linspace(0, K - 1, frames, dtype=torch.float64)
    positions = _catmull_rom(keys.centers.double(), u)
    i = u.floor().long().clamp(0, K - 2)
    s = u - i
    quats = rotmat_to_quat(keys.T_world_cam[:, :3, :3].double())
    rotations = quat_to_rotmat(slerp(quats[i], quats[i + 1], s))
    T = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    T[:, :3, :3], T[:, :3, 3] = rotations, positions

    def lerp(x: Tensor) -> Tensor:
        x = x.double()
        w = s.reshape(-1, *[1] * (x.dim() - 1))
        return (1 - w) * x[i] + w * x[i + 1]

    # At a key, s is 0 (or 1 at the last): take the key's own pose so it is reproduced to the last bit.
    exact = s == 0
    T[exact] = keys.T_world_cam[i[exact]].double()
    last = u == K - 1
    T[last] = keys.T_world_cam[-1].double()
    times = None if keys.times is None else lerp(keys.times).float()
    path = Cameras(
        T.to(cameras.T_world_cam.dtype), lerp(keys.Ks).float(), keys.widths[0], keys.heights[0], times
    )
    return resized(path, width, height)


class ImportedPath(NamedTuple):
    cameras: Cameras
    """The path's cameras (OpenCV axes), with `times` when every keyframe of the file has a `time`."""
    fps: float
    """Frames per second the file asks for."""


_MAX_RENDER_SIDE = 32768
"""Largest render_width / render_height read from a camera path file (larger is a typo, not a video)."""


def load_nerfstudio_camera_path(
    path: Path, width: int | None = None, height: int | None = None
) -> ImportedPath:
    """Read a nerfstudio `camera_path.json` (as written by its viewer's render panel).

    Each entry of `camera_path` holds `camera_to_world` (16 floats, a row-major 4x4 in OpenGL axes: x right, y up,
    looking down −z), `fov` (vertical, degrees) and optionally `time`; the file holds `render_width`,
    `render_height` and `fps`. Poses are taken to be in the scene's world frame. Intrinsics are square-pixel
    pinhole ones centred in the image, at `width` × `height` when given (the vertical field of view is kept).

    Raises:
        CameraPathError: the file is missing or not JSON, or a value it holds is missing or unusable (a pose that
            is not a finite rigid transform, a field of view outside (0°, 180°), a non-positive size or frame
            rate, a non-finite time); the message names the file and the value.
    """
    path = Path(path)
    hint = "fix the file or export it again from nerfstudio's render panel"

    def fail(why: str) -> CameraPathError:
        return CameraPathError(f"{path}: {why}; {hint}")

    if path.is_dir():
        raise CameraPathError(f"{path}: is a folder; name the camera_path.json file itself")
    if not path.is_file():
        raise CameraPathError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise fail("not UTF-8 text, so not a camera_path.json") from None
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, lists nested too deeply
        raise fail(f"not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    except OSError as exc:
        raise CameraPathError(
            f"{path}: cannot be read ({(exc.strerror or type(exc).__name__).lower()})"
        ) from None
    if not isinstance(doc, dict) or "camera_path" not in doc:
        raise fail("not a nerfstudio camera path (no camera_path list)")
    camera_type = doc.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise CameraPathError(
            f"{path}: camera_type {camera_type!r} is not supported; splat4d renders perspective cameras only"
        )
    entries = doc["camera_path"]
    if not isinstance(entries, list):
        raise fail("camera_path is not a list of keyframes")
    if not entries:
        raise fail("camera_path is empty (no frames to render)")

    def number(value: object, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= FLOAT32_MAX:
            raise fail(f"{what} is {json.dumps(value)[:40]}, not a finite number")
        return float(value)

    def size(key: str, given: int | None) -> int:
        if given:
            return int(given)
        if key not in doc:
            raise fail(f"missing key {key!r}")
        value = number(doc[key], key)
        if not (value.is_integer() and 1 <= value <= _MAX_RENDER_SIDE):
            raise fail(
                f"{key} is {json.dumps(doc[key])}, not a whole number of pixels in 1..{_MAX_RENDER_SIDE}"
            )
        return int(value)

    W, H = size("render_width", width), size("render_height", height)
    fps = number(doc.get("fps", 24), "fps")
    if fps <= 0:
        raise fail(f"fps is {fps:g}, must be positive")
    default_fov = doc.get("default_fov", 50.0)
    c2w = torch.empty(len(entries), 4, 4, dtype=torch.float64)
    fovs = torch.empty(len(entries), dtype=torch.float64)
    times: list[float | None] = []
    for i, entry in enumerate(entries):
        where = f"camera_path[{i}]"
        if not isinstance(entry, dict):
            raise fail(f"{where} is not an object")
        if "camera_to_world" not in entry:
            raise fail(f"{where} has no camera_to_world")
        c2w[i] = _rigid_matrix(entry["camera_to_world"], f"{where}.camera_to_world", number, fail)
        fov = number(entry.get("fov", default_fov), f"{where}.fov" if "fov" in entry else "default_fov")
        if not 0 < fov < 180:
            raise fail(f"{where}.fov is {fov:g} degrees, must be between 0 and 180")
        fovs[i] = fov
        time = entry.get("time")
        times.append(None if time is None else number(time, f"{where}.time"))
    T_world_cam = c2w @ OPENGL_FROM_OPENCV.double()
    focal = 0.5 * H / torch.tan(torch.deg2rad(fovs) / 2)
    Ks = torch.zeros(len(entries), 3, 3, dtype=torch.float64)
    Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = focal, focal, W / 2, H / 2, 1.0
    has_times = all(t is not None for t in times)
    cameras = Cameras(
        T_world_cam.float(), Ks.float(), W, H, torch.tensor(times, dtype=torch.float32) if has_times else None
    )
    return ImportedPath(cameras, fps)


def _rigid_matrix(
    value: object, what: str, number: Callable[[object, str], float], fail: Callable[[str], CameraPathError]
) -> Tensor:
    """The 4x4 float64 matrix of `value` (16 numbers, flat or as 4 rows of 4), checked to be a finite rigid
    transform (`splat4d.data.checks.describe_pose_problem`: finite, a rotation, the bottom row 0 0 0 1)."""
    if isinstance(value, list) and len(value) == 4 and all(isinstance(row, list) for row in value):
        value = [x for row in value for x in row]
    if not isinstance(value, list):
        raise fail(f"{what} is not a list of 16 numbers (a row-major 4x4)")
    if len(value) != 16:
        raise fail(f"{what} holds {len(value)} numbers, expected 16 (a row-major 4x4)")
    T = torch.tensor([number(x, what) for x in value], dtype=torch.float64).reshape(4, 4)
    problem = describe_pose_problem(T.numpy())
    if problem is not None:
        raise fail(f"{what} {problem}")
    return T
