"""A triangle mesh of a trained scene: render depth and colour from the training cameras (and optional extra
views around the scene), fuse them into a TSDF, extract the surface with marching cubes and keep its large
connected components.

    splat4d export mesh scene/ --out scene/exports/mesh.glb

The depth is the *median* depth by default (where the transmittance crosses 0.5, as in 2DGS/RaDe-GS mesh
extraction): unlike the alpha-normalised expected depth it does not float between a foreground edge and the
background behind it. Pixels whose accumulated alpha is below `min_alpha` are not fused.
"""

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch
import trimesh
import tyro

from splat4d.cameras import Cameras
from splat4d.errors import UsageError
from splat4d.export.tsdf import TSDFVolume, fuse_open3d, keep_largest_components
from splat4d.gaussians import Gaussians
from splat4d.initialization import look_at_point
from splat4d.io.atomic import atomic_write_bytes, check_output_file

if TYPE_CHECKING:
    from splat4d.pipeline import Pipeline, PipelineSpec

MESH_SUFFIXES = (".ply", ".obj", ".glb")
GRID_CELLS = 256
"""Default voxel size: the bounds' longest side over this."""
TRUNCATION_VOXELS = 4.0
"""Default truncation, in voxels."""
BOUNDS_QUANTILE = 0.01
"""Default bounds: per axis, the 1st to 99th percentile of the opaque Gaussians' centres..."""
BOUNDS_PADDING = 0.1
"""...padded by this fraction of the box's size on each side..."""
BOUNDS_MAX_CAMERA_DISTANCES = 3.0
"""...and clipped to this many times the largest camera distance from the cameras' look-at point."""
OPAQUE = 0.1
"""Gaussians at least this opaque set the default bounds."""
FLAT_RATIO = 0.25
"""Scenes whose median smallest-to-middle scale ratio is below this count as flattened (see `auto_depth`)."""


@dataclass
class MeshExport:
    """Extract a triangle mesh from a scene made by `splat4d reconstruct`: TSDF fusion of rendered depth maps,
    marching cubes, largest components. Writes .ply, .obj or .glb (by OUT's suffix) with vertex colours."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder written by `splat4d reconstruct`."""
    out: Path | None = None
    """Mesh file (.ply, .obj or .glb); default SCENE/exports/mesh.ply."""
    voxel_size: float | None = None
    """TSDF voxel edge in world units; default: the bounds' longest side / 256."""
    truncation: float | None = None
    """TSDF truncation distance in world units; default: 4 voxels."""
    bounds: tuple[float, float, float, float, float, float] | None = None
    """Region to mesh (xmin ymin zmin xmax ymax zmax); default: the opaque Gaussians' 1-99th percentile box,
    padded by 10%, clipped around the training cameras' look-at point."""
    extra_views: int = 0
    """Cameras added on an orbit around the look-at point (at the training cameras' median distance and
    elevation range), besides the training cameras."""
    depth: Literal["auto", "planar", "median", "expected"] = "auto"
    """Rendered depth to fuse: planar (where each pixel's ray meets the plane of the composited Gaussian normals;
    3D scenes), median (the Gaussian where transmittance crosses 0.5), or the alpha-normalised expected depth of
    the Gaussian centres. auto: planar for 3D scenes of flattened Gaussians (as `--preset mesh` trains), else
    median."""
    min_alpha: float = 0.5
    """Pixels with less accumulated opacity are not fused."""
    backend: Literal["torch", "open3d"] = "torch"
    """TSDF implementation: our torch grid, or open3d's UniformTSDFVolume (needs `pip install splat4d[o3d]`)."""
    keep_components: int = 0
    """Keep only this many connected components, the largest by face count (0: all)."""
    min_component_faces: int = 50
    """Drop connected components with fewer faces (floaters)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    overwrite: bool = False
    """Replace an existing OUT."""

    def output_path(self) -> Path:
        return self.out if self.out is not None else self.scene / "exports" / "mesh.ply"

    def main(self, pipelines: "dict[str, PipelineSpec]") -> Path:
        """Run the export. `pipelines` is the `pipelines.PIPELINES` registry (passed in by the CLI, which is the
        only core module allowed to import it)."""
        from splat4d.reconstruct import load_trained, resolve_device

        out = self.output_path()
        if out.suffix.lower() not in MESH_SUFFIXES:
            raise UsageError(f"--out {out}: unknown mesh format; use one of {', '.join(MESH_SUFFIXES)}")
        check_output_file(out, self.overwrite)
        device = resolve_device(self.device)
        trained = load_trained(self.scene, pipelines, device)
        trained.refuse_streamed(self.scene, "export mesh")
        scene = trained.scene
        indices = scene.train_indices or list(range(len(scene.cameras)))
        mesh = extract_mesh(trained.pipeline, scene.subset(indices).to(device), self)
        if len(mesh.faces) == 0:
            raise UsageError(f"{self.scene}: no surface found; try --bounds, --min-alpha or --depth")
        data = mesh.export(file_type=out.suffix.lower()[1:])
        atomic_write_bytes(out, data.encode() if isinstance(data, str) else data)
        print(f"{out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
        return out


def default_bounds(means: torch.Tensor, opacities: torch.Tensor, cameras: Cameras) -> np.ndarray:
    """The region to mesh when none is given (see `MeshExport.bounds`). Returns (xmin, ..., zmax)."""
    centre = look_at_point(cameras.to("cpu")).double()
    reach = BOUNDS_MAX_CAMERA_DISTANCES * float((cameras.centers.cpu().double() - centre).norm(dim=-1).max())
    means = means.detach().cpu().double()
    opaque = means[opacities.detach().cpu() >= OPAQUE]
    points = opaque if len(opaque) >= 16 else means
    if len(points) < 4:
        half = reach / BOUNDS_MAX_CAMERA_DISTANCES
        return torch.cat([centre - half, centre + half]).numpy()
    q = torch.tensor([BOUNDS_QUANTILE, 1 - BOUNDS_QUANTILE], dtype=torch.float64)
    lo, hi = torch.quantile(points, q, dim=0)
    pad = BOUNDS_PADDING * (hi - lo).clamp_min(1e-6)
    lo = torch.maximum(lo - pad, centre - reach)
    hi = torch.minimum(hi + pad, centre + reach)
    return torch.cat([lo, hi]).numpy()


def orbit_cameras(cameras: Cameras, n: int, centre: torch.Tensor | None = None) -> Cameras:
    """n cameras looking at `centre` (default: the look-at point), spread in azimuth by the golden angle, at the
    given cameras' median distance and within their elevation range; intrinsics and image size of the first
    camera."""
    T = cameras.T_world_cam.detach().cpu().double()
    centre = (look_at_point(cameras.to("cpu")) if centre is None else centre.cpu()).double()
    up = torch.nn.functional.normalize(-T[:, :3, 1].mean(0), dim=0)  # OpenCV y points down
    offsets = T[:, :3, 3] - centre
    radius = float(offsets.norm(dim=-1).median())
    elevation = torch.asin((torch.nn.functional.normalize(offsets, dim=-1) @ up).clamp(-1, 1))
    e1 = torch.nn.functional.normalize(torch.linalg.cross(up, offsets[0]), dim=0)
    e2 = torch.linalg.cross(up, e1)
    golden = math.pi * (3 - math.sqrt(5))
    poses = []
    for i in range(n):
        az = i * golden
        el = float(elevation.min() + (elevation.max() - elevation.min()) * (i + 0.5) / n)
        direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up
        eye = centre + radius * direction
        z = torch.nn.functional.normalize(centre - eye, dim=0)
        x = torch.nn.functional.normalize(torch.linalg.cross(-up, z), dim=0)
        y = torch.linalg.cross(z, x)
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = torch.stack([x, y, z], 1)
        pose[:3, 3] = eye
        poses.append(pose)
    dtype, device = cameras.T_world_cam.dtype, cameras.device
    T_world_cam = torch.stack(poses).to(device, dtype) if poses else cameras.T_world_cam[:0]
    first = cameras[0]
    return Cameras(T_world_cam, first.Ks.expand(n, 3, 3).clone(), first.width, first.height)


@torch.no_grad()
def render_depths(
    pipeline: "Pipeline", cameras: Cameras, depth: str = "median", min_alpha: float = 0.5
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each view's depth [H, W] (0 where alpha < min_alpha or nothing was hit) and colour [H, W, 3], rendered one
    view at a time at its camera's size (the views may differ in size).

    `depth` is "median", "expected" or "planar" (`RenderOutput.planar_depth`; 3D scenes only)."""
    from splat4d.render import render

    if depth == "planar" and not isinstance(pipeline.gaussians, Gaussians):
        raise ValueError("render_depths: planar depth needs a 3D scene; use median or expected depth")
    depths, rgbs = [], []
    for c in range(len(cameras)):
        if depth == "planar":
            with torch.no_grad():
                out = render(pipeline.gaussians, cameras[c], replace(pipeline.settings(), normals=True))
            d = out.planar_depth[0, ..., 0]
        else:
            out = pipeline.render_view(cameras[c])
            d = (out.median_depth if depth == "median" else out.depth)[0, ..., 0]
        depths.append(torch.where(out.alpha[0, ..., 0] >= min_alpha, d, torch.zeros_like(d)))
        rgbs.append(out.rgb[0].clamp(0, 1))
    return depths, rgbs


def auto_depth(gaussians: torch.nn.Module) -> str:
    """The depth `MeshExport.depth = "auto"` fuses: "planar" when the scene is 3D and its Gaussians are discs (the
    median ratio of smallest to middle scale below `FLAT_RATIO`), else "median". A round Gaussian's shortest axis is
    an arbitrary direction, so planar depth helps only once training has flattened them (measured on the procedural
    scene: F-score 0.57 planar vs 0.61 median for `fast`, whose ratio is 0.48; 0.985 planar for `mesh`, 0.07)."""
    if not isinstance(gaussians, Gaussians) or len(gaussians) == 0:
        return "median"
    scales = gaussians.scales.detach().sort(dim=-1).values
    ratio = float((scales[:, 0] / scales[:, 1].clamp_min(1e-12)).median())
    return "planar" if ratio < FLAT_RATIO else "median"


def extract_mesh(pipeline: "Pipeline", cameras: Cameras, cfg: MeshExport) -> trimesh.Trimesh:
    """The mesh of a trained pipeline seen from `cameras` (plus `cfg.extra_views`), with vertex colours.

    Uses cfg's extraction settings (voxel_size, truncation, bounds, extra_views, depth, min_alpha, backend,
    keep_components, min_component_faces); its scene, out and overwrite are not read.
    """
    gaussians = pipeline.gaussians
    if cfg.bounds is not None:
        bounds = np.asarray(cfg.bounds, dtype=np.float64)
    else:
        bounds = default_bounds(gaussians.means, gaussians.opacities, cameras)
    voxel = cfg.voxel_size or float((bounds[3:] - bounds[:3]).max()) / GRID_CELLS
    truncation = cfg.truncation or TRUNCATION_VOXELS * voxel
    if cfg.extra_views > 0:
        cameras = Cameras.cat([replace(cameras, times=None), orbit_cameras(cameras, cfg.extra_views)])
    depth = cfg.depth if cfg.depth != "auto" else auto_depth(gaussians)
    depths, rgbs = render_depths(pipeline, cameras, depth, cfg.min_alpha)
    if cfg.backend == "open3d":
        mesh = fuse_open3d(depths, cameras, bounds, voxel, truncation, rgbs)
    else:
        volume = TSDFVolume(bounds, voxel, truncation, device=depths[0].device)
        volume.integrate_cameras(depths, cameras, rgbs)
        mesh = volume.extract_mesh()
    return keep_largest_components(mesh, cfg.keep_components, cfg.min_component_faces)
