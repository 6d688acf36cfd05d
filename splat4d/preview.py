"""A quick look at a scene folder: its point cloud splatted through the rasterizer, beside the photos.

Used by `splat4d demo` until reconstruction lands; it exercises the whole render path (SH, projection, tiles,
compositing, depth) on the sample scene's points.
"""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.gaussians import Gaussians
from splat4d.io.atomic import atomic_write_bytes
from splat4d.render import RenderSettings, render


def _colorize_depth(depth: np.ndarray) -> np.ndarray:
    valid = depth > 0
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    lo, hi = np.percentile(depth[valid], [1, 99])
    t = np.clip((depth - lo) / max(hi - lo, 1e-8), 0, 1)
    rgb = np.stack([t, 1 - np.abs(2 * t - 1), 1 - t], axis=-1)  # near = blue, far = red
    rgb[~valid] = 0
    return (rgb * 255).astype(np.uint8)


def render_points_preview(scene_dir: Path, out_png: Path, views: int = 3, device: str = "cpu") -> Path:
    """Write a grid (one row per test view: photo | splatted points | median depth) to `out_png`."""
    scene = read_nerfstudio(scene_dir)
    if scene.points is None:
        raise ValueError(f"{scene_dir}: the scene has no point cloud to preview")
    rgb = scene.point_colors if scene.point_colors is not None else np.full_like(scene.points, 0.5)
    gaussians = Gaussians.from_points(torch.from_numpy(scene.points), torch.from_numpy(rgb), sh_degree=0)
    with torch.no_grad():
        gaussians.params["opacity_logits"].fill_(4.0)  # opaque splats: a preview, not an optimised scene
    gaussians = gaussians.to(device)
    rows = []
    for i in scene.test_indices[:views]:
        cams = scene.cameras[i].to(device)
        with torch.no_grad():
            out = render(gaussians, cams, RenderSettings())
        photo = iio.imread(scene.image_paths[i])[..., :3]
        splats = (out.rgb[0].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
        depth = _colorize_depth(out.median_depth[0, ..., 0].cpu().numpy())
        rows.append(np.concatenate([photo, splats, depth], axis=1))
    atomic_write_bytes(out_png, iio.imwrite("<bytes>", np.concatenate(rows, axis=0), extension=".png"))
    return out_png
