"""Reader for synchronised multi-view video in the N3DV / DyNeRF layout, and lazy decoding of video frames.

Layout (Li et al. 2022, "Neural 3D Video Synthesis"):

    poses_bounds.npy   [N, 17] float: per camera a 3x5 matrix [R | t | hwf] (row-major), then its near and far bound
    cam00.mp4, ...     one video per pose row, matched in name order; all the same length and size

The poses follow LLFF (Mildenhall et al. 2019): camera-to-world with camera axes (down, right, backwards), and the
fifth column holds the image height, width and focal length in pixels. Every (camera, frame) pair is one view at
time frame / (frames - 1), so times span [0, 1]; camera 0 is the test camera by N3DV's convention.

Frames are never all held in memory: `SceneData.image_paths` holds `VideoFrame(video, index)` references, and
`VideoFrameReader` decodes them on demand with PyAV (see its memory bound). A read in random order (as training
samples views) seeks to the keyframe before the frame and decodes forward, so it costs up to one keyframe
interval of decoding: videos with long ones (libx264's default is 250 frames) read faster re-encoded with a short
interval, e.g. `ffmpeg -i cam00.mp4 -g 10 ...`. PyAV is imported where a video is opened (`splat4d.optional`);
detecting the layout needs none.
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from jaxtyping import UInt8

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData, VideoFrame
from splat4d.data.config import DataConfig, MultiviewVideoConfig
from splat4d.data.llff_poses import POSES_FILE, camera_of_row, load_poses_bounds
from splat4d.errors import UsageError, one_line
from splat4d.optional import require

if TYPE_CHECKING:
    import av

VIDEO_PATTERN = "cam*.mp4"
MAX_OPEN_VIDEOS = 4
"""Videos a `VideoFrameReader` keeps open at once (least recently used closed first)."""
CACHED_FRAMES = 2
"""Decoded frames each open video keeps (least recently requested dropped first)."""
MAX_DECODE_AHEAD = 16
VIDEO_HINT = "re-encode it (e.g. `ffmpeg -i in.mp4 out.mp4`) or replace it"
"""A request up to this many frames after the decoder's position decodes forward instead of seeking."""


def _av() -> ModuleType:
    return require("av", "decode video frames", DatasetError)


def av_reason(exc: Exception) -> str:
    """PyAV's reason for a failure, without the file name it repeats."""
    return one_line(getattr(exc, "strerror", None) or str(exc))


def is_multiview_video(path: Path) -> bool:
    """Whether `path` is a folder holding `poses_bounds.npy` and at least one `cam*.mp4`."""
    path = Path(path)
    return path.is_dir() and (path / POSES_FILE).is_file() and any(_videos(path))


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(VIDEO_PATTERN) if p.is_file())


class VideoInfo(NamedTuple):
    frames: int
    width: int
    height: int
    fps: float


def probe_video(path: Path) -> VideoInfo:
    """Frame count, size and frame rate of a video's first video stream, from its headers (no decoding, except
    counting packets when the container does not store the frame count).

    Raises:
        DatasetError: the file cannot be opened as a video or has no video stream, or PyAV is not installed.
    """
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: has no video stream; {VIDEO_HINT}")
            stream = container.streams.video[0]
            frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
            rate = stream.average_rate or stream.guessed_rate
            info = VideoInfo(
                frames, stream.codec_context.width, stream.codec_context.height, float(rate or 0)
            )
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable video ({av_reason(exc)}); {VIDEO_HINT}") from exc
    if info.frames < 1 or info.width < 1 or info.height < 1:
        raise DatasetError(f"{path}: video has no frames; {VIDEO_HINT}")
    return info


class VideoDecoder:
    """Frames of one video by index. A request just ahead of the last decoded frame decodes forward; any other
    seeks to the keyframe before it and decodes forward from there. Frames are located by their timestamps, at
    the stream's average frame rate (constant-frame-rate videos, as cameras record them). Holds the open
    container, the codec's reference frames and up to `cache_frames` decoded RGB frames.
    """

    def __init__(self, path: Path, cache_frames: int = CACHED_FRAMES) -> None:
        self.path = Path(path)
        self.cache_frames = cache_frames
        self.decoded = 0
        """Frames decoded so far (a measure of the work done, for tests and diagnostics)."""
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._container: av.container.InputContainer | None = None
        self._frames = None  # the decode iterator, positioned before frame self._next
        self._next = -1

    def _open(self) -> None:
        av = _av()
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            raise DatasetError(f"{self.path}: not a readable video ({av_reason(exc)}); {VIDEO_HINT}") from exc
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate or self._stream.time_base is None:
            raise DatasetError(f"{self.path}: video has no frame rate or time base; cannot locate frames")
        # Timestamp units per frame, exact (e.g. 1001 at 30000/1001 fps in a 1/30000 time base).
        self._frame_ticks = 1 / (Fraction(rate) * Fraction(self._stream.time_base))
        self._start = self._stream.start_time or 0

    def _seek(self, index: int) -> None:
        if self._container is None:
            self._open()
        assert self._container is not None
        target = self._start + int(index * self._frame_ticks)
        av = _av()
        try:
            self._container.seek(target, stream=self._stream, backward=True)
        except av.error.FFmpegError as exc:
            raise DatasetError(
                f"{self.path}: cannot seek to frame {index} ({av_reason(exc)}); {VIDEO_HINT}"
            ) from exc
        self._frames = self._container.decode(self._stream)

    def _index_of(self, frame: av.VideoFrame) -> int:
        if frame.pts is None:
            raise DatasetError(f"{self.path}: a frame has no timestamp; cannot locate frames")
        return round((frame.pts - self._start) / self._frame_ticks)

    def read(self, index: int) -> UInt8[np.ndarray, "H W 3"]:
        """Frame `index` (0-based) as RGB.

        Raises:
            DatasetError: the video ends before that frame, or cannot be decoded.
        """
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._frames is None or not self._next <= index < self._next + MAX_DECODE_AHEAD:
            self._seek(index)
        assert self._frames is not None
        av = _av()
        try:
            for frame in self._frames:
                self.decoded += 1
                found = self._index_of(frame)
                self._next = found + 1
                if found < index:
                    continue
                if found > index:  # a keyframe seek never lands after the target in a well-formed file
                    raise DatasetError(f"{self.path}: frame {index} is missing (decoding went on at {found})")
                image = frame.to_ndarray(format="rgb24")
                image.flags.writeable = False  # shared with the cache
                self._cache[index] = image
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
                return image
        except av.error.FFmpegError as exc:
            self._frames = None
            raise DatasetError(
                f"{self.path}: cannot decode frame {index} ({av_reason(exc)}); {VIDEO_HINT}"
            ) from exc
        self._frames = None
        raise DatasetError(f"{self.path}: the video ends before frame {index}; {VIDEO_HINT}")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._next = None, None, -1
        self._cache.clear()


class VideoFrameReader:
    """Decodes `VideoFrame`s on demand, keeping at most `max_open` videos open (least recently used closed first).

    Memory bound: `max_open` × (`cache_frames` RGB frames of W × H × 3 bytes, plus the codec's reference frames,
    for H.264 at most 16 YUV 4:2:0 frames of 1.5 W H bytes). At N3DV's 2704 × 2028 with the defaults that is at most
    about 4 × (2 × 16 MB + 16 × 8 MB) ≈ 0.7 GB, whatever the number of videos or frames.
    """

    def __init__(self, max_open: int = MAX_OPEN_VIDEOS, cache_frames: int = CACHED_FRAMES) -> None:
        self.max_open = max_open
        self.cache_frames = cache_frames
        self._open: OrderedDict[Path, VideoDecoder] = OrderedDict()
        self._closed_decodes = 0

    @property
    def decoded(self) -> int:
        """Frames decoded so far, by every video this reader has opened."""
        return self._closed_decodes + sum(d.decoded for d in self._open.values())

    def read(self, frame: VideoFrame) -> UInt8[np.ndarray, "H W 3"]:
        decoder = self._open.get(frame.path)
        if decoder is None:
            decoder = self._open[frame.path] = VideoDecoder(frame.path, self.cache_frames)
            while len(self._open) > self.max_open:
                _, oldest = self._open.popitem(last=False)
                self._closed_decodes += oldest.decoded
                oldest.close()
        self._open.move_to_end(frame.path)
        return decoder.read(frame.index)

    def close(self) -> None:
        for decoder in self._open.values():
            self._closed_decodes += decoder.decoded
            decoder.close()
        self._open.clear()


def _kept_frames(n: int, cfg: MultiviewVideoConfig) -> list[int]:
    if cfg.frame_step < 1:
        raise UsageError(f"--data.multiview.frame-step: must be at least 1, got {cfg.frame_step}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise UsageError(f"--data.multiview.max-frames: must be at least 1, got {cfg.max_frames}")
    return list(range(0, n, cfg.frame_step))[: cfg.max_frames]


def read_multiview_video(cfg: DataConfig, workdir: Path) -> SceneData:
    """Read the N3DV / DyNeRF-layout folder `cfg.path` (see the module docstring).

    Views are ordered camera by camera, frame by frame. Intrinsics come from each row's hwf: fx = f W / w and
    fy = f H / h for videos of size W x H (a resized copy of w x h is fine), principal point at the image centre.
    The kept frames (`cfg.multiview.frame_step`, `max_frames`) get times evenly spread over [0, 1]. The views of
    `cfg.multiview.test_cameras` are held out. Frames are not decoded here.

    Args:
        cfg: `cfg.path` is the folder; `cfg.multiview` sets the split and frame subsampling.
        workdir: unused; every reader takes it so that the registry can call them alike.

    Returns:
        The scene, with cameras in OpenCV axes, `VideoFrame` references as images, and in its metadata each
        camera's near/far bounds (`near_far`), the video frame of each kept time (`frame_indices`) and the fps.

    Raises:
        DatasetError: naming the file, when poses_bounds.npy is missing or not N x 17, the number of videos is
            not N, a video is unreadable, or the videos differ in frame count or size.
    """
    del workdir
    root = Path(cfg.path)
    poses_path = root / POSES_FILE
    if not poses_path.is_file():
        raise DatasetError(f"{poses_path}: file not found")
    poses = load_poses_bounds(poses_path)
    videos = _videos(root)
    if len(videos) != len(poses):
        raise DatasetError(
            f"{poses_path}: has {len(poses)} camera rows but the folder holds {len(videos)} {VIDEO_PATTERN} videos; "
            "give one row per video, in video name order"
        )
    infos = [probe_video(v) for v in videos]
    for video, info in zip(videos[1:], infos[1:], strict=True):
        if info.frames != infos[0].frames:
            raise DatasetError(
                f"{video}: has {info.frames} frames but {videos[0].name} has {infos[0].frames}; "
                "synchronised videos must have the same length"
            )
        if (info.width, info.height) != (infos[0].width, infos[0].height):
            raise DatasetError(
                f"{video}: is {info.width}x{info.height} but {videos[0].name} is "
                f"{infos[0].width}x{infos[0].height}; mixed sizes are not supported"
            )
    width, height, n_frames = infos[0].width, infos[0].height, infos[0].frames

    mats = poses[:, :15].reshape(-1, 3, 5)
    Ks, T_world_cam = [], []
    for row, (pose, video) in enumerate(zip(mats, videos, strict=True)):
        K, T = camera_of_row(pose, width, height, poses_path, f"row {row} ({video.name})", "videos")
        Ks.append(K)
        T_world_cam.append(T)

    mv = cfg.multiview
    bad = [c for c in mv.test_cameras if not 0 <= c < len(videos)]
    if bad:
        raise DatasetError(
            f"{root}: multiview.test_cameras {bad} out of range for {len(videos)} cameras; choose cameras 0 to "
            f"{len(videos) - 1} with --data.multiview.test-cameras"
        )
    frames = _kept_frames(n_frames, mv)
    span = max(frames[-1] - frames[0], 1)
    times = [(f - frames[0]) / span for f in frames]
    view_cams = [c for c in range(len(videos)) for _ in frames]
    cameras = Cameras(
        T_world_cam=torch.tensor(np.stack(T_world_cam)[view_cams], dtype=torch.float32),
        Ks=torch.tensor(np.asarray(Ks)[view_cams], dtype=torch.float32),
        width=width,
        height=height,
        times=torch.tensor(times * len(videos), dtype=torch.float32),
    )
    test = [i for i, c in enumerate(view_cams) if c in mv.test_cameras]
    train = [i for i, c in enumerate(view_cams) if c not in mv.test_cameras]
    return SceneData(
        cameras=cameras,
        image_paths=[VideoFrame(videos[c], f) for c in range(len(videos)) for f in frames],
        depth_paths=[None] * len(view_cams),
        train_indices=train,
        test_indices=test,
        metadata={
            "source": str(root),
            "format": "n3dv",
            "videos": [v.name for v in videos],
            "near_far": poses[:, 15:].tolist(),
            "frame_indices": frames,
            "num_video_frames": n_frames,
            "fps": infos[0].fps,
        },
    )
