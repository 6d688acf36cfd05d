"""`SceneData`: what every dataset reader produces, independent of the file format it came from."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras


@dataclass
class SceneData:
    """Cameras, image files and split of one scene. Images are decoded lazily by whoever needs them."""

    cameras: Cameras
    """All cameras, in file order (OpenCV axes)."""
    image_paths: list[Path]
    depth_paths: list[Path | None]
    train_indices: list[int]
    test_indices: list[int]
    points: np.ndarray | None = None
    """Initial point cloud [P, 3] (SfM points or the dataset's PLY), if any."""
    point_colors: np.ndarray | None = None
    """Point colours [P, 3] in [0, 1]."""
    metadata: dict = field(default_factory=dict)

    def subset(self, indices: list[int]) -> Cameras:
        return self.cameras[torch.as_tensor(indices, dtype=torch.long)]
