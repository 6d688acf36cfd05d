"""`Cameras`: a batch of pinhole cameras, each with its own image size.

Convention (stated once, here): OpenCV camera axes (x right, y down, z forward); `T_world_cam` maps camera
coordinates to world coordinates; intrinsics `Ks` map camera points to pixels with pixel centres at +0.5.

Image sizes: every camera has its own width and height (`widths`, `heights`), as COLMAP and nerfstudio allow (a
phone's portrait and landscape photos, several cameras in one capture). Most batches are uniform (every camera the
same size; one camera always is), and for them `width` and `height` give the one size that rendering a batch
needs. Asking a batch of mixed sizes for one size is a bug in the caller, so it raises `MixedSizesError` instead
of picking one: index a single camera (`cameras[i]`) or read `widths` / `heights`.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.geometry import invert_rigid

SIZES_LISTED = 3
"""`describe_size` lists this many distinct sizes before it only counts them."""


class MixedSizesError(ValueError):
    """Code asked a batch of cameras of different image sizes for one width or height."""


def _whole(value: object, name: str) -> int:
    number = int(value)  # type: ignore[call-overload]
    if number != value:
        raise ValueError(f"Cameras: {name} {value} is not a whole number of pixels")
    return number


def _per_camera(value: int | Sequence[int] | Tensor, n: int, name: str) -> tuple[int, ...]:
    """`value` (one size for all `n` cameras, or one per camera) as a tuple of `n` ints."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist()
    if np.ndim(value) == 0:
        return (_whole(value, name),) * n
    values = tuple(_whole(v, name) for v in value)
    if len(values) != n:
        raise ValueError(f"Cameras: {len(values)} {name}s for {n} cameras")
    return values


@dataclass(frozen=True, init=False)
class Cameras:
    """A batch of C pinhole cameras.

    Args:
        T_world_cam: camera-to-world transforms [C, 4, 4].
        Ks: intrinsics [C, 3, 3].
        width, height: image size in pixels: one int for every camera, or a sequence (or int tensor) of C.
        times: capture time per camera, for dynamic scenes.
        widths, heights: the stored per-camera sizes; `dataclasses.replace` passes them back in. `width` and
            `height`, when given, take precedence, so `replace(cameras, width=w, height=h)` sets the size (without
            scaling the intrinsics: `scaled` and `splat4d.data.dataset.resize_cameras` do both).
    """

    T_world_cam: Float[Tensor, "C 4 4"]
    """Camera-to-world transforms (OpenCV axes)."""
    Ks: Float[Tensor, "C 3 3"]
    """Pinhole intrinsics in pixels."""
    widths: tuple[int, ...]
    """Image width of each camera, in pixels."""
    heights: tuple[int, ...]
    """Image height of each camera, in pixels."""
    times: Float[Tensor, " C"] | None
    """Normalised capture time in [0, 1] per camera, for dynamic scenes."""

    def __init__(
        self,
        T_world_cam: Float[Tensor, "C 4 4"],
        Ks: Float[Tensor, "C 3 3"],
        width: int | Sequence[int] | Tensor | None = None,
        height: int | Sequence[int] | Tensor | None = None,
        times: Float[Tensor, " C"] | None = None,
        *,
        widths: Sequence[int] | None = None,
        heights: Sequence[int] | None = None,
    ) -> None:
        C = T_world_cam.shape[0]
        if T_world_cam.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
            raise ValueError(
                f"Cameras: T_world_cam {tuple(T_world_cam.shape)} and Ks {tuple(Ks.shape)} "
                "must be [C,4,4] and [C,3,3]"
            )
        if times is not None and times.shape != (C,):
            raise ValueError(f"Cameras: times has shape {tuple(times.shape)}, expected ({C},)")
        width = widths if width is None else width
        height = heights if height is None else height
        if width is None or height is None:
            raise TypeError(
                "Cameras: needs an image width and height (one for all cameras, or one per camera)"
            )
        object.__setattr__(self, "T_world_cam", T_world_cam)
        object.__setattr__(self, "Ks", Ks)
        object.__setattr__(self, "widths", _per_camera(width, C, "width"))
        object.__setattr__(self, "heights", _per_camera(height, C, "height"))
        object.__setattr__(self, "times", times)

    def __len__(self) -> int:
        return self.T_world_cam.shape[0]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each camera."""
        return list(zip(self.widths, self.heights, strict=True))

    @property
    def is_uniform(self) -> bool:
        """Whether every camera has the same image size (true for one camera, and for none)."""
        return len(set(self.sizes)) <= 1

    @property
    def width(self) -> int:
        """The image width shared by every camera.

        Raises:
            MixedSizesError: the cameras differ in size (or there are none).
        """
        return self._size()[0]

    @property
    def height(self) -> int:
        """The image height shared by every camera (see `width`)."""
        return self._size()[1]

    def _size(self) -> tuple[int, int]:
        sizes = set(self.sizes)
        if len(sizes) != 1:
            what = "no cameras" if not sizes else f"{len(sizes)} image sizes ({self.describe_size()})"
            raise MixedSizesError(
                f"Cameras: a batch with {what} has no single width and height; index one camera (cameras[i]) "
                "or read cameras.widths / cameras.heights"
            )
        return next(iter(sizes))

    def describe_size(self) -> str:
        """The image size for messages: `600×800` when uniform, else the sizes and how many cameras have each,
        most frequent first (`600×800 (19), 800×600 (4)`)."""
        counts = Counter(self.sizes).most_common()
        if len(counts) == 1:
            (w, h), _ = counts[0]
            return f"{w}×{h}"
        listed = ", ".join(f"{w}×{h} ({n})" for (w, h), n in counts[:SIZES_LISTED])
        return listed + (
            f" and {len(counts) - SIZES_LISTED} more sizes" if len(counts) > SIZES_LISTED else ""
        )

    @property
    def T_cam_world(self) -> Float[Tensor, "C 4 4"]:
        return invert_rigid(self.T_world_cam)

    @property
    def centers(self) -> Float[Tensor, "C 3"]:
        return self.T_world_cam[:, :3, 3]

    @property
    def device(self) -> torch.device:
        return self.T_world_cam.device

    def size_tensor(self, dtype: torch.dtype = torch.float32) -> Float[Tensor, "C 2"]:
        """(width, height) of each camera as a tensor on the cameras' device, for per-camera arithmetic."""
        return torch.tensor(self.sizes, dtype=dtype, device=self.device).reshape(len(self), 2)

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if isinstance(index, slice):
            rows: list[int] | slice = index
            widths, heights = self.widths[index], self.heights[index]
        else:
            rows = torch.arange(len(self))[torch.as_tensor(index).cpu()].reshape(-1).tolist()
            widths = tuple(self.widths[i] for i in rows)
            heights = tuple(self.heights[i] for i in rows)
            index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        times = None if self.times is None else self.times[index]
        return Cameras(self.T_world_cam[index], self.Ks[index], widths, heights, times)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Cameras":
        times = None if self.times is None else self.times.to(device, dtype)
        return Cameras(
            self.T_world_cam.to(device, dtype), self.Ks.to(device, dtype), self.widths, self.heights, times
        )

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras rendering at `factor` times the resolution (intrinsics scaled accordingly)."""
        Ks = self.Ks.clone()
        Ks[:, :2] *= factor
        widths = [round(w * factor) for w in self.widths]
        heights = [round(h * factor) for h in self.heights]
        return Cameras(self.T_world_cam, Ks, widths, heights, self.times)

    @staticmethod
    def cat(parts: "Sequence[Cameras]") -> "Cameras":
        """The cameras of `parts`, one after the other (times kept when every part has them).

        Raises:
            ValueError: no parts, or some have times and others not.
        """
        if not parts:
            raise ValueError("Cameras.cat: needs at least one batch")
        timed = {p.times is not None for p in parts}
        if len(timed) > 1:
            raise ValueError("Cameras.cat: some batches have times and others not")
        times = torch.cat([p.times for p in parts]) if timed == {True} else None  # type: ignore[misc]
        return Cameras(
            torch.cat([p.T_world_cam for p in parts]),
            torch.cat([p.Ks for p in parts]),
            [w for p in parts for w in p.widths],
            [h for p in parts for h in p.heights],
            times,
        )


def pixel_rays(Ks: Float[Tensor, "C 3 3"], width: int, height: int) -> Float[Tensor, "C H W 3"]:
    """Camera-frame directions K⁻¹ (u, v, 1) through every pixel centre (u, v) = (i + 0.5, j + 0.5): their z is 1,
    so a point at z-depth d on pixel (i, j)'s ray is d × ray."""
    v, u = torch.meshgrid(
        torch.arange(height, device=Ks.device, dtype=Ks.dtype) + 0.5,
        torch.arange(width, device=Ks.device, dtype=Ks.dtype) + 0.5,
        indexing="ij",
    )
    x = (u - Ks[:, 0, 2, None, None]) / Ks[:, 0, 0, None, None]
    y = (v - Ks[:, 1, 2, None, None]) / Ks[:, 1, 1, None, None]
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)
