"""`SceneData`: what every dataset reader produces, independent of the file format it came from."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.errors import UserError


class DatasetError(UserError):
    """A dataset file is missing or malformed; the message names the file and the problem in one line."""


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a video file, standing where `SceneData.image_paths` holds an image file.

    The frame is decoded only when it is needed (`splat4d.data.video.VideoFrameReader`). `name` and `stem`
    stand in for an image file's name (in `cameras.json`, evaluation images and mask look-up), e.g.
    `cam00_000012` for frame 12 of `cam00.mp4`; `parent` is the video's folder.
    """

    path: Path
    """The video file."""
    index: int
    """0-based frame number in decoding (presentation) order."""

    @property
    def name(self) -> str:
        return f"{self.path.stem}_{self.index:06d}"

    @property
    def stem(self) -> str:
        return self.name

    @property
    def parent(self) -> Path:
        return self.path.parent

    def __str__(self) -> str:
        return f"{self.path} (frame {self.index})"


@dataclass
class SceneData:
    """Cameras, image files and split of one scene. Images are decoded lazily by whoever needs them
    (`splat4d.data.dataset.ImageDataset`)."""

    cameras: Cameras
    """All cameras, in file order (OpenCV axes, pinhole: readers undistort other camera models)."""
    image_paths: list[Path | VideoFrame]
    """Each view's image file, or its frame of a video (decoded lazily)."""
    depth_paths: list[Path | None]
    train_indices: list[int]
    test_indices: list[int]
    points: np.ndarray | None = None
    """Initial point cloud [P, 3] (SfM points or the dataset's PLY), if any."""
    point_colors: np.ndarray | None = None
    """Point colours [P, 3] in [0, 1]."""
    mask_paths: list[Path | None] | None = None
    """Per-image masks (white = use the pixel), if any."""
    background: tuple[float, float, float] | None = None
    """Colour that images with an alpha channel are composited onto (Blender scenes: white); None: black."""
    metadata: dict = field(default_factory=dict)

    def subset(self, indices: list[int]) -> Cameras:
        return self.cameras[torch.as_tensor(indices, dtype=torch.long)]
