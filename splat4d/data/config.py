"""Configuration of dataset reading: which reader, downscaling, split, masks, and how unposed inputs get posed."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

Format = Literal["auto", "colmap", "nerfstudio", "blender", "llff", "n3dv", "images", "video"]


@dataclass
class SfmConfig:
    """Structure from motion with pycolmap (CPU), for a folder of images or a video."""

    matching: Literal["auto", "exhaustive", "sequential"] = "auto"
    """auto: exhaustive for photos (every pair), sequential for video frames (neighbours in time)."""
    camera_model: str = "SIMPLE_RADIAL"
    """pycolmap camera model shared by all images; the images are undistorted to pinhole afterwards."""
    max_num_features: int = 8192
    """SIFT features per image."""
    max_image_size: int = 1600
    """Images are downscaled to this longest side for feature extraction."""
    min_registered_fraction: float = 0.5
    """Stop with an error when SfM registers fewer than this fraction of the images (or fewer than 3)."""
    num_threads: int = -1
    """-1: all cores."""


@dataclass
class VideoConfig:
    """Frame extraction from a video file (decoded with PyAV)."""

    fps: float = 2.0
    """Frames per second of video to keep."""
    max_frames: int = 200
    """Upper bound on extracted frames (evenly spaced over the video)."""


@dataclass
class MultiviewVideoConfig:
    """Synchronised multi-view video (N3DV / DyNeRF layout): split and frame subsampling."""

    test_cameras: tuple[int, ...] = (0,)
    """Cameras (0-based, in video name order) whose frames are held out for testing; N3DV holds out camera 0.
    Empty: every camera trains."""
    frame_step: int = 1
    """Keep every frame_step-th frame (0, k, 2k, ...)."""
    max_frames: int | None = None
    """Keep at most this many of those frames (the first ones); None: all. Times span [0, 1] over the kept
    frames."""


@dataclass
class DataConfig:
    """Where the scene comes from and how its images are prepared."""

    path: Annotated[Path, tyro.conf.Suppress] = Path()
    """Input (given on the command line as INPUT): a dataset folder, a transforms.json, a COLMAP workspace, a folder of images, a video file, or a folder of synchronised videos."""
    format: Format = "auto"
    """Reader to use; "auto" detects it from the files present."""
    downscale: int = 1
    """Train and evaluate at 1/downscale of the image resolution (LLFF: the images_<k>/ folder that matches is
    read)."""
    max_size: int | None = None
    """Train and evaluate with at most this many pixels on an image's longest side: `downscale` is raised to the
    smallest factor at which every image fits (the factor used goes into metrics.json as `downscale`). 0: no
    limit; not given: the preset's (the static `fast` preset: 512, so that a CPU run on ordinary photos keeps its
    time promise; the others: no limit)."""
    test_every: int = 8
    """Every n-th image is held out for testing, unless the dataset defines its own split."""
    train_on_val: bool = False
    """Blender / NeRF-synthetic and D-NeRF: also train on transforms_val.json's frames. By default they are held
    out, as 3DGS and D-NeRF do (D-NeRF's val split is one fixed camera sweeping time; `export video --path val`)."""
    masks: Path | None = None
    """Optional folder of masks named like the images (white = use the pixel); masked-out pixels carry no loss."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    multiview: MultiviewVideoConfig = field(default_factory=MultiviewVideoConfig)
