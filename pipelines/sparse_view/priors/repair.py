"""Repaired pseudo views: renders of novel cameras refined by the diffusion prior, kept as pseudo ground truth
(GaussianObject's repair, LM-Gaussian's refinement) until the next repair pass replaces them."""

from collections.abc import Callable
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from splat4d.cameras import Cameras


class PseudoView(NamedTuple):
    camera: Cameras
    """One camera, at the training resolution of when it was repaired."""
    rgb: Float[Tensor, "1 H W 3"]
    """The repaired render: the target of later renders of `camera`."""


class RepairedViews:
    """The pseudo ground truth of the latest repair pass, handed out one view per step in turn."""

    def __init__(self) -> None:
        self.views: list[PseudoView] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self.views)

    @torch.no_grad()
    def refresh(
        self,
        cameras: list[Cameras],
        render_rgb: Callable[[Cameras], Float[Tensor, "1 H W 3"]],
        repair: Callable[[Float[Tensor, "B H W 3"]], Float[Tensor, "B H W 3"]],
    ) -> None:
        """Render each camera, refine the renders together, and keep them in place of the previous pass's."""
        renders = torch.cat([render_rgb(camera) for camera in cameras])
        repaired = repair(renders)
        self.views = [PseudoView(c, repaired[i : i + 1]) for i, c in enumerate(cameras)]
        self._next = 0

    def next(self) -> PseudoView:
        view = self.views[self._next % len(self.views)]
        self._next += 1
        return view

    def clear(self) -> None:
        self.views, self._next = [], 0
