"""`Cameras`: a batch of pinhole cameras sharing one image size.

Convention (stated once, here): OpenCV camera axes (x right, y down, z forward); `T_world_cam` maps camera
coordinates to world coordinates; intrinsics `Ks` map camera points to pixels with pixel centres at +0.5.
"""

from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.geometry import invert_rigid


@dataclass(frozen=True)
class Cameras:
    T_world_cam: Float[Tensor, "C 4 4"]
    """Camera-to-world transforms (OpenCV axes)."""
    Ks: Float[Tensor, "C 3 3"]
    """Pinhole intrinsics in pixels."""
    width: int
    height: int
    times: Float[Tensor, " C"] | None = None
    """Normalised capture time in [0, 1] per camera, for dynamic scenes."""

    def __post_init__(self) -> None:
        C = self.T_world_cam.shape[0]
        if self.T_world_cam.shape != (C, 4, 4) or self.Ks.shape != (C, 3, 3):
            raise ValueError(
                f"Cameras: T_world_cam {tuple(self.T_world_cam.shape)} and Ks {tuple(self.Ks.shape)} "
                "must be [C,4,4] and [C,3,3]"
            )
        if self.times is not None and self.times.shape != (C,):
            raise ValueError(f"Cameras: times has shape {tuple(self.times.shape)}, expected ({C},)")

    def __len__(self) -> int:
        return self.T_world_cam.shape[0]

    @property
    def T_cam_world(self) -> Float[Tensor, "C 4 4"]:
        return invert_rigid(self.T_world_cam)

    @property
    def centers(self) -> Float[Tensor, "C 3"]:
        return self.T_world_cam[:, :3, 3]

    @property
    def device(self) -> torch.device:
        return self.T_world_cam.device

    def __getitem__(self, index: int | slice | Tensor) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        times = None if self.times is None else self.times[index]
        return replace(self, T_world_cam=self.T_world_cam[index], Ks=self.Ks[index], times=times)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Cameras":
        times = None if self.times is None else self.times.to(device, dtype)
        return replace(
            self, T_world_cam=self.T_world_cam.to(device, dtype), Ks=self.Ks.to(device, dtype), times=times
        )

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras rendering at `factor` times the resolution (intrinsics scaled accordingly)."""
        Ks = self.Ks.clone()
        Ks[:, :2] *= factor
        return replace(self, Ks=Ks, width=round(self.width * factor), height=round(self.height * factor))


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
