"""Evaluation on held-out views: PSNR and SSIM per view and on average, side-by-side images, `metrics.json`.

LPIPS is reported as unavailable: it needs ImageNet backbone weights that splat4d never downloads (see
ECOSYSTEM.md), and a number from a random backbone would be meaningless.
"""

import json
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from rich.progress import track

from splat4d.data.dataset import ImageDataset
from splat4d.io.atomic import atomic_write_bytes, atomic_write_text
from splat4d.metrics import LPIPS_UNAVAILABLE, psnr, ssim
from splat4d.pipeline import Pipeline


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Depth [H, W] → RGB uint8 (near blue, far red; robust 1–99% range, 0 = no hit = black)."""
    valid = depth > 0
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    lo, hi = np.percentile(depth[valid], [1, 99])
    t = np.clip((depth - lo) / max(hi - lo, 1e-8), 0, 1)
    rgb = np.stack([t, 1 - np.abs(2 * t - 1), 1 - t], axis=-1)
    rgb[~valid] = 0
    return (rgb * 255).astype(np.uint8)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def evaluate(
    pipeline: Pipeline,
    dataset: ImageDataset,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
    save_images: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Render every view of `dataset`, compare with its photo, write `out_dir/metrics.json` and, when
    `save_images`, `out_dir/eval/<name>.png` (photo | render | depth).

    Returns the metrics dict that was written.
    """
    out_dir = Path(out_dir)
    views, render_seconds = [], 0.0
    indices = range(len(dataset))
    for i in track(indices, description="evaluating", disable=not progress or len(dataset) < 2):
        batch = dataset[i]
        t0 = time.perf_counter()
        out = pipeline.render_view(batch.cameras)
        render_seconds += time.perf_counter() - t0
        pred, target = out.rgb, batch.rgb
        if batch.mask is not None:
            pred = pred * batch.mask + target * (1 - batch.mask)
        name = dataset.scene.image_paths[batch.index].stem
        views.append(
            {"name": name, "psnr": float(psnr(pred, target)[0]), "ssim": float(ssim(pred, target)[0])}
        )
        if save_images:
            row = np.concatenate(
                [
                    _to_uint8(target[0]),
                    _to_uint8(pred[0]),
                    colorize_depth(out.median_depth[0, ..., 0].cpu().numpy()),
                ],
                axis=1,
            )
            atomic_write_bytes(
                out_dir / "eval" / f"{name}.png", iio.imwrite("<bytes>", row, extension=".png")
            )
    metrics: dict[str, Any] = {
        "psnr": float(np.mean([v["psnr"] for v in views])) if views else None,
        "ssim": float(np.mean([v["ssim"] for v in views])) if views else None,
        "lpips": None,
        "lpips_note": LPIPS_UNAVAILABLE,
        "num_views": len(views),
        "render_ms_per_view": 1000 * render_seconds / max(len(views), 1),
        "num_gaussians": len(pipeline.gaussians),
        **(extra or {}),
        "views": views,
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
