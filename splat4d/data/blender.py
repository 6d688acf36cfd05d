"""Reader for Blender / NeRF-synthetic scenes: `transforms_{train,val,test}.json` beside RGBA renders.

Each split file holds `camera_angle_x` (horizontal field of view, radians) and `frames`, each with a
`file_path` (extension optional, ".png" assumed) and a camera-to-world `transform_matrix` in Blender's
OpenGL camera axes. The renders have a transparent background, composited onto white by convention.
D-NeRF scenes (Pumarola et al. 2021) use the same layout and give every frame a `time` in [0, 1]; it becomes
`Cameras.times`, so they train with the dynamic pipeline.

Training uses `train` and evaluation `test`, as 3DGS, D-NeRF and the 4D methods do. The `val` frames are held out
(D-NeRF's are one fixed camera sweeping time, which would turn a monocular capture into a two-camera one): they
are checked like the others and kept in `SceneData.metadata` (`val_cameras`, `val_image_paths`) for
`export video --path val` and `eval --split val` (`val_scene`), unless `DataConfig.train_on_val` adds them to
training.
"""

import math
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import check_pose, image_header_size, load_json_object, matrix
from splat4d.data.config import DataConfig
from splat4d.geometry import OPENGL_FROM_OPENCV

SPLIT_FILES = {"train": "transforms_train.json", "val": "transforms_val.json", "test": "transforms_test.json"}
"""Split name → file; the train file is required, val and test are optional."""
WHITE = (1.0, 1.0, 1.0)
"""NeRF-synthetic images are evaluated composited onto white (Mildenhall et al. 2020)."""
DEFAULT_IMAGE_SUFFIX = ".png"


def is_blender(path: Path) -> bool:
    """Whether `path` is a folder holding a `transforms_train.json`."""
    path = Path(path)
    return path.is_dir() and (path / SPLIT_FILES["train"]).is_file()


def _load_json(path: Path) -> dict:
    return load_json_object(path, "'camera_angle_x' and 'frames'")


def _image_path(root: Path, frame: dict, json_path: Path) -> Path:
    file_path = frame.get("file_path")
    if not isinstance(file_path, str) or not file_path:
        raise DatasetError(f"{json_path}: a frame has no 'file_path'; give every frame the image it shows")
    path = root / file_path
    if not path.suffix:
        path = path.with_name(path.name + DEFAULT_IMAGE_SUFFIX)
    if not path.is_file():
        raise DatasetError(
            f"{path}: image not found (listed in {json_path.name}); restore it or remove the frame"
        )
    return path


def _pose(frame: dict, json_path: Path) -> np.ndarray:
    """T_world_cam in OpenCV axes from a frame's OpenGL camera-to-world matrix, checked to be rigid."""
    what = f"transform_matrix of {frame.get('file_path', '?')}"
    hint = "fix or remove the frame"
    T_world_gl = check_pose(
        matrix(frame.get("transform_matrix"), (4, 4), json_path, what, hint), json_path, what
    )
    return T_world_gl @ OPENGL_FROM_OPENCV.double().numpy()


def _time(frame: dict, json_path: Path) -> float | None:
    """The frame's capture time in [0, 1] (D-NeRF), or None when it has none."""
    if "time" not in frame:
        return None
    try:
        time = float(frame["time"])
    except (TypeError, ValueError) as exc:
        raise DatasetError(
            f"{json_path}: time of {frame.get('file_path', '?')} is not a number; write a time in [0, 1]"
        ) from exc
    if not 0.0 <= time <= 1.0:  # also refuses NaN
        raise DatasetError(
            f"{json_path}: time {time} of {frame.get('file_path', '?')} is not in [0, 1]; times are normalised "
            "to [0, 1]"
        )
    return time


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    return image_header_size(path)


Frame = tuple[Path, np.ndarray, float, float | None]
"""(image path, T_world_cam, camera_angle_x, time) of one frame."""


def read_blender(cfg: DataConfig, workdir: Path) -> SceneData:
    """Read the Blender / NeRF-synthetic scene in the folder `cfg.path`.

    Cameras are the train frames then the test frames (with `cfg.train_on_val`, the val frames between them,
    training). Without a test file, every `cfg.test_every`-th training frame (0, n, 2n, ...) is held out instead
    (none when test_every < 1). The val frames are otherwise held out of both splits and kept in
    `metadata["val_cameras"]` (a `Cameras`, with times for D-NeRF) and `metadata["val_image_paths"]`.
    Intrinsics come from each split's `camera_angle_x`: fx = fy = W / (2 tan(angle / 2)), principal point at the
    image centre. Per-frame `time`s (D-NeRF) become `Cameras.times`. The scene has no initial points (trainers
    initialise randomly) and a white background.

    Args:
        cfg: `cfg.path` is the scene folder; `cfg.test_every` is used only without a test file;
            `cfg.train_on_val` trains on the val frames too.
        workdir: unused; every reader takes it so that the registry can call them alike.

    Returns:
        The scene, with cameras in OpenCV axes.

    Raises:
        DatasetError: a split file is missing or malformed (not a UTF-8 JSON object, a pose that is not a finite
            rigid 4x4 matrix, a field angle outside (0, pi), a time outside [0, 1]), an image is missing or
            unreadable, the images (val's included) differ in size, or some frames have a `time` and others do
            not.
    """
    del workdir
    root = Path(cfg.path)
    if not is_blender(root):
        raise DatasetError(f"{root / SPLIT_FILES['train']}: file not found")

    splits: dict[str, list[Frame]] = {}
    first: Frame | None = None
    for split, name in SPLIT_FILES.items():
        json_path = root / name
        if split != "train" and not json_path.exists():
            continue
        splits[split] = _read_split(root, json_path, split, first)
        first = first or (splits[split][0] if splits[split] else None)

    assert first is not None  # the train split has frames
    width, height = _image_size(first[0])
    for split_frames in splits.values():
        for path, *_ in split_frames:
            size = _image_size(path)
            if size != (width, height):
                raise DatasetError(
                    f"{path}: image is {size[0]}x{size[1]} but {first[0].name} is {width}x{height}; "
                    "mixed sizes are not supported"
                )

    train_frames = splits["train"] + (splits.get("val", []) if cfg.train_on_val else [])
    test_frames = splits.get("test", [])
    frames = train_frames + test_frames
    if test_frames:
        train = list(range(len(train_frames)))
        test = list(range(len(train_frames), len(frames)))
    elif cfg.test_every >= 1:
        test = list(range(0, len(frames), cfg.test_every))
        train = [i for i in range(len(frames)) if i % cfg.test_every != 0]
    else:
        train, test = list(range(len(frames))), []

    metadata: dict = {
        "source": str(root),
        "format": "blender",
        "split_counts": {split: len(split_frames) for split, split_frames in splits.items()},
    }
    if splits.get("val"):
        metadata["val_cameras"] = _cameras(splits["val"], width, height)
        metadata["val_image_paths"] = [f[0] for f in splits["val"]]
        metadata["val_in_training"] = bool(cfg.train_on_val)
    return SceneData(
        cameras=_cameras(frames, width, height),
        image_paths=[f[0] for f in frames],
        depth_paths=[None] * len(frames),
        train_indices=train,
        test_indices=test,
        background=WHITE,
        metadata=metadata,
    )


def _read_split(root: Path, json_path: Path, split: str, first: Frame | None) -> list[Frame]:
    """The frames of one split file, checked; `first` (the first frame read so far) says whether frames have a
    time."""
    meta = _load_json(json_path)
    if not isinstance(meta.get("frames"), list) or (split == "train" and not meta["frames"]):
        raise DatasetError(f"{json_path}: no 'frames'; list the images with their poses under 'frames'")
    try:
        angle_x = float(meta["camera_angle_x"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{json_path}: no numeric 'camera_angle_x'; give the horizontal field of view in radians"
        ) from exc
    if not 0.0 < angle_x < math.pi:
        raise DatasetError(
            f"{json_path}: camera_angle_x {angle_x} is not in (0, pi); give the horizontal field of view in "
            "radians"
        )
    frames: list[Frame] = []
    for frame in meta["frames"]:
        if not isinstance(frame, dict):
            raise DatasetError(f"{json_path}: a frame is not a JSON object; fix or remove it")
        time = _time(frame, json_path)
        reference = first or (frames[0] if frames else None)
        if reference is not None and (time is None) != (reference[3] is None):
            raise DatasetError(
                f"{json_path}: frame {frame.get('file_path', '?')} {'has no' if time is None else 'has a'} "
                f"'time' but {reference[0].name} {'has one' if time is None else 'has none'}; "
                "give every frame a time (D-NeRF) or none"
            )
        frames.append((_image_path(root, frame, json_path), _pose(frame, json_path), angle_x, time))
    return frames


def _cameras(frames: list[Frame], width: int, height: int) -> Cameras:
    """The frames' cameras: poses, pinhole intrinsics from their `camera_angle_x`, and times when they have them."""
    Ks = []
    for _, _, angle_x, _ in frames:
        focal = 0.5 * width / math.tan(0.5 * angle_x)
        Ks.append([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Cameras(
        T_world_cam=torch.from_numpy(np.stack([f[1] for f in frames])).float(),
        Ks=torch.tensor(Ks, dtype=torch.float64).float(),
        width=width,
        height=height,
        times=None if frames[0][3] is None else torch.tensor([f[3] for f in frames], dtype=torch.float32),
    )


def val_scene(scene: SceneData) -> SceneData:
    """The held-out `val` frames of a Blender / D-NeRF `scene` as a scene of their own, every frame a test view
    (composited onto the same background), for scoring on them.

    Raises:
        DatasetError: the scene has no held-out val frames (not a Blender scene, no transforms_val.json, or
            `train_on_val` trained on them).
    """
    cameras = scene.metadata.get("val_cameras")
    paths = scene.metadata.get("val_image_paths")
    source = scene.metadata.get("source", "the scene's dataset")
    if cameras is None or not paths:
        raise DatasetError(
            f"{source}: no val frames to evaluate on (they come from a Blender/D-NeRF {SPLIT_FILES['val']})"
        )
    if scene.metadata.get("val_in_training"):
        raise DatasetError(
            f"{source}: the val frames were trained on (--data.train-on-val), so they are not held out to score"
        )
    return SceneData(
        cameras=cameras,
        image_paths=list(paths),
        depth_paths=[None] * len(paths),
        train_indices=[],
        test_indices=list(range(len(paths))),
        background=scene.background,
        metadata={key: value for key, value in scene.metadata.items() if not key.startswith("val_")},
    )
