"""Initial Gaussians for a scene: from its point cloud (SfM or the dataset's), or random inside the region the
cameras look at; and the scene's scale, which sets learning rates and densification thresholds."""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.gaussians import Gaussians, Gaussians4D


@dataclass
class InitConfig:
    """How the first Gaussians are placed."""

    sh_degree: int = 3
    """Highest spherical-harmonics degree of view-dependent colour."""
    init_opacity: float = 0.1
    init_scale: float = 1.0
    """Initial size as a multiple of the mean distance to the 3 nearest neighbours."""
    random: bool = False
    """Ignore the scene's point cloud and start from random points."""
    random_points: int = 100_000
    """Number of random points when the scene has no point cloud (or `random` is set)."""
    random_extent: float = 0.35
    """Random points fill a cube centred where the cameras look, with this half-size relative to the mean
    camera distance to that point (NeRF-synthetic: about 1.4 for cameras at distance 4)."""
    seed: int = 0


def scene_scale(cameras: Cameras) -> float:
    """1.1 × the largest distance of a camera centre from their mean (3DGS's normalisation radius)."""
    centers = cameras.centers
    radius = (centers - centers.mean(dim=0)).norm(dim=-1).max()
    return float(1.1 * radius.clamp_min(1e-6))


def scene_extent(scene: SceneData) -> float:
    """The scene's length unit for density control and the regularisers (clone or split, prune by size, the sparse
    pipeline's unpooling and co-pruning distances): `scene_scale` of its cameras, or for a forward-facing capture
    with depth bounds (LLFF's per-image near and far, `metadata["near"]`) at least the nearest bound of all its
    images (as LLFF loaders rescale scenes by the least near bound of all images, held-out ones included). Such a rig
    spans a few units while what it films starts tens of units away (fern: cameras 5.7 units round their mean, the
    scene 17 to 80 units deep), so distances relative to the rig alone are a fraction of the scene's detail: the
    sparse pipeline's unpooling, whose gap threshold is relative to this unit, added its cap of Gaussians at every
    pass (fern with 3 views: 435 Gaussians at step 700, 70k at step 1500)."""
    extent = scene_scale(scene.cameras)
    near = scene.metadata.get("near")
    return max(extent, float(min(near))) if near else extent


def look_at_point(cameras: Cameras) -> Float[Tensor, "3"]:
    """The point closest, in least squares, to every camera's optical axis (the centre of an orbit capture).

    Falls back to the centres' mean plus the mean viewing direction when the axes are (nearly) parallel.
    """
    origins = cameras.centers.double()
    dirs = torch.nn.functional.normalize(cameras.T_world_cam[:, :3, 2].double(), dim=-1)
    projectors = torch.eye(3, dtype=torch.float64) - dirs[:, :, None] * dirs[:, None, :]
    A = projectors.sum(0)
    b = (projectors @ origins[:, :, None]).sum(0)[:, 0]
    if torch.linalg.cond(A) > 1e6:
        return (origins.mean(0) + dirs.mean(0)).float()
    return torch.linalg.solve(A, b).float()


def _initial_points(scene: SceneData, cfg: InitConfig) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """The scene's points and colours, or `cfg.random_points` random ones where the cameras look."""
    if scene.points is not None and len(scene.points) >= 4 and not cfg.random:
        points = torch.as_tensor(np.asarray(scene.points), dtype=torch.float32)
        colors = scene.point_colors if scene.point_colors is not None else np.full(points.shape, 0.5)
        return points, torch.as_tensor(np.asarray(colors), dtype=torch.float32)
    generator = torch.Generator().manual_seed(cfg.seed)
    if (
        "near" in scene.metadata and "far" in scene.metadata
    ):  # forward-facing (LLFF): the cameras' depth range
        return frustum_points(scene, cfg.random_points, generator), torch.rand(
            cfg.random_points, 3, generator=generator
        )
    centre = look_at_point(scene.cameras)
    distance = (scene.cameras.centers - centre).norm(dim=-1).mean()
    half = cfg.random_extent * distance
    points = centre + (torch.rand(cfg.random_points, 3, generator=generator) * 2 - 1) * half
    return points, torch.rand(cfg.random_points, 3, generator=generator)


def frustum_points(scene: SceneData, n: int, generator: torch.Generator) -> Float[Tensor, "N 3"]:
    """`n` random points seen by the training cameras between their near and far bounds (`metadata["near"]`,
    `["far"]`, per image, as LLFF gives them): a random training camera, a random pixel, a depth uniform in inverse
    depth (disparity) between its bounds, as forward-facing scenes are sampled (NeRF's NDC rays). Random points in
    a box round the cameras' common look-at point, the rule for captures around an object, would land a metre in
    front of cameras whose scene starts tens of units away, since forward-facing optical axes barely meet."""
    train = torch.as_tensor(scene.train_indices, dtype=torch.long)
    cams = scene.cameras[train]
    near = torch.as_tensor(scene.metadata["near"], dtype=torch.float32)[train]
    far = torch.as_tensor(scene.metadata["far"], dtype=torch.float32)[train]
    which = torch.randint(len(cams), (n,), generator=generator)
    size = cams.size_tensor()[which]  # each point's camera's (width, height)
    u = torch.rand(n, generator=generator) * size[:, 0]
    v = torch.rand(n, generator=generator) * size[:, 1]
    K = cams.Ks[which]
    rays = torch.stack([(u - K[:, 0, 2]) / K[:, 0, 0], (v - K[:, 1, 2]) / K[:, 1, 1], torch.ones(n)], dim=-1)
    s = torch.rand(n, generator=generator)
    depth = 1.0 / (s / far[which] + (1 - s) / near[which])
    points_cam = rays * depth[:, None]
    T = cams.T_world_cam[which]
    return (T[:, :3, :3] @ points_cam[:, :, None])[:, :, 0] + T[:, :3, 3]


def init_gaussians(scene: SceneData, cfg: InitConfig) -> Gaussians:
    """Gaussians at the scene's points (with their colours), or `cfg.random_points` random ones."""
    points, rgb = _initial_points(scene, cfg)
    return Gaussians.from_points(
        points, rgb, sh_degree=cfg.sh_degree, init_opacity=cfg.init_opacity, init_scale=cfg.init_scale
    )


@dataclass
class Init4DConfig(InitConfig):
    """How the first 4D Gaussians are placed: the 3D initial points, each repeated at evenly spread times."""

    time_copies: int = 4
    """Each point becomes this many Gaussians, at times (k + 0.5) / time_copies."""
    init_time_scale: float = 0.25
    """Temporal scale (standard deviation in normalised time) of the initial Gaussians; about one copy's share
    of the sequence, so that together they cover it."""
    still_copy: bool = False
    """Each point also becomes one still Gaussian at t = 0.5 alive over the whole sequence (temporal scale
    `still_time_scale`): a background seen by every view from the start, rather than by a quarter of them per
    time copy; the optimizer fades whichever copy the views do not need."""
    still_time_scale: float = 2.0
    """Temporal scale of the still copies (normalised time): 2 keeps them above 96% of their opacity over [0, 1]."""
    time_degree: int = 1
    """Colour varies in time with cos(2π m t / time_period), m = 0..time_degree."""
    time_period: float = 2.0
    """Period of the time basis; 2 makes it a non-periodic half-cosine basis on [0, 1]."""
    rotation: Literal["quats", "rotors"] = "quats"
    """4D rotation as a left/right quaternion pair (Yang et al.) or a rotor (Duan et al.)."""


def init_gaussians_4d(scene: SceneData, cfg: Init4DConfig) -> Gaussians4D:
    points, rgb = _initial_points(scene, cfg)
    if cfg.time_copies < 1:
        raise ValueError(f"Init4DConfig.time_copies must be at least 1, got {cfg.time_copies}")
    times = (torch.arange(cfg.time_copies, dtype=torch.float32) + 0.5) / cfg.time_copies
    n, copies = len(points), cfg.time_copies + int(cfg.still_copy)
    if cfg.still_copy:
        times = torch.cat([times, torch.tensor([0.5])])
    gaussians = Gaussians4D.from_points(
        points.repeat(copies, 1),
        rgb.repeat(copies, 1),
        times.repeat_interleave(n),
        sh_degree=cfg.sh_degree,
        time_degree=cfg.time_degree,
        init_opacity=cfg.init_opacity,
        init_scale=cfg.init_scale,
        init_time_scale=cfg.init_time_scale,
        rotation=cfg.rotation,
        time_period=cfg.time_period,
    )
    # `from_points` sizes by 3-NN distance over all copies, i.e. 0 between a point's copies: use the 3D sizes.
    base = Gaussians.from_points(points, rgb, sh_degree=0, init_scale=cfg.init_scale)
    with torch.no_grad():
        gaussians.params["log_scales4"][:, :3] = base.params["log_scales"].repeat(copies, 1)
        if cfg.still_copy:
            gaussians.params["log_scales4"][cfg.time_copies * n :, 3] = math.log(cfg.still_time_scale)
    return gaussians
