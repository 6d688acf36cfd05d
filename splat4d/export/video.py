"""Videos of a trained scene along a camera path: RGB, colour-mapped depth or both side by side, as an H.264 MP4
(imageio-ffmpeg, libx264, yuv420p) and/or a folder of PNG frames. For 4D scenes, a time sweep renders t from 0 to
1 over the video, from a fixed camera or moving along the path.

`splat4d export video SCENE` (wired in `splat4d/cli.py`) runs `VideoExport.main`.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro

from splat4d.cameras import Cameras
from splat4d.errors import UsageError
from splat4d.evaluate import colorize_depth
from splat4d.export.camera_path import (
    arc_path,
    choose_path,
    interpolate_path,
    load_nerfstudio_camera_path,
    orbit_path,
    resized,
    spiral_path,
)
from splat4d.gaussians import Gaussians4D
from splat4d.io.atomic import apply_default_permissions, check_output_file
from splat4d.optional import require
from splat4d.pipeline import PipelineSpec
from splat4d.render import RenderOutput

RenderMode = Literal["rgb", "depth", "side-by-side"]
PathKind = Literal["auto", "orbit", "arc", "spiral", "interpolate", "camera-path", "val"]
_FRAME_NAME = re.compile(r"^frame_\d{5}\.png$")
"""The names `write_pngs` gives frames."""
FRAMES_MARKER = ".splat4d-frames"
"""Written by `write_pngs` into its frames folder: only a folder holding it is ever replaced (ffmpeg, among
others, names frames the same way)."""
MP4_PURPOSE = "write MP4 videos (or write PNG frames with --no-mp4 --pngs)"
"""Completes the error when imageio-ffmpeg is missing (`splat4d.optional.require`)."""


def even(n: int) -> int:
    """The nearest even size at least 2 (H.264 in yuv420p halves both axes for chroma)."""
    return max(2, 2 * round(n / 2))


def to_even_frame(frame: np.ndarray) -> np.ndarray:
    """Crop a [H, W, 3] frame to even height and width (drops at most one row and one column)."""
    H, W = frame.shape[:2]
    return frame[: H - H % 2, : W - W % 2]


def frame_image(out: RenderOutput, mode: RenderMode) -> np.ndarray:
    """The [H, W, 3] uint8 frame of the first camera of a render: RGB, colour-mapped depth or both side by side."""
    rgb = (out.rgb[0].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    if mode == "rgb":
        return rgb
    depth = colorize_depth(out.depth[0, ..., 0].cpu().numpy())
    return depth if mode == "depth" else np.concatenate([rgb, depth], axis=1)


RenderFn = Callable[[Cameras, float | None], RenderOutput]


def render_frames(
    render_view: RenderFn,
    cameras: Cameras,
    times: list[float | None] | None = None,
    mode: RenderMode = "rgb",
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Render each camera of `cameras` (at `times[i]`, passed as `render_view(camera, t)`; None: no time) and yield
    its uint8 frame, showing a rich progress bar."""
    from rich.progress import Progress

    times = times if times is not None else [None] * len(cameras)
    if len(times) != len(cameras):
        raise ValueError(f"{len(times)} times for {len(cameras)} cameras")
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("rendering", total=len(cameras))
        for i, t in enumerate(times):
            with torch.no_grad():
                out = render_view(cameras[i], t)
            yield frame_image(out, mode)
            bar.advance(task)


def _temp_beside(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def write_mp4(frames: Iterable[np.ndarray], out: Path, fps: float | int) -> int:
    """Encode uint8 [H, W, 3] frames as H.264 (libx264, yuv420p) into `out`, atomically: through a temporary file in
    the same folder, renamed into place only when encoding succeeded. Odd sizes are cropped to even. Returns the
    number of frames.

    Raises:
        UserError: imageio-ffmpeg is not installed.
    """
    imageio_ffmpeg = require("imageio_ffmpeg", MP4_PURPOSE)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(out, ".mp4")
    writer, count = None, 0
    try:
        for frame in frames:
            frame = np.ascontiguousarray(to_even_frame(frame))
            if writer is None:
                writer = imageio_ffmpeg.write_frames(
                    str(tmp), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264",
                    pix_fmt_out="yuv420p", macro_block_size=1, quality=8, ffmpeg_log_level="error",
                )  # fmt: skip
                writer.send(None)
            writer.send(frame)
            count += 1
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
        writer = None
        apply_default_permissions(tmp)
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return count


def check_frames_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a PNG frames folder that exists (without `overwrite`), that `write_pngs` did not write (no
    `FRAMES_MARKER`) or that holds anything but its frames (never replaced, even with `overwrite`), or is a file.

    Raises:
        UsageError: naming the folder.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: is a file where the PNG frames folder goes; move it or choose another --out"
        )
    if not overwrite:
        raise UsageError(f"{folder}: exists; pass --overwrite to replace it")
    foreign = [p.name for p in folder.iterdir() if not (_FRAME_NAME.match(p.name) and p.is_file())]
    foreign = [name for name in foreign if name != FRAMES_MARKER]
    if foreign or not (folder / FRAMES_MARKER).is_file():
        what = (
            f"files that are not its frames ({foreign[0]}, ...)"
            if foreign
            else "frames splat4d did not write"
        )
        raise UsageError(f"{folder}: holds {what}; not replacing it, choose another --out")


def write_pngs(frames: Iterable[np.ndarray], folder: Path) -> int:
    """Write frames as folder/frame_00000.png, ...: into a temporary folder beside it, renamed into place at the
    end (an existing `folder` is replaced: check it with `check_frames_folder` first), with `FRAMES_MARKER`.
    Returns the number of frames."""
    import imageio.v3 as iio

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        count = 0
        for count, frame in enumerate(frames, start=1):
            iio.imwrite(tmp / f"frame_{count - 1:05d}.png", frame)
        (tmp / FRAMES_MARKER).write_text("PNG frames written by `splat4d export video --pngs`\n")
        if folder.exists():
            shutil.rmtree(folder)
        apply_default_permissions(tmp)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return count


def _tee(frames: Iterable[np.ndarray], keep: list[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        keep.append(frame)
        yield frame


@dataclass
class VideoExport:
    """Render a video of a scene along a camera path: by default one that stays where the training cameras looked
    (an orbit when they surround the scene, an arc over the side they saw, an ellipse fitted to a forward-facing
    capture), or a chosen one: orbit, arc, spiral, a smooth path through chosen training cameras, the dataset's
    validation cameras, or a nerfstudio camera_path.json. 4D scenes can sweep time from 0 to 1."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder written by `splat4d reconstruct`."""
    out: Path | None = None
    """Output MP4 (default: SCENE/exports/<path>.mp4, named after the path taken); PNG frames go to the same name
    without suffix + _frames/."""
    path: PathKind = "auto"
    """auto (default): a path that stays where the training cameras looked (orbit when they surround the scene, arc
    when they saw one side of it, spiral for a forward-facing capture; the choice and why are printed); orbit: one
    full turn around the scene centre (shows the unphotographed back of a one-sided capture as smears); arc: back
    and forth over the azimuths the cameras cover; spiral: an ellipse fitted to the camera centres, rising and
    falling; interpolate: through the --keyframes training cameras; camera-path: --camera-path-json; val: through
    the dataset's validation cameras (Blender/D-NeRF transforms_val.json) at their times, e.g. D-NeRF's fixed
    camera sweeping time."""
    camera_path_json: Path | None = None
    """nerfstudio camera_path.json (for --path camera-path); its size, fps and times are used unless overridden."""
    keyframes: list[int] = field(default_factory=list)
    """Training camera indices for --path interpolate (default: every training camera, in order)."""
    frames: int = 60
    """Number of frames (ignored for camera-path, which has its own)."""
    fps: int | None = None
    """Frames per second (default: 30, or the camera path file's)."""
    width: int | None = None
    """Frame width (default: the training images'); rounded to even."""
    height: int | None = None
    """Frame height (default: the training images'); rounded to even."""
    render: RenderMode = "rgb"
    """rgb, depth (colour-mapped, near blue, far red) or both side by side."""
    time_sweep: bool = False
    """4D scenes: render t from 0 to 1 over the video."""
    fixed_camera: int | None = None
    """With --time-sweep: render from this training camera instead of moving along the path. Without a time sweep, a
    4D scene is rendered at the path's camera times (interpolate, camera-path with times) or else at t = 0.5."""
    mp4: bool = True
    """Write the H.264 MP4."""
    pngs: bool = False
    """Also write every frame as a PNG."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to render (auto: CUDA when available)."""
    progress: bool = True
    """Show a progress bar."""
    overwrite: bool = False
    """Replace existing outputs."""

    def output_paths(self, kind: str | None = None) -> tuple[Path, Path]:
        """The MP4 and the PNG frames folder; by default named after the path `kind` (default: --path)."""
        mp4 = self.out if self.out is not None else self.scene / "exports" / f"{kind or self.path}.mp4"
        return mp4, mp4.with_name(mp4.stem + "_frames")

    def main(self, pipelines: Mapping[str, PipelineSpec]) -> list[Path]:
        """Load the scene and write the video. `pipelines` is the registry (`pipelines.PIPELINES`), passed in by the
        caller because this core module may not import the pipelines layer. Returns the paths written."""
        from splat4d.reconstruct import load_trained, resolve_device

        self.check_flags()
        if not self.mp4 and not self.pngs:
            raise UsageError("--no-mp4: nothing to write; drop --no-mp4 or pass --pngs")
        if self.mp4:
            require("imageio_ffmpeg", MP4_PURPOSE)  # before rendering every frame
        if self.out is not None or self.path != "auto":
            self.check_outputs(self.path)  # before loading, when the names do not depend on the scene
        trained = load_trained(self.scene, dict(pipelines), resolve_device(self.device))
        scene = trained.scene
        train = scene.cameras[torch.tensor(scene.train_indices or list(range(len(scene.cameras))))]
        kind = self.path
        if kind == "auto":
            kind, why = choose_path(train)
            print(f"path: {kind}, as {why} (--path chooses another)")
            self.check_outputs(kind)
        mp4_path, png_dir = self.output_paths(kind)
        targets = ([mp4_path] if self.mp4 else []) + ([png_dir] if self.pngs else [])
        cameras, times, fps = self.build_path(train, kind, scene.metadata.get("val_cameras"))
        if isinstance(trained.pipeline.gaussians, Gaussians4D) and cameras.times is None:
            times = [
                0.5 if t is None else t for t in times
            ]  # a 4D scene needs a time; mid-sequence by default
        device = next(iter(trained.pipeline.gaussians.parameters())).device
        frames = render_frames(
            trained.pipeline.render_view, cameras.to(device), times, self.render, self.progress
        )
        if self.mp4 and self.pngs:
            kept: list[np.ndarray] = []
            write_mp4(_tee(frames, kept), mp4_path, fps)
            write_pngs(kept, png_dir)
        elif self.mp4:
            write_mp4(frames, mp4_path, fps)
        else:
            write_pngs(frames, png_dir)
        return targets

    def check_outputs(self, kind: str) -> None:
        """Refuse outputs of path `kind` that exist without --overwrite, or that are not ours to replace."""
        mp4_path, png_dir = self.output_paths(kind)
        if self.mp4:
            check_output_file(mp4_path, self.overwrite)
        if self.pngs:
            check_frames_folder(png_dir, self.overwrite)

    def check_flags(self) -> None:
        """Refuse flag values no video can be made with, naming the flag.

        Raises:
            UsageError: a non-positive frame count, size or frame rate; a missing camera path file.
        """
        for flag, value, least in (("--frames", self.frames, 1), ("--width", self.width, 2),
                                   ("--height", self.height, 2), ("--fps", self.fps, 1)):  # fmt: skip
            if value is not None and value < least:
                raise UsageError(f"{flag}: must be at least {least}, got {value}")
        if self.path == "camera-path" and self.camera_path_json is None:
            raise UsageError("--path camera-path: needs --camera-path-json FILE")
        if self.fixed_camera is not None and not self.time_sweep:
            raise UsageError("--fixed-camera: applies with --time-sweep only")

    def build_path(
        self, train: Cameras, kind: str | None = None, val: Cameras | None = None
    ) -> tuple[Cameras, list[float | None], float]:
        """The path's cameras (at an even size), the time of each frame (None: static) and the frame rate.

        Args:
            train: the training cameras, which the orbit, arc, spiral and interpolated paths are fitted to.
            kind: the path to take (default: --path; "auto" is resolved with `choose_path`).
            val: the dataset's validation cameras, for --path val.
        """
        kind = kind or self.path
        if kind == "auto":
            kind = choose_path(train)[0]
        width = even(self.width or train[0].width)
        height = even(self.height or train[0].height)
        fps = float(self.fps or 30)
        file_times = None
        if kind == "orbit":
            cameras = orbit_path(train, self.frames, width, height)
        elif kind == "arc":
            cameras = arc_path(train, self.frames, width, height)
        elif kind == "spiral":
            cameras = spiral_path(train, self.frames, width, height)
        elif kind == "interpolate":
            keys = self.keyframes or list(range(len(train)))
            cameras = interpolate_path(train, keys, self.frames, width, height)
        elif kind == "val":
            cameras = self._val_path(val, width, height)
        else:
            if self.camera_path_json is None:
                raise UsageError("--path camera-path: needs --camera-path-json FILE")
            imported = load_nerfstudio_camera_path(self.camera_path_json, self.width, self.height)
            fps = float(self.fps or imported.fps)
            file_times = imported.cameras.times
            cameras = resized(imported.cameras, even(imported.cameras.width), even(imported.cameras.height))
        n = len(cameras)
        if self.time_sweep:
            if self.fixed_camera is not None:
                if not 0 <= self.fixed_camera < len(train):
                    raise UsageError(
                        f"--fixed-camera: {self.fixed_camera} is not a training camera (0..{len(train) - 1})"
                    )
                cameras = resized(train[self.fixed_camera], width, height)[torch.zeros(n, dtype=torch.long)]
            times: list[float | None] = [i / max(n - 1, 1) for i in range(n)]
        elif file_times is not None:
            times = [float(t) for t in file_times]
        else:
            times = [None] * n
        return cameras, times, fps

    def _val_path(self, val: Cameras | None, width: int, height: int) -> Cameras:
        """--frames cameras through the validation cameras in file order (poses, intrinsics and times
        interpolated), or the one validation camera repeated."""
        if val is None or len(val) == 0:
            raise UsageError(
                "--path val: the scene's dataset has no validation cameras (a Blender or D-NeRF "
                "transforms_val.json); choose another --path"
            )
        if len(val) == 1 or self.frames == 1:
            return resized(val[torch.zeros(self.frames, dtype=torch.long)], width, height)
        return interpolate_path(val, list(range(len(val))), self.frames, width, height)
