"""Silhouettes of photos with an alpha channel (object captures such as Blender scenes): a visual-hull
initialisation and an alpha term.

Three photos of an object leave its shape almost free: any cloud of Gaussians that looks right from the three
cameras fits them, and the white (or black) background of such a capture hides floaters of its own colour from
every training view while they cover the object from the views in between. The alpha channel says where the object
is not, for every pixel of every photo, which the colours alone do not:

- *Visual hull* (as GaussianObject initialises from masks): random points where the cameras look are kept only
  where every photo that sees them has alpha ≥ `threshold`, so training starts inside the object's silhouette cone
  intersection, with the photos' mean colour there, instead of from a cube that fills the background.
- *Alpha term*: L1 between each render's accumulated opacity and the photo's alpha, so that Gaussians in front of
  the background fade wherever a photo sees through them.

Both act only when the training photos carry alpha (PNG RGBA); photos without it (and video frames) leave the
pipeline as it is.
"""

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.initialization import look_at_point


@dataclass
class SilhouetteConfig:
    """Visual-hull initialisation and alpha term, for training photos with an alpha channel."""

    weight: float = 1.0
    """Weight of the L1 between rendered opacity and the photo's alpha; 0: off."""
    hull_init: bool = True
    """Start from random points inside the visual hull of the photos' alpha when the scene has no point cloud
    (and triangulation found too few points)."""
    threshold: float = 0.5
    """Alpha at or above which a pixel belongs to the object."""
    hull_extent: float = 0.35
    """Half-size of the cube the hull points are drawn from, relative to the mean camera distance to where the
    cameras look (as `InitConfig.random_extent`)."""


def read_alpha(path: Path | object) -> Float[Tensor, "H W"] | None:
    """The alpha channel of an image file in [0, 1], or None when it has none (or is a video frame)."""
    if not isinstance(path, Path):
        return None
    try:
        image = iio.imread(path)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read the image ({exc})") from exc
    if image.ndim != 3 or image.shape[-1] not in (2, 4):
        return None
    alpha = image[..., -1].astype(np.float32) / float(
        np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1
    )
    return torch.from_numpy(alpha)


def photo_alphas(scene: SceneData, indices: list[int]) -> dict[int, Float[Tensor, "H W"]] | None:
    """Full-resolution alpha of the photos `indices`, by scene index; None unless every one has alpha."""
    alphas = {}
    for i in indices:
        alpha = read_alpha(scene.image_paths[i])
        if alpha is None:
            return None
        alphas[i] = alpha
    return alphas


def _project(
    points: Float[Tensor, "N 3"], cameras: Cameras
) -> tuple[Float[Tensor, "C N 2"], Float[Tensor, "C N"]]:
    """Pixel coordinates of `points` in each camera and their depth along its axis."""
    T = cameras.T_cam_world
    p_cam = points[None] @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    z = p_cam[..., 2]
    uv = (p_cam @ cameras.Ks.transpose(1, 2))[..., :2] / z[..., None].clamp_min(1e-9)
    return uv, z


def visual_hull_points(
    scene: SceneData, alphas: dict[int, Float[Tensor, "H W"]], n: int, cfg: SilhouetteConfig, seed: int = 0
) -> tuple[Float[Tensor, "M 3"], Float[Tensor, "M 3"]]:
    """Up to `n` random points inside the visual hull of `alphas` and the photos' mean colour at them.

    A point a photo sees must fall on alpha ≥ threshold there. A point outside a photo's frame is outside the
    object when the object lies wholly inside that photo (its border has no alpha ≥ threshold), and is left to the
    other photos when the object runs off the frame.

    Raises:
        DatasetError: no point of 50 batches lies inside every silhouette (the alpha and the poses disagree).
    """
    indices = sorted(alphas)
    cameras = scene.cameras[torch.as_tensor(indices, dtype=torch.long)]
    centre = look_at_point(cameras)
    half = cfg.hull_extent * float((cameras.centers - centre).norm(dim=-1).mean())
    # The photos may differ in size: they are stacked padded, each with its own bounds W, H ([C, 1]).
    photos = [alphas[i] for i in indices]
    stack = _padded(photos)  # [C, H, W]
    background = scene.background or (0.0, 0.0, 0.0)
    colours = _padded([_photo_rgb(scene.image_paths[i], background) for i in indices])  # [C, H, W, 3]
    W = torch.tensor([[a.shape[1]] for a in photos])
    H = torch.tensor([[a.shape[0]] for a in photos])
    border = torch.stack([torch.cat([a[0], a[-1], a[:, 0], a[:, -1]]).amax() for a in photos])
    # photos the object lies wholly inside: outside their frame is empty
    framed = border < cfg.threshold
    generator = torch.Generator().manual_seed(seed)
    kept_points, kept_colours, total = [], [], 0
    for _ in range(50):
        points = centre + (torch.rand(max(4 * n, 10_000), 3, generator=generator) * 2 - 1) * half
        uv, z = _project(points, cameras)
        px = uv.floor().long()  # pixel (i, j) covers [i, i + 1) × [j, j + 1)
        seen = (z > 0) & (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H)
        x = torch.minimum(px[..., 0].clamp_min(0), W - 1)
        y = torch.minimum(px[..., 1].clamp_min(0), H - 1)
        cam = torch.arange(len(indices))[:, None].expand_as(x)
        inside = stack[cam, y, x] >= cfg.threshold
        keep = (inside | (~seen & ~framed[:, None])).all(0) & seen.any(0)
        if keep.any():
            weight = (seen & inside)[..., None].float()[:, keep]  # [C, K, 1]
            rgb = colours[cam[:, keep], y[:, keep], x[:, keep]]  # [C, K, 3]
            kept_points.append(points[keep])
            kept_colours.append((rgb * weight).sum(0) / weight.sum(0).clamp_min(1.0))
            total += int(keep.sum())
        if total >= n:
            break
    if total == 0:
        raise DatasetError(
            f"{Path(scene.image_paths[indices[0]]).parent}: no point lies inside the alpha silhouette of every "
            "training photo; the photos' alpha and their poses disagree (set silhouette.hull_init false to "
            "start from random points)"
        )
    return torch.cat(kept_points)[:n], torch.cat(kept_colours)[:n]


def _padded(images: list[Tensor]) -> Tensor:
    """Images [H_c, W_c, ...] stacked into one [C, H, W, ...] of the largest size, zero beyond each image."""
    H = max(image.shape[0] for image in images)
    W = max(image.shape[1] for image in images)
    out = images[0].new_zeros((len(images), H, W, *images[0].shape[2:]))
    for c, image in enumerate(images):
        out[c, : image.shape[0], : image.shape[1]] = image
    return out


def _photo_rgb(path: Path | object, background: tuple[float, float, float]) -> Float[Tensor, "H W 3"]:
    """A photo as RGB in [0, 1], composited onto the scene's background as training sees it."""
    image = np.asarray(iio.imread(path))
    if image.ndim == 2:
        image = image[..., None]
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind == "u" else 1.0
    has_alpha = image.shape[-1] in (2, 4)
    colour = image[..., : image.shape[-1] - has_alpha].astype(np.float32) / scale
    rgb = np.broadcast_to(colour, (*colour.shape[:2], 3)) if colour.shape[-1] == 1 else colour
    if has_alpha:
        a = image[..., -1:].astype(np.float32) / scale
        rgb = rgb * a + np.asarray(background, dtype=np.float32) * (1.0 - a)
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))


class AlphaTerm:
    """The alpha term of the training photos at the training resolution (resized by area when it changes)."""

    def __init__(self, cfg: SilhouetteConfig) -> None:
        self.cfg = cfg
        self._full: dict[int, Float[Tensor, "H W"]] | None = None
        self._sized: dict[int, Float[Tensor, "1 h w 1"]] = {}

    def bind_views(self, scene: SceneData, indices: list[int], sizes: list[tuple[int, int]]) -> None:
        """The photos `indices` of `scene`, trained at `sizes` ((width, height) of each, in the same order)."""
        if self.cfg.weight <= 0:
            return
        if self._full is None:
            self._full = photo_alphas(scene, indices) or {}
        size_of = dict(zip(indices, sizes, strict=True))
        self._sized = {
            i: F.interpolate(a[None, None], size=size_of[i][::-1], mode="area").permute(0, 2, 3, 1)
            for i, a in self._full.items()
        }

    @property
    def active(self) -> bool:
        return self.cfg.weight > 0 and bool(self._sized)

    def loss(self, alpha: Float[Tensor, "1 h w 1"], index: int, parts: dict[str, Tensor]) -> Tensor:
        """Weighted L1 between a render's opacity and photo `index`'s alpha; its value goes into `parts`."""
        target = self._sized.get(index) if self.active else None
        if target is None:
            return alpha.new_zeros(())
        value = (alpha - target.to(alpha.device)).abs().mean()
        parts["alpha"] = value
        return self.cfg.weight * value
