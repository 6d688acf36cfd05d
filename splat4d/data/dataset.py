"""`ImageDataset`: a scene's images, downscaled (image files held in memory, video frames decoded on demand);
`TrainSampler`: resumable order.

Pixel convention (the one `splat4d.cameras` states): intrinsics map camera points to pixel coordinates in which
pixel (i, j) covers [i, i + 1) x [j, j + 1), so its centre is at (i + 0.5, j + 0.5) and the image spans
[0, W] x [0, H]. Resizing an image from W to W' pixels maps the continuous coordinate u to u W' / W (the image
edges stay the edges), so scaling the first row of K by W' / W and the second by H' / H is exact, whether or
not the sizes divide evenly, provided the resampling filter is centred the same way (both filters used here are).
"""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from PIL import Image
from rich.progress import track
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData, VideoFrame
from splat4d.data.checks import IMAGE_ERRORS
from splat4d.data.orientation import size_mismatch
from splat4d.data.video import VideoFrameReader
from splat4d.errors import UsageError, one_line

PROGRESS_MIN_IMAGES = 20
"""Show a progress bar while decoding more images than this."""
MASK_THRESHOLD = 0.5
"""Mask pixels brighter than this (in [0, 1]) are used; darker ones are not."""


class Batch(NamedTuple):
    """One training or evaluation view."""

    cameras: Cameras
    """The view's camera (one), at its downscaled size."""
    rgb: Float[Tensor, "1 H W 3"]
    """Image in [0, 1], composited onto the scene's background when it had an alpha channel."""
    mask: Float[Tensor, "1 H W 1"] | None
    """Weight of each pixel in [0, 1] (1: use; fractional along mask edges after downscaling); None: all 1."""
    index: int
    """Index of the view in the scene (`SceneData.image_paths`), not in the dataset."""


def downscaled_size(width: int, height: int, downscale: int) -> tuple[int, int]:
    """Image size at 1/`downscale` resolution: floor division, at least one pixel."""
    if downscale < 1:
        raise UsageError(f"--data.downscale: must be a positive integer, got {downscale}")
    return max(1, width // downscale), max(1, height // downscale)


def remaining_downscale(scene: SceneData, downscale: int) -> int:
    """How much more to downscale the scene's images for 1/`downscale` of the original resolution, when a reader
    already read them downsampled by `scene.metadata["prescaled"]` (LLFF's images_<k>/): never below 1."""
    if downscale < 1:
        raise UsageError(f"--data.downscale: must be a positive integer, got {downscale}")
    return max(1, downscale // int(scene.metadata.get("prescaled", 1)))


def working_downscale(scene: SceneData, downscale: int, max_size: int | None = None) -> int:
    """The downscale a run trains and evaluates at: `downscale`, raised to the smallest factor at which the
    longest side of every image is at most `max_size` pixels (`DataConfig.max_size`; None or 0: `downscale` as it
    is).

    Raises:
        UsageError: `downscale` or `max_size` is below 1.
    """
    if downscale < 1:
        raise UsageError(f"--data.downscale: must be a positive integer, got {downscale}")
    if not max_size:  # None or 0: no limit
        return downscale
    if max_size < 1:
        raise UsageError(f"--data.max-size: must be a positive number of pixels, got {max_size}")
    longest = max(max(w, h) for w, h in scene.cameras.sizes)
    factor = downscale
    while max(1, longest // remaining_downscale(scene, factor)) > max_size:
        factor += 1
    return factor


def resize_cameras(cameras: Cameras, width: int | Sequence[int], height: int | Sequence[int]) -> Cameras:
    """The same cameras at new image sizes (one for all, or one per camera): each K's rows scaled by its new/old
    size per axis (exact, see module doc)."""
    old = cameras.size_tensor(cameras.Ks.dtype)
    resized = Cameras(cameras.T_world_cam, cameras.Ks, width, height, cameras.times)
    Ks = cameras.Ks.clone()
    Ks[:, :2] *= (resized.size_tensor(cameras.Ks.dtype) / old)[:, :, None]
    return replace(resized, Ks=Ks)


def _resize(image: Float[Tensor, "C H W"], width: int, height: int) -> Float[Tensor, "C h w"]:
    """Antialiased resize. Box (area) averaging when the size divides evenly, else antialiased bilinear
    (`align_corners=False`), whose sample positions follow the exact u W' / W mapping."""
    _, H, W = image.shape
    if (width, height) == (W, H):
        return image
    if W % width == 0 and H % height == 0:
        return F.interpolate(image[None], size=(height, width), mode="area")[0]
    return F.interpolate(
        image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0.0, 1.0)


def _to_unit_float(array: np.ndarray, path: Path | VideoFrame) -> np.ndarray:
    """Pixel values as float32 in [0, 1], from 8- or 16-bit integers, booleans or floats."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DatasetError(f"{path}: has pixels that are NaN or infinite; fix or replace the image")
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise DatasetError(f"{path}: unsupported pixel type {array.dtype}; save it as 8- or 16-bit PNG or JPEG")


def _read(path: Path) -> np.ndarray:
    try:
        if Path(path).stat().st_size == 0:
            raise DatasetError(f"{path}: empty file; replace or remove it")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not found; restore it or remove it from the dataset") from exc
    try:
        array = iio.imread(path)
    except (*IMAGE_ERRORS, RuntimeError, Image.DecompressionBombError) as exc:
        reason = "the file is truncated" if "truncated" in str(exc) else one_line(str(exc))[:200]
        raise DatasetError(f"{path}: not a readable image ({reason}); replace or remove it") from exc
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise DatasetError(
            f"{path}: unsupported image layout {array.shape} (expected H x W x 1-4 channels); save it as a "
            "single image (not an animation or a multi-page file)"
        )
    return array


def _check_size(
    array: np.ndarray, path: Path | VideoFrame, width: int, height: int, what: str = "image"
) -> None:
    h, w = array.shape[:2]
    if (w, h) != (width, height):
        hint = "fix the camera or the image"
        if what == "mask":
            hint = "fix the mask: it must match its photo as training reads it (upright, for photos splat4d poses)"
        raise size_mismatch(path, (w, h), (width, height), "the camera says", hint)


def _quantise(image: Float[Tensor, "C H W"]) -> UInt8[Tensor, "H W C"]:
    return (image * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


class ImageDataset:
    """The images of a subset of a scene, downscaled; image files decoded once and kept in memory as uint8,
    video frames (`VideoFrame`) decoded again on every access.

    Each image has its own camera and size (`scene.cameras.widths`, `heights`): a scene may mix portrait and
    landscape photos, or several cameras. Images are read as stored: readers decide how a file's EXIF orientation
    is handled (`splat4d.data.orientation`), and every image must match its own camera.

    Images with an alpha channel are composited onto `scene.background` (black when None) before
    downscaling; grey images are repeated to RGB. Masks (`scene.mask_paths`) are thresholded at
    MASK_THRESHOLD at full resolution and then downscaled like the images, so edge pixels get fractional
    weights.

    Memory: the downscaled image files (H × W × 3 bytes each) and masks, plus for video frames only the
    bounded state of one `VideoFrameReader` (a few open videos and frames; see its docstring), whatever the
    number of frames. Video frames are checked when they are first read, not here.

    Args:
        scene: the scene; every image must have its camera's size.
        indices: which of the scene's images to load, e.g. `scene.train_indices`.
        downscale: load at 1/downscale resolution (floor division of each size; intrinsics scaled exactly).
        device: where `__getitem__` puts the batch.

    Raises:
        DatasetError: an image or mask is unreadable or not its camera's size (for video frames: when read).
    """

    def __init__(
        self, scene: SceneData, indices: list[int], downscale: int = 1, device: torch.device | str = "cpu"
    ) -> None:
        n_scene = len(scene.image_paths)
        bad = [i for i in indices if not 0 <= i < n_scene]
        if bad:
            raise IndexError(f"ImageDataset: indices {bad[:5]} out of range for a scene of {n_scene} images")
        self.scene = scene
        self.downscale = downscale
        self.device = torch.device(device)
        self.indices = list(indices)
        full = scene.subset(self.indices)
        factor = remaining_downscale(scene, downscale)
        sizes = [downscaled_size(w, h, factor) for w, h in full.sizes]
        self._cameras = resize_cameras(full, [w for w, _ in sizes], [h for _, h in sizes])
        background = scene.background or (0.0, 0.0, 0.0)
        self._background = torch.tensor(background, dtype=torch.float32)[:, None, None]
        self.frames = VideoFrameReader()
        """Decodes the video frames among the images, on demand."""

        # Image files are decoded now, one uint8 tensor each; video frames (None) when read.
        files = [k for k, i in enumerate(self.indices) if not isinstance(scene.image_paths[i], VideoFrame)]
        self._images: list[UInt8[Tensor, "h w 3"] | None] = [None] * len(self.indices)
        steps = track(
            files,
            description=f"Decoding {len(files)} images",
            disable=len(files) <= PROGRESS_MIN_IMAGES,
            transient=True,
        )
        for k in steps:
            path = scene.image_paths[self.indices[k]]
            self._images[k] = self._prepare(_read(path), path, k)
        self._masks = [self._load_mask(k) for k in range(len(self.indices))]

    def _prepare(self, array: np.ndarray, source: Path | VideoFrame, k: int) -> UInt8[Tensor, "h w 3"]:
        """Decoded image `k` of the subset (H x W x 1-4 channels) as downscaled RGB, composited onto the
        background."""
        i = self.indices[k]
        _check_size(array, source, self.scene.cameras.widths[i], self.scene.cameras.heights[i])
        image = torch.from_numpy(_to_unit_float(array, source)).permute(2, 0, 1)
        has_alpha = image.shape[0] in (2, 4)
        color = (image[:-1] if has_alpha else image).expand(3, -1, -1)
        if has_alpha:  # straight (not premultiplied) alpha, as PNG stores it
            alpha = image[-1:]
            color = color * alpha + self._background * (1.0 - alpha)
        return _quantise(_resize(color, self._cameras.widths[k], self._cameras.heights[k]))

    def _image(self, k: int) -> UInt8[Tensor, "h w 3"]:
        image = self._images[k]
        if image is not None:
            return image
        frame = self.scene.image_paths[self.indices[k]]
        assert isinstance(frame, VideoFrame)
        return self._prepare(self.frames.read(frame), frame, k)

    def _load_mask(self, k: int) -> UInt8[Tensor, "h w 1"] | None:
        scene, i = self.scene, self.indices[k]
        path = None if scene.mask_paths is None else scene.mask_paths[i]
        if path is None:
            return None
        array = _read(path)
        _check_size(array, path, scene.cameras.widths[i], scene.cameras.heights[i], "mask")
        grey = _to_unit_float(array, path)
        # Colour masks count by their mean over RGB; a mask's own alpha channel is ignored.
        grey = grey[..., :3].mean(-1) if grey.shape[-1] >= 3 else grey[..., 0]
        binary = torch.from_numpy((grey > MASK_THRESHOLD).astype(np.float32))[None]
        return _quantise(_resize(binary, self._cameras.widths[k], self._cameras.heights[k]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Batch:
        """The i-th view of the subset (0 <= i < len), as float tensors on the device."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"ImageDataset: index {i} out of range for {len(self)} images")
        i %= len(self)
        rgb = self._image(i).to(self.device, non_blocking=True).float().div_(255.0)[None]
        mask = self._masks[i]
        if mask is not None:
            mask = mask.to(self.device, non_blocking=True).float().div_(255.0)[None]
        return Batch(cameras=self._cameras[i].to(self.device), rgb=rgb, mask=mask, index=self.indices[i])

    @property
    def cameras(self) -> Cameras:
        """All the subset's cameras, each at its downscaled size, on the device."""
        return self._cameras.to(self.device)

    @property
    def width(self) -> int:
        """The downscaled width shared by every image (`MixedSizesError` when they differ: use `cameras.widths`)."""
        return self._cameras.width

    @property
    def height(self) -> int:
        """The downscaled height shared by every image (see `width`)."""
        return self._cameras.height


class TrainSampler:
    """An endless sequence of dataset positions 0..n-1: a fresh random permutation every epoch.

    The permutation of epoch e depends only on (seed, e), so `state_dict()` (seed, epoch and position within
    the epoch) restores the exact sequence in a new sampler, and samplers with the same seed on several ranks
    give one shared order: each takes a step's views with `take` and renders its own slice of them.

    Args:
        n: dataset size (at least 1).
        seed: random seed (non-negative).
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"TrainSampler: needs at least one image, got n={n}")
        if seed < 0:
            raise ValueError(f"TrainSampler: seed must be non-negative, got {seed}")
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.n).tolist()

    def __iter__(self) -> "TrainSampler":
        return self

    def __next__(self) -> int:
        if self.position == self.n:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position]
        self.position += 1
        return index

    def take(self, count: int) -> list[int]:
        """The next `count` positions of the sequence (across epoch boundaries): one step's views.

        Raises:
            ValueError: `count` is less than 1.
        """
        if count < 1:
            raise ValueError(f"TrainSampler: take needs at least one view, got {count}")
        return [next(self) for _ in range(count)]

    def state_dict(self) -> dict[str, int]:
        """Everything needed to continue the sequence exactly (plain ints, safe for `torch.save`)."""
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a `state_dict()`; the dataset size must match.

        Raises:
            ValueError: the state was saved for a different number of images, or is malformed.
        """
        if int(state["n"]) != self.n:
            raise ValueError(f"TrainSampler: state is for {state['n']} images, this sampler has {self.n}")
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.n:
            raise ValueError(f"TrainSampler: invalid state epoch={epoch} position={position}")
        self.seed, self.epoch, self.position = int(state["seed"]), epoch, position
        self._order = self._permutation(epoch)
