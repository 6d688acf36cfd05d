"""Posing unposed inputs, a folder of photos or a video, with pycolmap structure from motion on the CPU.

Stages: SIFT feature extraction (one camera, `cfg.sfm.camera_model`, shared by all images of one size: a set of
portrait and landscape photos gets one camera per size), exhaustive or sequential matching (`cfg.sfm.matching`),
incremental mapping; the largest reconstruction is kept and read like a COLMAP workspace
(`splat4d.data.colmap`), which undistorts it to pinhole.

Photos are posed upright (`splat4d.data.orientation`): pycolmap reads the stored pixels and ignores the EXIF
orientation, so when any photo (or mask) is stored turned, SfM, undistortion and training all read upright copies.
Work files live in the work dir:

    <workdir>/frames/        frames kept from a video (JPEG), reused while the video and `cfg.video` are unchanged
    <workdir>/upright/       upright copies of photos stored turned (links to the others), when there are any;
                             `upright_masks/` likewise for masks
    <workdir>/sfm/           database.db and model/ (the kept reconstruction), reused while the image names,
                             sizes, modification times and the SfM settings are unchanged (stamp.json)
    <workdir>/undistorted/   undistorted images, when the camera model has distortion

pycolmap (and PyAV, for a video) are imported where they are used (`splat4d.optional`); detecting the formats
needs neither.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import image_header_size
from splat4d.data.colmap import PYCOLMAP_ERRORS, image_size, scene_from_reconstruction
from splat4d.data.colmap_files import check_model_files
from splat4d.data.config import DataConfig, SfmConfig, VideoConfig
from splat4d.data.orientation import upright_copies, upright_video_frame
from splat4d.data.undistort import quiet_colmap, replace_dir, stamp_matches
from splat4d.data.video import VIDEO_HINT, av_reason
from splat4d.errors import UsageError, one_line
from splat4d.optional import require

if TYPE_CHECKING:
    import pycolmap

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
MIN_REGISTERED = 3
"""Fewest registered images a reconstruction needs, whatever `SfmConfig.min_registered_fraction` says."""
EXHAUSTIVE_BLOCK_SIZE = 8
"""Images per block of exhaustive matching (COLMAP's default is 50). The same pairs are matched; COLMAP checks for
Ctrl-C / SIGTERM only between blocks, so with 50 a set of up to 50 photos could not be stopped until all of its
matching was done (measured on 24 photos, 2 loaded cores: 26-62 s from SIGTERM to exit with 50, 2 s with 6)."""
MAX_LISTED = 8
"""Names listed in a warning about unregistered images before it says "and n more"."""
FRAME_JPEG_QUALITY = 95
FRAME_TIMES = "times.json"
"""Written beside the extracted frames: seconds into the video of each frame, by file name."""


def _pycolmap(purpose: str = "run SfM") -> ModuleType:
    return require("pycolmap", purpose, DatasetError)


def _av() -> ModuleType:
    return require("av", "read the frames of a video", DatasetError)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _image_folder(path: Path) -> Path | None:
    """`path` when it holds images directly, else `path/images` when that does; None otherwise."""
    return next((folder for folder in (path, path / "images") if _image_files(folder)), None)


def is_images(path: Path) -> bool:
    """True for a folder with at least one .jpg/.jpeg/.png (any case), directly or in `images/`."""
    return Path(path).is_dir() and _image_folder(Path(path)) is not None


def is_video(path: Path) -> bool:
    """True for a file with a video suffix (.mp4, .mov, .avi, .mkv, .webm; any case)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _progress(enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def _sfm_key(files: list[Path], sfm: SfmConfig) -> dict:
    # Thread count and the registration threshold do not change the reconstruction, so they are not part of it.
    settings = {
        "camera_model": sfm.camera_model,
        "matching": sfm.matching,
        "max_num_features": sfm.max_num_features,
        "max_image_size": sfm.max_image_size,
    }
    images = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    return {"images": images, "sfm": settings}


def _run_sfm_into(folder: Path, images_dir: Path, files: list[Path], sfm: SfmConfig, progress: bool) -> None:
    pycolmap = _pycolmap()
    database = folder / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = sfm.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = sfm.num_threads
    extraction.max_image_size = sfm.max_image_size
    extraction.sift.max_num_features = sfm.max_num_features
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = sfm.num_threads
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = sfm.num_threads
    # The default minimum model size (10 images) would drop small scenes; the caller checks the size instead.
    mapping.min_model_size = MIN_REGISTERED
    mapping.random_seed = 0

    with _progress(progress) as bar:
        groups = _size_groups(files)
        task = bar.add_task(f"SfM: extracting features ({len(files)} images)", total=len(groups))
        # One extraction per image size, each with one shared camera: COLMAP's single-camera mode refuses images of
        # another size, and its per-image mode would leave SfM a focal length to guess per photo.
        for group in groups:
            pycolmap.extract_features(
                database,
                images_dir,
                image_names=group,
                camera_mode=pycolmap.CameraMode.SINGLE,
                reader_options=reader,
                extraction_options=extraction,
                device=pycolmap.Device.cpu,
            )
            bar.advance(task)
        task = bar.add_task(f"SfM: {sfm.matching} matching", total=1)
        if sfm.matching == "sequential":
            pycolmap.match_sequential(database, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            pairing = pycolmap.ExhaustivePairingOptions()
            pairing.block_size = EXHAUSTIVE_BLOCK_SIZE
            pycolmap.match_exhaustive(
                database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
            )
        bar.update(task, completed=1)
        mapping_task = bar.add_task("SfM: incremental mapping", total=len(files))
        models = pycolmap.incremental_mapping(
            database,
            images_dir,
            folder / "models",
            options=mapping,
            next_image_callback=lambda: bar.advance(mapping_task),
        )
        bar.update(mapping_task, completed=len(files))
    if models:
        best = max(models.values(), key=lambda rec: rec.num_reg_images())
        (folder / "model").mkdir()
        best.write(folder / "model")
    shutil.rmtree(folder / "models", ignore_errors=True)


def _size_groups(files: list[Path]) -> list[list[str]]:
    """The names of `files` grouped by image size, in order of first appearance."""
    groups: dict[tuple[int, int], list[str]] = {}
    for f in files:
        groups.setdefault(image_header_size(f), []).append(f.name)
    return list(groups.values())


def run_sfm(
    images_dir: Path, files: list[Path], sfm: SfmConfig, folder: Path, progress: bool = True
) -> pycolmap.Reconstruction | None:
    """Pose `files` (all in `images_dir`) with pycolmap, or reuse the result of an identical earlier run.

    Args:
        images_dir: folder of the images.
        files: the images to use, in order (sequential matching pairs neighbours in this order).
        sfm: SfM settings.
        folder: work folder (`database.db`, `model/`, `stamp.json`); replaced when the inputs changed.
        progress: show the stages.

    Returns:
        The largest reconstruction, also written to `folder/model/`; None when mapping found none.

    Raises:
        DatasetError: pycolmap is not installed, or the cached result cannot be read.
    """
    pycolmap = _pycolmap()
    if sfm.camera_model not in pycolmap.CameraModelId.__members__ or sfm.camera_model == "INVALID":
        raise UsageError(
            f"--data.sfm.camera-model: {sfm.camera_model!r} is not a pycolmap camera model "
            "(e.g. SIMPLE_RADIAL, OPENCV, SIMPLE_PINHOLE)"
        )
    key = _sfm_key(files, sfm)
    model = folder / "model"
    if not (stamp_matches(folder, key) and _model_intact(model)):  # a damaged cache is made again
        with quiet_colmap(), replace_dir(folder, key) as tmp:
            _run_sfm_into(tmp, images_dir, files, sfm, progress)
    if not model.is_dir():
        return None
    check_model_files(model)
    try:
        return pycolmap.Reconstruction(model)
    except PYCOLMAP_ERRORS as exc:
        raise DatasetError(
            f"{model}: cannot read the SfM result ({one_line(str(exc))}); delete {folder} and rerun"
        ) from exc


def _model_intact(model: Path) -> bool:
    """Whether a cached SfM result is absent (mapping found none) or readable."""
    if not model.is_dir():
        return True
    try:
        check_model_files(model)
    except DatasetError:
        return False
    return True


def _hint(sfm: SfmConfig) -> str:
    hints = ["photos with more overlap between neighbours", "sharper, more textured views"]
    if sfm.matching == "exhaustive":
        hints.append("sfm.matching='sequential' for video frames")
    else:
        hints.append("sfm.matching='exhaustive' for unordered photos")
    if sfm.camera_model != "SIMPLE_PINHOLE":
        hints.append("sfm.camera_model='SIMPLE_PINHOLE' for few or blurry views")
    return "try " + ", ".join(hints)


def _scene_from_folder(
    images_dir: Path, cfg: DataConfig, workdir: Path, fmt: str, progress: bool
) -> SceneData:
    """Check the images, run (or reuse) SfM and read the result; shared by `read_images` and `read_video`."""
    files = _image_files(images_dir)
    if not files:
        raise DatasetError(f"{images_dir}: no .jpg/.jpeg/.png images")
    # Every image is decoded in full before SfM: pycolmap's reader pads a truncated image with grey silently.
    for f in files:
        image_size(f)
    if len(files) < MIN_REGISTERED:
        raise DatasetError(f"{images_dir}: SfM needs at least {MIN_REGISTERED} images, found {len(files)}")
    files = upright_copies(files, Path(workdir) / "upright", progress)
    read_dir = files[0].parent  # `images_dir`, or the upright copies of its photos
    if cfg.masks is not None:
        masks = upright_copies(_image_files(Path(cfg.masks)), Path(workdir) / "upright_masks", progress)
        if masks:
            cfg = dataclasses.replace(cfg, masks=masks[0].parent)

    sfm_dir = Path(workdir) / "sfm"
    if cfg.sfm.matching == "auto":  # neighbouring video frames overlap; unordered photos need every pair
        cfg = dataclasses.replace(
            cfg, sfm=dataclasses.replace(cfg.sfm, matching="sequential" if fmt == "video" else "exhaustive")
        )
    rec = run_sfm(read_dir, files, cfg.sfm, sfm_dir, progress)
    n_registered = 0 if rec is None else rec.num_reg_images()
    needed = max(MIN_REGISTERED, math.ceil(cfg.sfm.min_registered_fraction * len(files)))
    if rec is None or n_registered < needed:
        raise DatasetError(
            f"{images_dir}: SfM registered {n_registered} of {len(files)} images, fewer than the {needed} needed; "
            f"{_hint(cfg.sfm)}"
        )
    registered = {rec.images[i].name for i in rec.reg_image_ids()}
    dropped = [f.name for f in files if f.name not in registered]
    if dropped:
        listed = ", ".join(dropped[:MAX_LISTED]) + (
            f" and {len(dropped) - MAX_LISTED} more" if len(dropped) > MAX_LISTED else ""
        )
        warnings.warn(
            f"{images_dir}: SfM registered {n_registered} of {len(files)} images; dropping {listed}",
            stacklevel=3,
        )

    scene = scene_from_reconstruction(
        rec, read_dir, cfg, workdir, source=Path(cfg.path), progress=progress, model_dir=sfm_dir / "model"
    )
    scene.metadata.update(
        format=fmt,
        sfm_model=str(sfm_dir / "model"),
        num_input_images=len(files),
        unregistered=dropped,
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
    )
    return scene


def read_images(cfg: DataConfig, workdir: Path, progress: bool = True) -> SceneData:
    """Pose the photos at `cfg.path` (directly in it or in `images/`) with SfM and read them.

    Images that SfM cannot register are dropped with a warning listing them. The first run writes
    `workdir/sfm/`; later runs with the same images and `cfg.sfm` reuse it. Photos are read upright: their EXIF
    orientation is applied (`splat4d.data.orientation`), and they may differ in size (portrait and landscape).

    Args:
        cfg: data configuration; `path`, `sfm`, `masks` and `test_every` are used.
        workdir: folder for SfM and undistortion outputs, reused across runs.
        progress: show the SfM stages.

    Raises:
        DatasetError: when the folder has no images, an image is unreadable (naming it), SfM registers fewer than
            max(3, `min_registered_fraction` × n) images, or pycolmap is not installed.
    """
    path = Path(cfg.path)
    images_dir = _image_folder(path) if path.is_dir() else None
    if images_dir is None:
        raise DatasetError(f"{path}: no .jpg/.jpeg/.png images in it or in images/")
    _pycolmap("pose photos with SfM")
    return _scene_from_folder(images_dir, cfg, workdir, "images", progress)


def _frame_pts(video: Path) -> tuple[list[int], float]:
    """Presentation timestamps of every frame, sorted, from the container's packets (no decoding), and the
    stream's time base (seconds per timestamp unit)."""
    with _av().open(str(video)) as container:
        if not container.streams.video:
            raise DatasetError(f"{video}: no video stream; {VIDEO_HINT}")
        stream = container.streams.video[0]
        pts = [packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size > 0]
        time_base = float(stream.time_base)
    if not pts:
        raise DatasetError(f"{video}: no video frames; {VIDEO_HINT}")
    return sorted(pts), time_base


def select_frames(times: list[float], fps: float, max_frames: int) -> list[int]:
    """Indices of the frames nearest to a regular grid of `fps` per second over the video, or of `max_frames`
    evenly spaced ones when that grid is longer.

    Args:
        times: frame times in seconds, sorted.
        fps: frames per second to keep.
        max_frames: most frames to keep.
    """
    t = np.asarray(times, dtype=np.float64)
    targets = np.arange(t[0], t[-1] + 1e-9, 1.0 / fps)
    if len(targets) > max_frames:
        targets = np.linspace(t[0], t[-1], max_frames)
    right = np.clip(np.searchsorted(t, targets), 0, len(t) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(t[left] - targets) <= np.abs(t[right] - targets), left, right)
    return sorted(set(nearest.tolist()))


def _write_frames(video: Path, video_cfg: VideoConfig, folder: Path, progress: bool) -> None:
    pts, time_base = _frame_pts(video)
    keep = {pts[i] for i in select_frames([p * time_base for p in pts], video_cfg.fps, video_cfg.max_frames)}
    times = {}
    with _av().open(str(video)) as container, _progress(progress) as bar:
        task = bar.add_task(f"Extracting frames from {video.name}", total=len(keep))
        for frame in container.decode(container.streams.video[0]):
            if frame.pts in keep:
                name = f"frame_{len(times):05d}.jpg"
                image = upright_video_frame(frame.to_image(), frame.rotation)
                image.save(folder / name, quality=FRAME_JPEG_QUALITY)
                times[name] = frame.pts * time_base
                bar.advance(task)
    if not times:
        raise DatasetError(f"{video}: no decodable video frames; {VIDEO_HINT}")
    (folder / FRAME_TIMES).write_text(json.dumps(times, indent=1))


def extract_frames(
    video: Path, video_cfg: VideoConfig, folder: Path, progress: bool = True
) -> dict[str, float]:
    """Write the frames kept from `video` to `folder` as `frame_00000.jpg`, … (cached while the video and
    `video_cfg` are unchanged).

    Args:
        video: the video file.
        video_cfg: frame rate and count to keep.
        folder: output folder, replaced when the video or `video_cfg` changed.
        progress: show a progress bar while decoding.

    Returns:
        The time (seconds into the video) of each written frame, by file name.

    Raises:
        DatasetError: naming the video when it cannot be opened or decoded; PyAV is not installed (and the
            frames are not cached yet).
    """
    if not video_cfg.fps > 0 or not math.isfinite(video_cfg.fps):
        raise UsageError(
            f"--data.video.fps: must be a positive number of frames per second, got {video_cfg.fps}"
        )
    if video_cfg.max_frames < 1:
        raise UsageError(f"--data.video.max-frames: must be at least 1, got {video_cfg.max_frames}")
    stat = video.stat()
    key = {
        "video": [video.name, stat.st_size, stat.st_mtime_ns],
        "fps": video_cfg.fps,
        "max_frames": video_cfg.max_frames,
        "upright": True,  # frames turned by the display matrix (caches written before that are rebuilt)
    }
    if not stamp_matches(folder, key):
        av = _av()
        try:
            with replace_dir(folder, key) as tmp:
                _write_frames(video, video_cfg, tmp, progress)
        except av.error.FFmpegError as exc:
            raise DatasetError(f"{video}: cannot read video ({av_reason(exc)}); {VIDEO_HINT}") from exc
    try:
        times = json.loads((folder / FRAME_TIMES).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{folder / FRAME_TIMES}: cannot read ({exc}); delete {folder} and rerun") from exc
    if not isinstance(times, dict) or not all(
        isinstance(t, int | float) and math.isfinite(t) for t in times.values()
    ):
        raise DatasetError(
            f"{folder / FRAME_TIMES}: not a map of frame names to times; delete {folder} and rerun"
        )
    return times


def read_video(cfg: DataConfig, workdir: Path, progress: bool = True) -> SceneData:
    """Keep frames of the video at `cfg.path` (`cfg.video`), pose them with SfM and read them.

    Frames are kept at `cfg.video.fps` (at most `cfg.video.max_frames`, evenly spaced) and written to
    `workdir/frames/`; `metadata["frame_times"]` holds each posed frame's time in the video (seconds). Matching follows `cfg.sfm.matching`; "auto" (the default) is "sequential" for video (neighbouring
    frames overlap) and scales to many frames, "exhaustive" is more robust for a few dozen.

    Args:
        cfg: data configuration; `path`, `video`, `sfm`, `masks` and `test_every` are used.
        workdir: folder for frames, SfM and undistortion outputs, reused across runs.
        progress: show the SfM stages.

    Raises:
        DatasetError: naming the video when it cannot be decoded, or when SfM registers too few frames; or
            pycolmap or PyAV is not installed.
    """
    video = Path(cfg.path)
    if not video.is_file():
        raise DatasetError(f"{video}: video not found")
    _pycolmap("pose the frames of a video with SfM")
    frames = Path(workdir) / "frames"
    times = extract_frames(video, cfg.video, frames, progress)
    scene = _scene_from_folder(frames, cfg, workdir, "video", progress)
    seconds = [times[p.name] for p in scene.image_paths]
    scene.metadata["frame_times"] = seconds
    # Capture times in [0, 1] over the kept frames, so a moving scene filmed by one camera trains with
    # `--pipeline dynamic` (SfM poses the camera on what does not move; RANSAC treats moving things as outliers).
    start, end = min(times.values()), max(times.values())
    span = end - start if end > start else 1.0
    normalised = torch.tensor([(t - start) / span for t in seconds], dtype=torch.float32)
    scene.cameras = dataclasses.replace(scene.cameras, times=normalised)
    return scene
