"""Procedural sample scenes: a vectorised numpy ray tracer that writes nerfstudio-style datasets.

The scene is a closed room (so every camera ray hits something) holding boxes and spheres, with posters on
the walls. Surfaces are textured with photographs bundled with scikit-image (trilinear mip-mapped lookups)
and lit by a fixed Lambertian term with hard shadows from one directional light. Shading never depends on
the viewer, so the views are multi-view consistent. Depth is exact, from analytic ray intersection;
`mesh.ply` is the same surface, finely tessellated.

World frame: z up, metres. Poses are written in the nerfstudio/OpenGL convention (x right, y up, z back).
Rays are traced in the OpenCV convention (x right, y down, z forward) with unnormalised directions whose
camera-frame z is 1, so the ray parameter of a hit *is* its z-depth.
"""

import io
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple

import imageio.v3 as iio
import numpy as np
import trimesh
from jaxtyping import Float, UInt8
from rich.progress import track
from skimage import data as skdata

from splat4d.errors import UserError

ROOM_HALF_WIDTH = 4.0
"""The room is the box [-4, 4] × [-4, 4] × [0, ROOM_HEIGHT], metres."""
ROOM_HEIGHT = 3.0
TARGET = (0.0, 0.0, 0.4)
"""Point every camera looks at."""
ORBIT_RADIUS = 2.8
ELEVATION_RANGE_DEG = (12.0, 35.0)
PLACEMENT_RADIUS = 1.3
"""Object footprints are centred within this distance of the room's axis."""
OBJECT_GAP = 0.05
MAX_PLACEMENT_TRIES = 10_000
LIGHT_DIR = (0.35, 0.25, 0.90)
"""Direction towards the light (normalised before use)."""
AMBIENT = 0.35
SHADOW_OFFSET = 2e-3
"""Shadow rays start this far along the normal; more than a sphere mesh's facet gap (0.0011 r)."""
SPHERE_SUBDIVISIONS = 4
"""Icosphere level for `mesh.ply`: 5120 faces, facets at most 0.11% of the radius inside the sphere."""
ROOM_POINT_WEIGHT = 0.05
"""Per-area weight of room and poster faces when sampling `points3d.ply`, so most points land on objects."""
HIT_EPS = 1e-6
PNG_COMPRESSION = 3
"""zlib level: about as small as the default 6 at a third of the encoding time."""
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "camera", "coins")
"""Photographs bundled with `skimage.data` (no download); 4 go on objects and 4 on posters."""
GREY_TINTS = {"camera": (0.95, 0.8, 0.55), "coins": (0.55, 0.75, 0.95)}


@dataclass
class SampleConfig:
    """A procedural sample scene; the same config always writes byte-identical files."""

    seed: int = 0
    """Random seed for the object layout, poster choice and camera phase."""
    n_views: int = 24
    """Static and dynamic monocular scenes: number of views (one per time when dynamic)."""
    width: int = 320
    """Image width in pixels."""
    height: int = 240
    """Image height in pixels."""
    dynamic: bool = False
    """Move a sphere and a box along smooth periodic paths; every frame carries its time in [0, 1]."""
    layout: Literal["monocular", "multiview"] = "monocular"
    """Dynamic only: a moving camera with one frame per time (D-NeRF style), or n_cameras fixed cameras each
    filming n_frames times (multi-view video)."""
    n_frames: int = 12
    """Dynamic multiview: frames per camera."""
    n_cameras: int = 4
    """Dynamic multiview: fixed cameras; camera `test_camera` is held out as the test camera."""
    test_camera: int = 0
    """Dynamic multiview: index of the held-out camera (N3DV holds out its central camera, cam00)."""
    test_every: int = 8
    """Static and monocular: every test_every-th view (0, 8, 16, ...) is a test view."""
    fov_degrees: float = 60.0
    """Horizontal field of view."""
    arc_degrees: float = 360.0
    """Azimuth range the cameras span; 360 is a full orbit."""
    n_points: int = 4000
    """Coloured surface points written to points3d.ply (an SfM-like initialisation)."""


class Intrinsics(NamedTuple):
    """Pinhole intrinsics in pixels; pixel (i, j) has its centre at (i + 0.5, j + 0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass(frozen=True)
class _Material:
    image: str
    """Name of a `skimage.data` function."""
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tile_m: float | None = None
    """Metres per texture repeat; None stretches the image once over each face."""


def _photo_material(image: str) -> _Material:
    """One of IMAGES stretched over each face, tinted if it is grey."""
    return _Material(image, GREY_TINTS.get(image, (1.0, 1.0, 1.0)))


_WALL_TINTS = ((0.9, 0.55, 0.45), (0.8, 0.75, 0.6), (0.6, 0.7, 0.8), (0.75, 0.8, 0.6))
_FLOOR = _Material("gravel", (0.8, 0.72, 0.6), 1.25)
_CEILING = _Material("gravel", (0.85, 0.85, 0.85), 2.0)
_ROOM_MATERIALS = (*(_Material("brick", tint, 1.5) for tint in _WALL_TINTS), _FLOOR, _CEILING)

# Box faces are ordered -x, +x, -y, +y, -z, +z. Each face's (u, v) runs along the local axes below, with u's
# sign chosen so an image reads unmirrored from outside the box (from inside for the room, hence the flip).
_U_AXIS = np.array([1, 1, 0, 0, 0, 0])
_V_AXIS = np.array([2, 2, 2, 2, 1, 1])
_U_SIGN = np.array([-1.0, 1.0, 1.0, -1.0, -1.0, 1.0])


@cache
def _mip_pyramid(material: _Material) -> tuple[np.ndarray, ...]:
    """Tinted RGB float32 image of a material and its 2×2 box-filtered reductions, down to ~8 px."""
    image = getattr(skdata, material.image)().astype(np.float32) / 255.0
    image = image[..., None] if image.ndim == 2 else image[..., :3]
    levels = [image * np.asarray(material.tint, np.float32)]
    while min(levels[-1].shape[:2]) >= 16:
        a = levels[-1][: levels[-1].shape[0] // 2 * 2, : levels[-1].shape[1] // 2 * 2]
        levels.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    for level in levels:
        level.flags.writeable = False
    return tuple(levels)


def _bilinear(image: Float[np.ndarray, "H W 3"], uv: Float[np.ndarray, "N 2"]) -> Float[np.ndarray, "N 3"]:
    """Bilinear lookup with wrap-around; u runs left to right and v bottom to top over one image."""
    h, w = image.shape[:2]
    x, y = uv[:, 0] * w - 0.5, (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    x0, y0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    x1, row0, row1 = (x0 + 1) % w, y0 * w, (y0 + 1) % h * w
    texels = image.reshape(-1, 3)
    top = np.take(texels, row0 + x0, axis=0) * (1 - fx) + np.take(texels, row0 + x1, axis=0) * fx
    bottom = np.take(texels, row1 + x0, axis=0) * (1 - fx) + np.take(texels, row1 + x1, axis=0) * fx
    return top * (1 - fy) + bottom * fy


def _sample_texture(
    material: _Material, uv: Float[np.ndarray, "N 2"], texels_per_px: Float[np.ndarray, " N"]
) -> Float[np.ndarray, "N 3"]:
    """Trilinear mip-mapped lookup: the level is log2 of the texels one pixel covers, so distant textures
    are pre-filtered instead of aliasing (which would make views disagree)."""
    levels = _mip_pyramid(material)
    lod = np.clip(np.log2(np.maximum(texels_per_px, 1e-12)), 0.0, len(levels) - 1)
    lower = np.floor(lod).astype(np.int64)
    out = np.empty((len(uv), 3), np.float64)
    for k in np.unique(lower):
        m = np.flatnonzero(lower == k)
        out[m] = _bilinear(levels[k], uv[m])
        blend = m[lod[m] > k]  # magnified texels sit at level 0 exactly and need no second lookup
        upper = _bilinear(levels[min(k + 1, len(levels) - 1)], uv[blend])
        out[blend] += (upper - out[blend]) * (lod[blend] - k)[:, None]
    return out


def _dot(a: Float[np.ndarray, "N 3"], b: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, " N"]:
    return np.einsum("ij,ij->i", a, b)


class _Surface(NamedTuple):
    normals: np.ndarray  # [N, 3] unit, facing the side rays arrive from
    faces: np.ndarray  # [N] material index
    uv: np.ndarray  # [N, 2]
    metres_per_u: np.ndarray  # [N] world length of one unit of u, for mip-level selection


@dataclass(frozen=True, eq=False)
class _Box:
    """Oriented box; `inside=True` is a room seen from within (far slab, inward normals)."""

    center: Float[np.ndarray, "3"]
    half_extents: Float[np.ndarray, "3"]
    R_world_box: Float[np.ndarray, "3 3"]
    materials: tuple[_Material, ...]
    """One per face (-x, +x, -y, +y, -z, +z)."""
    inside: bool = False

    def intersect(
        self, origins: Float[np.ndarray, "N 3"], dirs: Float[np.ndarray, "N 3"]
    ) -> Float[np.ndarray, " N"]:
        """Ray parameter of the first hit (slab method), inf on a miss."""
        o = ((origins - self.center) @ self.R_world_box).T  # [3, N]: row-wise maxima beat axis-1 reductions
        d = (dirs @ self.R_world_box).T
        half = self.half_extents[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # d = 0 gives ±inf slabs, as it should
            t1, t2 = (-half - o) / d, (half - o) / d
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
        t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
        t = t_far if self.inside else t_near
        return np.where((t_near <= t_far) & (t > HIT_EPS), t, np.inf)

    def surface(self, points: Float[np.ndarray, "N 3"]) -> _Surface:
        p = (points - self.center) @ self.R_world_box
        n = np.arange(len(p))
        axis = (np.abs(p) / self.half_extents).argmax(1)
        positive = p[n, axis] > 0
        faces = 2 * axis + positive
        outward = np.where(positive, 1.0, -1.0) * (-1.0 if self.inside else 1.0)
        normals = self.R_world_box[:, axis].T * outward[:, None]
        ua, va = _U_AXIS[faces], _V_AXIS[faces]
        tiles = np.array([np.nan if m.tile_m is None else m.tile_m for m in self.materials])[faces]
        span_u = np.where(np.isnan(tiles), 2 * self.half_extents[ua], tiles)
        span_v = np.where(np.isnan(tiles), 2 * self.half_extents[va], tiles)
        u_sign = _U_SIGN[faces] * (-1.0 if self.inside else 1.0)
        u = (u_sign * p[n, ua] + self.half_extents[ua]) / span_u
        v = (p[n, va] + self.half_extents[va]) / span_v
        return _Surface(normals, faces, np.stack([u, v], 1), span_u)

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        return None if self.inside else (self.center, float(np.linalg.norm(self.half_extents)))

    def mesh(self) -> trimesh.Trimesh:
        T_world_box = np.eye(4)
        T_world_box[:3, :3], T_world_box[:3, 3] = self.R_world_box, self.center
        box = trimesh.creation.box(extents=2 * self.half_extents, transform=T_world_box)
        if self.inside:
            box.invert()
        return box


@dataclass(frozen=True, eq=False)
class _Sphere:
    center: Float[np.ndarray, "3"]
    radius: float
    R_world_sphere: Float[np.ndarray, "3 3"]
    materials: tuple[_Material]

    def intersect(
        self, origins: Float[np.ndarray, "N 3"], dirs: Float[np.ndarray, "N 3"]
    ) -> Float[np.ndarray, " N"]:
        """Nearer root of |o + t d - c|² = r², inf on a miss."""
        oc = origins - self.center
        a, b = _dot(dirs, dirs), _dot(oc, dirs)
        disc = b * b - a * (_dot(oc, oc) - self.radius**2)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > HIT_EPS), t, np.inf)

    def surface(self, points: Float[np.ndarray, "N 3"]) -> _Surface:
        normals = points - self.center
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        local = normals @ self.R_world_sphere  # equirectangular map in the sphere's own frame
        u = 0.5 + np.arctan2(local[:, 1], local[:, 0]) / (2 * np.pi)
        v = 0.5 + np.arcsin(np.clip(local[:, 2], -1.0, 1.0)) / np.pi
        span_u = np.full(len(points), 2 * np.pi * self.radius)
        return _Surface(normals, np.zeros(len(points), np.int64), np.stack([u, v], 1), span_u)

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        return self.center, self.radius

    def mesh(self) -> trimesh.Trimesh:
        sphere = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=self.radius)
        sphere.vertices = sphere.vertices @ self.R_world_sphere.T + self.center
        return sphere


_Primitive = _Box | _Sphere


class _Rays(NamedTuple):
    """Rays o + t d, with the dot products that the bounding-sphere cull reuses for every primitive."""

    origins: np.ndarray  # [N, 3]
    dirs: np.ndarray  # [N, 3]
    dd: np.ndarray  # [N] d·d
    od: np.ndarray  # [N] o·d
    oo: np.ndarray  # [N] o·o

    @staticmethod
    def of(origins: Float[np.ndarray, "N 3"], dirs: Float[np.ndarray, "N 3"]) -> "_Rays":
        return _Rays(origins, dirs, _dot(dirs, dirs), _dot(origins, dirs), _dot(origins, origins))


def _intersect(primitive: _Primitive, rays: _Rays) -> Float[np.ndarray, " N"]:
    """`primitive.intersect`, run only on the rays that pass within its bounding sphere (most rays miss
    most objects, so this is several times faster than testing every ray)."""
    bounds = primitive.bounding_sphere()
    if bounds is None:
        return primitive.intersect(rays.origins, rays.dirs)
    center, radius = bounds
    cd = rays.dirs @ center
    # Squared distance from the centre to each ray's line: |c - o|² - ((c - o)·d)² / (d·d).
    dist2 = center @ center - 2 * (rays.origins @ center) + rays.oo - (cd - rays.od) ** 2 / rays.dd
    candidates = np.flatnonzero(dist2 <= radius**2 * (1 + 1e-6) + 1e-9)
    t = np.full(len(rays.dd), np.inf)
    t[candidates] = primitive.intersect(rays.origins[candidates], rays.dirs[candidates])
    return t


MOTION_MODEL = (
    "With w = 2*pi*t for t in [0, 1]: "
    "center(t) = center + (orbit_radius * (cos(w + orbit_phase) - cos(orbit_phase)), "
    "orbit_radius * (sin(w + orbit_phase) - sin(orbit_phase)), hop_height * (1 - cos(w)) / 2); "
    "yaw(t) = yaw + spin * sin(w), a rotation about +z."
)
"""How `SceneObject.pose_at` moves an object; also written into transforms.json."""


@dataclass(frozen=True)
class SceneObject:
    """A box or sphere (or a flat poster box) with an optional smooth periodic motion (MOTION_MODEL)."""

    name: str
    kind: Literal["box", "sphere"]
    half_extents: tuple[float, float, float]
    """Box half sizes in its own frame; (r, r, r) for a sphere."""
    center: tuple[float, float, float]
    yaw: float
    image: str
    orbit_radius: float = 0.0
    orbit_phase: float = 0.0
    hop_height: float = 0.0
    spin: float = 0.0

    def pose_at(self, t: float) -> tuple[Float[np.ndarray, "3"], Float[np.ndarray, "3 3"]]:
        """Returns (center [3], R_world_object [3, 3]) at time t."""
        w, rho, phi = 2 * np.pi * t, self.orbit_radius, self.orbit_phase
        dx, dy = rho * (np.cos(w + phi) - np.cos(phi)), rho * (np.sin(w + phi) - np.sin(phi))
        offset = (dx, dy, self.hop_height * (1 - np.cos(w)) / 2)
        yaw = self.yaw + self.spin * np.sin(w)
        c, s = np.cos(yaw), np.sin(yaw)
        return np.asarray(self.center) + offset, np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def primitive_at(self, t: float) -> _Primitive:
        center, R = self.pose_at(t)
        material = _photo_material(self.image)
        if self.kind == "sphere":
            return _Sphere(center, self.half_extents[0], R, (material,))
        return _Box(center, np.asarray(self.half_extents), R, (material,) * 6)


@dataclass(frozen=True)
class SceneLayout:
    objects: tuple[SceneObject, ...]
    """Free-standing objects; they cast shadows."""
    posters: tuple[SceneObject, ...]
    """Thin static boxes on the walls."""


def scene_layout(cfg: SampleConfig) -> SceneLayout:
    """Draws object sizes, positions, images and (if dynamic) motions from the seed."""
    rng = np.random.default_rng(cfg.seed)
    images = [str(name) for name in rng.permutation(IMAGES)]
    hx, hy, hz = rng.uniform((0.25, 0.25, 0.2), (0.38, 0.38, 0.32))
    px, py, pz = rng.uniform((0.14, 0.14, 0.35), (0.2, 0.2, 0.5))
    r_ball, r_marble = rng.uniform(0.28, 0.36), rng.uniform(0.16, 0.22)
    # (name, kind, half extents, yaw, orbit radius, hop height, spin) before placement.
    specs = [
        ("crate", "box", (hx, hy, hz), 0.0, 0.0, 0.0, 0.0),
        ("pillar", "box", (px, py, pz), rng.uniform(0, np.pi / 2), 0.2, 0.0, np.pi / 2),
        ("ball", "sphere", (r_ball,) * 3, 0.0, 0.3, 0.35, np.pi),
        ("marble", "sphere", (r_marble,) * 3, rng.uniform(0, 2 * np.pi), 0.0, 0.0, 0.0),
    ]
    placed: list[tuple[np.ndarray, float]] = []
    objects = []
    for (name, kind, half, yaw, orbit, hop, spin), image in zip(specs, images[:4], strict=True):
        # A footprint is the disc swept by the whole path (the orbit circle widened by the object), drawn
        # the same way for static scenes, so a seed's static layout is its dynamic one at t = 0.
        phase = float(rng.uniform(0, 2 * np.pi))
        reach = math.hypot(half[0], half[1]) + orbit
        for _ in range(MAX_PLACEMENT_TRIES):
            xy = rng.uniform(-PLACEMENT_RADIUS, PLACEMENT_RADIUS, 2)
            clear = all(np.hypot(*(xy - c)) > reach + r + OBJECT_GAP for c, r in placed)
            if clear and np.hypot(*xy) <= PLACEMENT_RADIUS:
                break
        else:
            raise RuntimeError(f"seed {cfg.seed}: no room left for the {name}")
        placed.append((xy, reach))
        start = xy + orbit * np.array([np.cos(phase), np.sin(phase)])
        center = (float(start[0]), float(start[1]), float(half[2]))
        motion = (orbit, phase, hop, spin) if cfg.dynamic else (0.0, phase, 0.0, 0.0)
        objects.append(SceneObject(name, kind, tuple(map(float, half)), center, float(yaw), image, *motion))
    posters = []
    for k, image in enumerate(images[4:]):
        # Poster k hangs on the wall with outward normal at yaw k·π/2; its local -x face looks into the room.
        yaw, (h, w) = k * np.pi / 2, _mip_pyramid(_photo_material(image))[0].shape[:2]
        half = (0.01, 0.7 * w / h, 0.7)
        along, depth = rng.uniform(-1.8, 1.8), ROOM_HALF_WIDTH - 0.02
        x, y = depth * np.cos(yaw) - along * np.sin(yaw), depth * np.sin(yaw) + along * np.cos(yaw)
        posters.append(SceneObject(f"poster{k}", "box", half, (float(x), float(y), 1.1), float(yaw), image))
    return SceneLayout(tuple(objects), tuple(posters))


def _room() -> _Box:
    half = np.array([ROOM_HALF_WIDTH, ROOM_HALF_WIDTH, ROOM_HEIGHT / 2])
    return _Box(np.array([0.0, 0.0, ROOM_HEIGHT / 2]), half, np.eye(3), _ROOM_MATERIALS, inside=True)


def _primitives_at(layout: SceneLayout, t: float) -> tuple[list[_Primitive], list[_Primitive]]:
    """Returns (all primitives, shadow casters) at time t."""
    casters = [o.primitive_at(t) for o in layout.objects]
    return [_room(), *(p.primitive_at(t) for p in layout.posters), *casters], casters


def scene_mesh_at(cfg: SampleConfig, t: float = 0.0) -> trimesh.Trimesh:
    """The ground-truth surface at time t as one triangle mesh (room, posters, objects)."""
    primitives, _ = _primitives_at(scene_layout(cfg), t)
    return trimesh.util.concatenate([p.mesh() for p in primitives])


def _surface_colour(
    primitive: _Primitive,
    casters: list[_Primitive],
    points: Float[np.ndarray, "N 3"],
    footprint_m: Float[np.ndarray, " N"],
    dirs: Float[np.ndarray, "N 3"] | None = None,
) -> Float[np.ndarray, "N 3"]:
    """Albedo × (ambient + (1 - ambient) max(n·l, 0) × visibility).

    footprint_m is a pixel's width across its ray (0: full-resolution texture); with the ray directions dirs,
    it is stretched by the incidence angle to choose the mip level.
    """
    surface = primitive.surface(points)
    if dirs is not None:
        cos = np.abs(_dot(surface.normals, dirs)) / np.linalg.norm(dirs, axis=1)
        footprint_m = footprint_m / np.maximum(cos, 0.2)  # grazing angles: blur a little, never alias
    albedo = np.empty((len(points), 3))
    for f in np.unique(surface.faces):
        m = surface.faces == f
        material = primitive.materials[f]
        texels_per_m = _mip_pyramid(material)[0].shape[1] / surface.metres_per_u[m]
        albedo[m] = _sample_texture(material, surface.uv[m], footprint_m[m] * texels_per_m)
    light = np.asarray(LIGHT_DIR) / np.linalg.norm(LIGHT_DIR)
    lambert = np.clip(surface.normals @ light, 0.0, None)
    lit = np.flatnonzero(lambert > 0)
    origins = points[lit] + SHADOW_OFFSET * surface.normals[lit]
    shadow_rays = _Rays.of(origins, np.broadcast_to(light, origins.shape))
    blocked = np.zeros(len(lit), bool)
    for caster in casters:
        blocked |= np.isfinite(_intersect(caster, shadow_rays))
    lambert[lit[blocked]] = 0.0
    return albedo * (AMBIENT + (1.0 - AMBIENT) * lambert)[:, None]


def _camera_rays(
    T_world_cam: Float[np.ndarray, "4 4"], K: Intrinsics
) -> tuple[Float[np.ndarray, "N 3"], Float[np.ndarray, "N 3"]]:
    """Pixel-centre rays in row-major order; directions have camera-frame z = 1 (OpenCV)."""
    u, v = np.meshgrid(np.arange(K.width) + 0.5, np.arange(K.height) + 0.5)
    d_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3)
    R_world_cv = T_world_cam[:3, :3] * np.array([1.0, -1.0, -1.0])  # OpenGL → OpenCV: flip y and z columns
    return np.broadcast_to(T_world_cam[:3, 3], d_cam.shape), d_cam @ R_world_cv.T


def render_view(
    layout: SceneLayout, T_world_cam: Float[np.ndarray, "4 4"], K: Intrinsics, t: float = 0.0
) -> tuple[UInt8[np.ndarray, "H W 3"], Float[np.ndarray, "H W"]]:
    """Renders one view of the scene at time t.

    Args:
        layout: from `scene_layout`.
        T_world_cam: camera-to-world pose, nerfstudio/OpenGL convention.
        K: pinhole intrinsics.
        t: time in [0, 1].

    Returns:
        rgb [H, W, 3] uint8 and float32 z-depth [H, W] along the optical axis (0 where nothing is hit).
    """
    primitives, casters = _primitives_at(layout, t)
    origins, dirs = _camera_rays(T_world_cam, K)
    rays = _Rays.of(origins, dirs)
    hits = np.stack([_intersect(p, rays) for p in primitives])  # [P, N]
    owner = hits.argmin(0)
    depth = hits[owner, np.arange(len(owner))]
    rgb = np.zeros((len(owner), 3))
    for i in np.unique(owner[np.isfinite(depth)]):
        m = (owner == i) & np.isfinite(depth)
        points = origins[m] + depth[m, None] * dirs[m]
        rgb[m] = _surface_colour(primitives[i], casters, points, depth[m] / K.fx, dirs[m])
    depth = np.where(np.isfinite(depth), depth, 0.0)
    image = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return image.reshape(K.height, K.width, 3), depth.reshape(K.height, K.width).astype(np.float32)


def _look_at(eye: Float[np.ndarray, "3"], target: Float[np.ndarray, "3"]) -> Float[np.ndarray, "4 4"]:
    """Camera-to-world pose (OpenGL: x right, y up, z back) at eye looking at target, world z up."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = np.stack([right, np.cross(back, right), back], 1)
    T_world_cam[:3, 3] = eye
    return T_world_cam


def _orbit(n: int, phase: float, arc_degrees: float) -> list[np.ndarray]:
    """n poses around TARGET; elevation swings twice between ELEVATION_RANGE_DEG over the arc."""
    poses = []
    for i in range(n):
        s = i / n if arc_degrees >= 360.0 else i / max(n - 1, 1)
        azimuth = phase + math.radians(arc_degrees) * s
        lo, hi = ELEVATION_RANGE_DEG
        elevation = math.radians((lo + hi) / 2 + (hi - lo) / 2 * math.cos(4 * np.pi * s))
        ce, se = math.cos(elevation), math.sin(elevation)
        direction = np.array([ce * math.cos(azimuth), ce * math.sin(azimuth), se])
        poses.append(_look_at(np.asarray(TARGET) + ORBIT_RADIUS * direction, np.asarray(TARGET)))
    return poses


class _View(NamedTuple):
    stem: str
    T_world_cam: np.ndarray
    time: float | None
    camera_index: int | None
    is_test: bool


def _views(cfg: SampleConfig) -> list[_View]:
    """Every image to render, in file order, with its split."""
    phase = float(np.random.default_rng([cfg.seed, 1]).uniform(0, 2 * np.pi))
    if cfg.dynamic and cfg.layout == "multiview":
        cameras = _orbit(cfg.n_cameras, phase, cfg.arc_degrees)
        times = [k / max(cfg.n_frames - 1, 1) for k in range(cfg.n_frames)]
        return [
            _View(f"cam{c:02d}_t{k:04d}", T, time, c, c == cfg.test_camera)
            for c, T in enumerate(cameras)
            for k, time in enumerate(times)
        ]
    poses = _orbit(cfg.n_views, phase, cfg.arc_degrees)
    times = [i / max(cfg.n_views - 1, 1) if cfg.dynamic else None for i in range(cfg.n_views)]
    return [_View(f"frame_{i:05d}", T, times[i], None, i % cfg.test_every == 0) for i, T in enumerate(poses)]


def intrinsics(cfg: SampleConfig) -> Intrinsics:
    """Square pixels, principal point at the image centre, horizontal field of view cfg.fov_degrees."""
    f = 0.5 * cfg.width / math.tan(math.radians(cfg.fov_degrees) / 2)
    return Intrinsics(f, f, cfg.width / 2, cfg.height / 2, cfg.width, cfg.height)


def _sample_points(layout: SceneLayout, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n coloured points on the t = 0 surface ([n, 3] float, [n, 3] uint8), mostly on objects."""
    primitives, casters = _primitives_at(layout, 0.0)
    meshes = [p.mesh() for p in primitives]
    first_caster = len(primitives) - len(casters)
    scale = [1.0 if i >= first_caster else ROOM_POINT_WEIGHT for i in range(len(meshes))]
    weights = np.concatenate([m.area_faces * w for m, w in zip(meshes, scale, strict=True)])
    owners = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
    mesh = trimesh.util.concatenate(meshes)
    points, face_index = trimesh.sample.sample_surface(mesh, n, weights, seed=seed)
    colours = np.zeros((n, 3))
    for i in np.unique(owners[face_index]):
        m = owners[face_index] == i
        colours[m] = _surface_colour(primitives[i], casters, points[m], np.zeros(m.sum()))
    return points, np.round(np.clip(colours, 0, 1) * 255).astype(np.uint8)


class SampleError(UserError):
    """A sample scene cannot be made as asked (bad settings or recipe, an output folder in the way)."""


def _validate(cfg: SampleConfig) -> None:
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), f.default
        expected = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            flag = f"--cfg.{f.name.replace('_', '-')}"
            raise SampleError(f"{f.name} ({flag}) must be a {type(default).__name__}, got {value!r}")
    checks = {
        "layout (--cfg.layout) must be 'monocular' or 'multiview'": cfg.layout in ("monocular", "multiview"),
        "width and height (--cfg.width, --cfg.height) must be at least 8": min(cfg.width, cfg.height) >= 8,
        "n_views, n_frames and n_points (--views, --cfg.n-frames, --cfg.n-points) must be positive": min(
            cfg.n_views, cfg.n_frames, cfg.n_points
        )
        >= 1,
        "n_cameras (--cfg.n-cameras) must be at least 2 (one is the test camera)": cfg.n_cameras >= 2,
        "test_camera (--cfg.test-camera) must be one of the cameras": 0 <= cfg.test_camera < cfg.n_cameras,
        "test_every (--cfg.test-every) must be at least 2": cfg.test_every >= 2,
        "fov_degrees (--cfg.fov-degrees) must be in (0, 180)": 0 < cfg.fov_degrees < 180,
        "arc_degrees (--cfg.arc-degrees) must be in (0, 360]": 0 < cfg.arc_degrees <= 360,
    }
    for message, ok in checks.items():
        if not ok:
            raise SampleError(message)


def load_recipe(path: Path) -> SampleConfig:
    """Reads a JSON recipe (an object of SampleConfig fields); unknown keys or bad values raise SampleError."""
    path = Path(path)
    try:
        recipe = json.loads(path.read_text())
    except FileNotFoundError:
        raise SampleError(f"{path}: recipe not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SampleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(recipe, dict):
        raise SampleError(f"{path}: a recipe is a JSON object of SampleConfig fields")
    known = [f.name for f in fields(SampleConfig)]
    for key in recipe:
        if key not in known:
            raise SampleError(f"{path}: unknown key {key!r}; known keys: {', '.join(known)}")
    floats = {f.name for f in fields(SampleConfig) if isinstance(f.default, float)}
    recipe = {k: float(v) if k in floats and type(v) is int else v for k, v in recipe.items()}
    try:
        cfg = SampleConfig(**recipe)  # a TypeError here when a runtime type checker wraps dataclasses
        _validate(cfg)
    except (TypeError, ValueError) as e:
        raise SampleError(f"{path}: {e}") from e
    return cfg


_OUTPUTS = ("images", "depth", "transforms.json", "mesh.ply", "points3d.ply")


def _is_sample_scene(out_dir: Path) -> bool:
    """Whether `out_dir` holds a sample scene this module wrote (its transforms.json names the generator)."""
    try:
        meta = json.loads((out_dir / "transforms.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and (meta.get("splat4d") or {}).get("generator") == "splat4d.data.synthetic"


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SampleError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not _is_sample_scene(out_dir):
            raise SampleError(
                f"{out_dir}: folder is not empty and holds no sample scene; splat4d never writes into it, "
                "choose another output folder"
            )
        if not overwrite:
            raise SampleError(f"{out_dir}: holds a sample scene already; pass --overwrite to replace it")
        for name in _OUTPUTS:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    for sub in ("images", "depth"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write to a hidden temporary name beside path, then rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_sample_scene(
    cfg: SampleConfig, out_dir: Path, progress: bool = True, overwrite: bool = False
) -> Path:
    """Renders a sample scene into out_dir as a nerfstudio dataset.

    Writes images/*.png, depth/*.npy (float32 z-depth), mesh.ply (surface at t = 0), points3d.ply and, last,
    transforms.json, whose `splat4d` block holds the config and every object's motion parameters.

    Args:
        cfg: the scene; validated first.
        out_dir: created if missing; must be empty unless overwrite is set.
        progress: show a progress bar.
        overwrite: replace the outputs of an earlier run in a non-empty out_dir.

    Returns:
        Path of transforms.json.
    """
    _validate(cfg)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    layout, K = scene_layout(cfg), intrinsics(cfg)
    frames, train, test = [], [], []
    for view in track(_views(cfg), description="Rendering sample scene", disable=not progress):
        rgb, depth = render_view(layout, view.T_world_cam, K, view.time or 0.0)
        frame = {
            "file_path": f"images/{view.stem}.png",
            "transform_matrix": view.T_world_cam.tolist(),
            "depth_file_path": f"depth/{view.stem}.npy",
        }
        if view.time is not None:
            frame["time"] = view.time
        if view.camera_index is not None:
            frame["camera_index"] = view.camera_index
        _write_atomic(
            out_dir / frame["file_path"],
            iio.imwrite("<bytes>", rgb, extension=".png", compress_level=PNG_COMPRESSION),
        )
        _write_atomic(out_dir / frame["depth_file_path"], _npy_bytes(depth))
        frames.append(frame)
        (test if view.is_test else train).append(frame["file_path"])
    _write_atomic(out_dir / "mesh.ply", scene_mesh_at(cfg, 0.0).export(file_type="ply"))
    points, colours = _sample_points(layout, cfg.n_points, cfg.seed)
    _write_atomic(out_dir / "points3d.ply", trimesh.PointCloud(points, colours).export(file_type="ply"))
    room_bounds = [[-ROOM_HALF_WIDTH, -ROOM_HALF_WIDTH, 0.0], [ROOM_HALF_WIDTH, ROOM_HALF_WIDTH, ROOM_HEIGHT]]
    provenance = {
        "generator": "splat4d.data.synthetic",
        "config": asdict(cfg),
        "world_up": [0.0, 0.0, 1.0],
        "room_bounds": room_bounds,
        "mesh_file_path": "mesh.ply",
        "motion_model": MOTION_MODEL,
        "objects": [asdict(o) for o in layout.objects],
        "posters": [asdict(p) for p in layout.posters],
    }
    intrinsics_json = {"fl_x": K.fx, "fl_y": K.fy, "cx": K.cx, "cy": K.cy, "w": K.width, "h": K.height}
    transforms = {
        "camera_model": "PINHOLE",
        **intrinsics_json,
        "frames": frames,
        "train_filenames": train,
        "test_filenames": test,
        "ply_file_path": "points3d.ply",
        "depth_unit_scale_factor": 1.0,
        "splat4d": provenance,
    }
    path = out_dir / "transforms.json"
    _write_atomic(path, json.dumps(transforms, indent=2).encode())
    return path
