"""Bad datasets end in one line: every value a reader takes from a file (poses, intrinsics, sizes, times, COLMAP
models, pose arrays, images, videos, masks) is checked where it is read, so `splat4d reconstruct` on a damaged
input prints `error: <file>: <what is wrong>; <what to do>` and exits with status 2, touches none of the user's
files and leaves no output that holds anything invalid (no cameras.json full of NaN)."""

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data import _validate
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import check_image, describe_pose_problem
from tests.reliability.conftest import CliResult, assert_one_line_error, run_cli, tree_digest
from tests.reliability.helpers_datasets import (
    CAMERA_PARAMS,
    IMAGE_QW,
    POINT_X,
    blender_scene,
    colmap_workspace,
    jpeg_folder,
    n3dv_folder,
    put_double,
    read_meta,
    truncate,
    write_meta,
)

FAST = ("--steps", "2", "--preset", "fast", "--no-progress")


def refused(capsys, data: Path, out: Path, *names: str | Path, flags: tuple[str, ...] = ()) -> str:
    """Run `reconstruct data -o out`, check the one-line refusal naming `names`, that the files under `data` are
    unchanged and that nothing invalid was written to `out`; returns the error line."""
    before = tree_digest(data if data.is_dir() else data.parent)
    result: CliResult = run_cli(capsys, "reconstruct", data, "-o", out, *flags, *FAST)
    line = assert_one_line_error(result, *names)
    assert tree_digest(data if data.is_dir() else data.parent) == before
    cameras = out / "cameras.json"
    assert not cameras.exists() or not any(w in cameras.read_text() for w in ("NaN", "Infinity"))
    assert not (out / "point_cloud.ply").exists()
    return line


# --- nerfstudio transforms.json --------------------------------------------------------------------------------


def _frame(index: int, **changes: object) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["frames"][index].update(changes)

    return edit


def _drop(index: int, key: str) -> Callable[[dict], None]:
    return lambda meta: meta["frames"][index].pop(key)


def _matrix(index: int, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        T = np.asarray(meta["frames"][index]["transform_matrix"], dtype=np.float64)
        meta["frames"][index]["transform_matrix"] = change(T).tolist()

    return edit


def _set(T: np.ndarray, where: tuple, value: float) -> np.ndarray:
    T = T.copy()
    T[where] = value
    return T


def _rotation(T: np.ndarray, R: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    T = T.copy()
    T[:3, :3] = R(T[:3, :3])
    return T


def _top(**changes: object) -> Callable[[dict], None]:
    return lambda meta: meta.update(changes)


def _strings_in_matrix(meta: dict) -> None:
    meta["frames"][3]["transform_matrix"][0][1] = "abc"


def _ragged(meta: dict) -> None:
    meta["frames"][3]["transform_matrix"][2] = [0.0, 1.0]


def _time_on_some_frames(meta: dict) -> None:
    meta["frames"][0]["time"] = 0.5


def _times(value: object) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        for i, frame in enumerate(meta["frames"]):
            frame["time"] = i / (len(meta["frames"]) - 1)
        meta["frames"][3]["time"] = value

    return edit


def _duplicate(meta: dict) -> None:
    meta["frames"].append(dict(meta["frames"][2]))


NERFSTUDIO_CASES: dict[str, tuple[Callable[[dict], None], str]] = {
    "nan in pose": (
        _matrix(3, lambda T: _set(T, (0, 3), math.nan)),
        "transform_matrix of images/frame_00003.png has a NaN",
    ),
    "inf in pose": (_matrix(3, lambda T: _set(T, (1, 1), math.inf)), "has an infinite value"),
    "string in pose": (_strings_in_matrix, "transform_matrix of images/frame_00003.png is not all numbers"),
    "3x3 pose": (_matrix(3, lambda T: T[:3, :3]), "is 3x3, not 4x4"),
    "ragged pose": (_ragged, "is ragged"),
    "zero rotation": (_matrix(3, lambda T: _rotation(T, lambda R: 0 * R)), "not a rotation (determinant 0)"),
    "scaled rotation": (
        _matrix(3, lambda T: _rotation(T, lambda R: 2 * R)),
        "scaled or sheared: determinant 8",
    ),
    "reflection": (_matrix(3, lambda T: _rotation(T, lambda R: -R)), "is a reflection"),
    "bottom row": (_matrix(3, lambda T: _set(T, (3, 0), 0.5)), "bottom row [0.5 0 0 1], not [0 0 0 1]"),
    "missing pose": (_drop(3, "transform_matrix"), "transform_matrix of images/frame_00003.png is missing"),
    "missing fl_x": (_top(fl_x=None), "fl_x is missing"),
    "fl_x not a number": (_top(fl_x="wide"), "fl_x is 'wide', not a number"),
    "fl_x zero": (_top(fl_x=0), "fl_x of images/frame_00000.png is 0, not positive"),
    "fl_y negative in a frame": (
        _frame(2, fl_y=-40.0),
        "fl_y of images/frame_00002.png is -40, not positive",
    ),
    "cx nan": (_top(cx=math.nan), "cx is nan, not a finite number"),
    "fl_x too large": (_top(fl_x=1e300), "not a finite number"),
    "w zero": (_top(w=0), "w of images/frame_00000.png is 0, not a whole number of pixels"),
    "h negative": (_top(h=-36), "h of images/frame_00000.png is -36"),
    "w fractional": (_top(w=47.5), "is 47.5, not a whole number of pixels"),
    "w missing": (lambda meta: meta.pop("w"), "no 'w' for frame images/frame_00000.png"),
    "w disagrees with the image": (_top(w=64), "image is 48x36 but transforms.json says 64x36"),
    "frames not a list": (_top(frames={"a": 1}), "'frames' is a dict, not a list"),
    "no frames": (_top(frames=[]), "'frames' is empty"),
    "frame not an object": (
        lambda meta: meta["frames"].insert(1, [1, 2]),
        "frame 1 is a list, not a JSON object",
    ),
    "time not a number": (_times("soon"), "time of images/frame_00003.png is 'soon', not a number"),
    "time nan": (_times(math.nan), "time of images/frame_00003.png is nan, not a finite number"),
    "time out of range": (_times(2.5), "time of images/frame_00003.png 2.5 is not in [0, 1]"),
    "time on some frames": (_time_on_some_frames, "has no 'time' but images/frame_00000.png has one"),
    "file_path missing": (_drop(4, "file_path"), "frame 4 has no 'file_path'"),
    "file_path not a string": (_frame(4, file_path=7), "frame 4 has no 'file_path'"),
    "image missing": (_frame(4, file_path="images/gone.png"), "gone.png: image not found"),
    "duplicate frame": (_duplicate, "both show images/frame_00002.png"),
    "distortion not a number": (_top(k1="strong"), "k1 is 'strong', not a number"),
    "camera_model not a name": (_top(camera_model=5), "camera_model 5 is not a name"),
    "split not a list": (_top(train_filenames="all"), "train_filenames is not a list of file names"),
    "split names an unknown file": (
        lambda meta: meta["test_filenames"].append("images/nope.png"),
        "test_filenames lists images/nope.png",
    ),
    "depth path not a string": (
        _frame(1, depth_file_path=3),
        "depth_file_path of images/frame_00001.png is 3",
    ),
    "applied_transform garbage": (_top(applied_transform=[[1, 2], [3]]), "applied_transform is ragged"),
    "ply_file_path not a string": (_top(ply_file_path=["a"]), "ply_file_path is ['a'], not a file name"),
}


@pytest.mark.parametrize("case", NERFSTUDIO_CASES)
def test_a_bad_value_in_transforms_json_is_one_line_naming_the_file(capsys, photos, tmp_path, case):
    edit, expected = NERFSTUDIO_CASES[case]
    meta = read_meta(photos)
    edit(meta)
    write_meta(photos, meta)
    line = refused(capsys, photos, tmp_path / "out", photos)
    assert expected in line, line
    assert ";" in line  # says what to do


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{ not json", "not valid JSON (line 1, column 3"),
        (b'{"frames": []\xff\xfe}', "not UTF-8 text (byte 0xff at offset 13)"),
        (b"[1, 2, 3]", "expected a JSON object with 'frames', found a list"),
        (b'"frames"', "found a string"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
    ids=["invalid json", "not utf-8", "a list", "a string", "nested too deeply"],
)
def test_a_transforms_json_that_is_not_a_json_object_is_one_line(capsys, photos, tmp_path, content, expected):
    (photos / "transforms.json").write_bytes(content)
    line = refused(capsys, photos, tmp_path / "out", photos / "transforms.json")
    assert expected in line


def test_a_point_cloud_that_is_not_a_ply_or_not_finite_is_one_line(capsys, photos, tmp_path):
    meta = read_meta(photos)
    ply = photos / meta["ply_file_path"]
    ply.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nend_header\n1"
    )
    line = refused(capsys, photos, tmp_path / "out", ply)
    assert "not a readable point cloud" in line

    ply.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                   "end_header\n0 0 0\nnan 1 2\n")  # fmt: skip
    line = refused(capsys, photos, tmp_path / "out", ply)
    assert "1 of 2 points have a non-finite position" in line


def test_a_truncated_image_of_a_posed_dataset_is_one_line(capsys, photos, tmp_path):
    truncate(photos / "images" / "frame_00002.png")
    line = refused(capsys, photos, tmp_path / "out", photos / "images" / "frame_00002.png")
    assert "truncated" in line


def test_sound_poses_at_float32_precision_still_load(capsys, photos, tmp_path):
    # A rotation rounded to float32 and perturbed by 1e-5 (real exports) is a rotation; the corpus cases are not.
    meta = read_meta(photos)
    for frame in meta["frames"]:
        T = np.asarray(frame["transform_matrix"], dtype=np.float32).astype(np.float64)
        T[:3, :3] += 1e-5
        frame["transform_matrix"] = T.tolist()
    write_meta(photos, meta)
    result = run_cli(capsys, "reconstruct", photos, "-o", tmp_path / "out", *FAST)
    assert result.status == 0, result.stderr


def test_poses_written_with_three_decimals_load_and_become_exact_rotations(photos):
    # Hand-written or exported transforms rounded to 3 decimals (|RᵀR − I| ~ 1e-3) still mean rotations; the
    # reader hands on the nearest rotation, so the rounding never reaches the renderer.
    from splat4d.data import load_scene
    from splat4d.data.config import DataConfig

    meta = read_meta(photos)
    for frame in meta["frames"]:
        frame["transform_matrix"] = np.round(np.asarray(frame["transform_matrix"]), 3).tolist()
    write_meta(photos, meta)
    scene = load_scene(DataConfig(path=photos), photos / "work")
    R = scene.cameras.T_world_cam[:, :3, :3].double()
    assert (R.transpose(1, 2) @ R - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-6


# --- Blender ---------------------------------------------------------------------------------------------------


BLENDER_POSES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "nan": (lambda T: _set(T, (2, 3), math.nan), "has a NaN"),
    "zero rotation": (lambda T: _rotation(T, lambda R: 0 * R), "not a rotation"),
    "scaled rotation": (lambda T: _rotation(T, lambda R: 2 * R), "determinant 8"),
    "reflection": (lambda T: _rotation(T, lambda R: -R), "is a reflection"),
    "bottom row": (lambda T: _set(T, (3, 3), 2.0), "bottom row"),
    "3x3": (lambda T: T[:3, :3], "is 3x3, not 4x4"),
}


@pytest.mark.parametrize("case", BLENDER_POSES)
def test_a_non_rigid_blender_pose_is_one_line(capsys, photos, tmp_path, case):
    import json

    change, expected = BLENDER_POSES[case]
    scene = blender_scene(photos, tmp_path / "blender")
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta["frames"][1]["transform_matrix"] = change(np.asarray(meta["frames"][1]["transform_matrix"])).tolist()
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    line = refused(capsys, scene, tmp_path / "out", scene / "transforms_train.json")
    assert f"transform_matrix of ./train/r_1 {expected}" in line or expected in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"[]", "found a list"),
        (b'{"camera_angle_x": 0.7', "not valid JSON"),
    ],
)
def test_a_blender_file_that_is_not_a_json_object_is_one_line(capsys, photos, tmp_path, content, expected):
    scene = blender_scene(photos, tmp_path / "blender")
    (scene / "transforms_train.json").write_bytes(content)
    assert expected in refused(capsys, scene, tmp_path / "out", scene / "transforms_train.json")


# --- COLMAP workspaces -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspaces(tiny_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("colmap")
    return {
        "bin": colmap_workspace(tiny_photos, root / "bin", text=False),
        "txt": colmap_workspace(tiny_photos, root / "txt", text=True),
        "legacy bin": colmap_workspace(tiny_photos, root / "legacy_bin", text=False, legacy=True),
        "legacy txt": colmap_workspace(tiny_photos, root / "legacy_txt", text=True, legacy=True),
        "opencv": colmap_workspace(tiny_photos, root / "opencv", text=False, model="OPENCV"),
    }


def _workspace(workspaces: dict[str, Path], kind: str, tmp_path: Path) -> tuple[Path, Path]:
    ws = Path(shutil.copytree(workspaces[kind], tmp_path / "ws"))
    return ws, ws / "sparse" / "0"


def _cut(name: str, size: int) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        path = model / name
        path.write_bytes(path.read_bytes()[:size])

    return damage


def _garbage(name: str) -> Callable[[Path], None]:
    return lambda model: (model / name).write_bytes(b"\xde\xad\xbe\xef" * 50)


def _replace_line(name: str, index: int, text: str) -> Callable[[Path], None]:
    """Replace the `index`-th line that is not a comment (0-based) of a text model file."""

    def damage(model: Path) -> None:
        lines = (model / name).read_text().splitlines()
        data = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
        lines[data[index]] = text
        (model / name).write_text("\n".join(lines) + "\n")

    return damage


def _field(name: str, index: int, field: int, value: str) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        lines = (model / name).read_text().splitlines()
        data = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
        fields = lines[data[index]].split()
        fields[field] = value
        lines[data[index]] = " ".join(fields)
        (model / name).write_text("\n".join(lines) + "\n")

    return damage


COLMAP_FILE_CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # pycolmap alone: zero cameras from a cut cameras.bin, bad_alloc or an OOM kill from points3D.bin, a hang on
    # frames.bin.
    "cut cameras.bin": ("bin", _cut("cameras.bin", 20), "cameras.bin is truncated or corrupt"),
    "cut images.bin": ("bin", _cut("images.bin", 100), "images.bin is truncated or corrupt"),
    "cut points3D.bin": ("bin", _cut("points3D.bin", 20), "points3D.bin is truncated or corrupt"),
    "empty points3D.bin": ("bin", _cut("points3D.bin", 0), "points3D.bin is truncated or corrupt"),
    "garbage frames.bin": ("bin", _garbage("frames.bin"), "frames.bin is truncated or corrupt"),
    "garbage rigs.bin": ("bin", _garbage("rigs.bin"), "rigs.bin is truncated or corrupt"),
    "garbage cameras.bin": ("bin", _garbage("cameras.bin"), "cameras.bin is truncated or corrupt"),
    "extra bytes in images.bin": (
        "bin",
        lambda model: (model / "images.bin").write_bytes((model / "images.bin").read_bytes() + b"\0" * 5),
        "5 bytes follow its last record",
    ),
    "word in images.txt": (
        "txt",
        _field("images.txt", 0, 1, "abc"),
        "images.txt line 5: pose qw 'abc' is not a number",
    ),
    "short line in images.txt": (
        "txt",
        _replace_line("images.txt", 0, "1 0.5 0.5"),
        "3 fields where 10 are needed",
    ),
    "nan in frames.txt": (
        "txt",
        _field("frames.txt", 0, 5, "nan"),
        "frames.txt line 4: pose qz nan is not a finite",
    ),
    "unknown camera model": (
        "txt",
        _field("cameras.txt", 0, 1, "FOO"),
        "camera model 'FOO' is not a COLMAP camera",
    ),
    "too few camera params": (
        "txt",
        _replace_line("cameras.txt", 0, "1 PINHOLE 48 36 40 40"),
        "a PINHOLE camera has 4 parameters, this line has 2",
    ),
    "zero width": ("txt", _field("cameras.txt", 0, 2, "0"), "width 0 is less than 1"),
    "bad point colour": ("txt", _field("points3D.txt", 0, 4, "300"), "colour R 300 is more than 255"),
    "binary bytes in cameras.txt": ("txt", _garbage("cameras.txt"), "cameras.txt is not a text file"),
}


@pytest.mark.parametrize("case", COLMAP_FILE_CASES)
def test_a_damaged_colmap_model_file_is_one_line_naming_it(capsys, workspaces, tmp_path, case):
    kind, damage, expected = COLMAP_FILE_CASES[case]
    ws, model = _workspace(workspaces, kind, tmp_path)
    damage(model)
    line = refused(capsys, ws, tmp_path / "out", model)
    assert expected in line, line


COLMAP_VALUE_CASES: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    "nan quaternion": (
        "legacy bin",
        lambda model: put_double(model / "images.bin", IMAGE_QW + 8, math.nan),
        "images.bin",
        "the pose of frame_00000.png is not finite",
    ),
    "inf translation": (
        "legacy bin",
        lambda model: put_double(model / "images.bin", IMAGE_QW + 5 * 8, math.inf),
        "images.bin",
        "the pose of frame_00000.png is not finite",
    ),
    "zero quaternion": (
        "legacy txt",
        _replace_line("images.txt", 0, "1 0 0 0 0 0 0 3 1 frame_00000.png"),
        "images.txt",
        "the pose of frame_00000.png has a quaternion of norm 0",
    ),
    "scaled quaternion in frames.txt": (
        "txt",
        lambda model: [_field("frames.txt", 0, k, str(2 * float(v)))(model) for k, v in _quaternion(model)],
        "frames.txt",
        "has a quaternion of norm 2",
    ),
    "negative focal length": (
        "bin",
        lambda model: put_double(model / "cameras.bin", CAMERA_PARAMS, -5.0),
        "cameras.bin",
        "camera 1 (PINHOLE) has focal length [-5.0",
    ),
    "zero focal length": ("txt", _field("cameras.txt", 0, 4, "0"), "cameras.txt", "focal length [0.0"),
    "nan point": (
        "bin",
        lambda model: put_double(model / "points3D.bin", POINT_X, math.nan),
        "points3D.bin",
        "1 of 10 points have a non-finite position",
    ),
}


def _quaternion(model: Path) -> list[tuple[int, str]]:
    first = next(line for line in (model / "frames.txt").read_text().splitlines() if not line.startswith("#"))
    return [(k, first.split()[k]) for k in range(2, 6)]


@pytest.mark.parametrize("case", COLMAP_VALUE_CASES)
def test_an_unusable_camera_pose_or_point_in_a_colmap_model_is_one_line(capsys, workspaces, tmp_path, case):
    kind, damage, file, expected = COLMAP_VALUE_CASES[case]
    ws, model = _workspace(workspaces, kind, tmp_path)
    damage(model)
    line = refused(capsys, ws, tmp_path / "out", model / file)
    assert expected in line, line


def test_an_image_listed_in_a_colmap_model_but_missing_is_one_line(capsys, workspaces, tmp_path):
    ws, _ = _workspace(workspaces, "bin", tmp_path)
    (ws / "images" / "frame_00004.png").unlink()
    line = refused(capsys, ws, tmp_path / "out", ws / "images" / "frame_00004.png")
    assert "listed in the COLMAP model but not found" in line


@pytest.mark.parametrize("kind", ["bin", "opencv"], ids=["pinhole", "undistorted"])
@pytest.mark.parametrize("how", ["truncated", "empty", "not an image"])
def test_a_damaged_image_of_a_colmap_workspace_is_refused_before_use(capsys, workspaces, tmp_path, kind, how):
    ws, _ = _workspace(workspaces, kind, tmp_path)
    image = ws / "images" / "frame_00005.png"
    {
        "truncated": truncate,
        "empty": lambda p: p.write_bytes(b""),
        "not an image": lambda p: p.write_text("hi"),
    }[how](image)
    line = refused(capsys, ws, tmp_path / "out", image)
    assert {
        "truncated": "the file is truncated",
        "empty": "the file is empty",
        "not an image": "not an image",
    }[how] in line
    assert not (
        tmp_path / "out" / "cache" / "undistorted" / "images"
    ).exists()  # nothing padded grey was cached


# --- N3DV multi-view video -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def n3dv(tiny_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return n3dv_folder(tiny_photos, tmp_path_factory.mktemp("n3dv") / "scene")


def _poses(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def damage(scene: Path) -> None:
        np.save(scene / "poses_bounds.npy", change(np.load(scene / "poses_bounds.npy")))

    return damage


def _rotation_rows(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(poses: np.ndarray) -> np.ndarray:
        poses = poses.copy()
        mats = poses[:, :15].reshape(-1, 3, 5)
        mats[1, :, :3] *= scale
        poses[:, :15] = mats.reshape(-1, 15)
        return poses

    return change


N3DV_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "wrong shape": (_poses(lambda p: p[:, :15]), "expected an N x 17 array, got shape (2, 15)"),
    "nan": (_poses(lambda p: _set(p, (1, 3), math.nan)), "row 1 holds a NaN or infinite value"),
    "fewer rows than videos": (_poses(lambda p: p[:1]), "has 1 camera rows but the folder holds 2"),
    "strings": (_poses(lambda p: p.astype(str)), "holds <U32 values, not real numbers"),
    "scaled rotation": (_poses(_rotation_rows(2.0)), "the pose in row 1 (cam01.mp4) has a 3x3 part"),
    "zero rotation": (_poses(_rotation_rows(0.0)), "the pose in row 1 (cam01.mp4) has a 3x3 part"),
    "negative focal": (_poses(lambda p: _set(p, (0, 14), -3.0)), "row 0 (cam00.mp4): image size and focal"),
    "not an npy file": (lambda s: (s / "poses_bounds.npy").write_text("poses"), "not in .npy format"),
    "empty file": (lambda s: (s / "poses_bounds.npy").write_bytes(b""), "not a readable .npy array"),
    "an npz archive": (
        lambda s: shutil.move(np.savez(s / "p.npz", a=np.zeros(3)) or s / "p.npz", s / "poses_bounds.npy"),
        "is an .npz archive",
    ),
}


@pytest.mark.parametrize("case", N3DV_CASES)
def test_a_bad_poses_bounds_file_is_one_line(capsys, n3dv, tmp_path, case):
    damage, expected = N3DV_CASES[case]
    scene = Path(shutil.copytree(n3dv, tmp_path / "scene"))
    damage(scene)
    line = refused(capsys, scene, tmp_path / "out", scene / "poses_bounds.npy")
    assert expected in line, line


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42 garbage" * 10], ids=["empty", "garbage"])
def test_a_corrupt_video_of_a_multiview_folder_is_one_line(capsys, n3dv, tmp_path, content):
    scene = Path(shutil.copytree(n3dv, tmp_path / "scene"))
    (scene / "cam01.mp4").write_bytes(content)
    assert "not a readable video" in refused(capsys, scene, tmp_path / "out", scene / "cam01.mp4")


# --- photos and videos posed with SfM --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "empty", "not an image"])
def test_a_damaged_photo_is_refused_before_sfm_naming_it(capsys, photos, tmp_path, how, monkeypatch):
    import splat4d.data.sfm as sfm

    def no_sfm(*args, **kwargs):
        raise AssertionError("SfM ran on a damaged photo")

    monkeypatch.setattr(sfm, "run_sfm", no_sfm)
    folder = jpeg_folder(photos, tmp_path / "jpegs")
    photo = folder / "frame_00002.jpg"
    if how == "truncated":
        truncate(photo, keep=0.8)  # past the JPEG headers, inside the compressed data
    elif how == "empty":
        photo.write_bytes(b"")
    else:
        photo.write_text("these are my holiday notes, not a photo")
    line = refused(capsys, folder, tmp_path / "out", photo)
    expected = {
        "truncated": "the file is truncated",
        "empty": "the file is empty",
        "not an image": "not an image",
    }
    assert expected[how] in line


def test_pil_finds_the_truncation_that_pycolmap_pads_grey(photos, tmp_path):
    folder = jpeg_folder(photos, tmp_path / "jpegs", n=1)
    photo = next(folder.iterdir())
    assert check_image(photo) == (48, 36)
    truncate(photo, keep=0.8)
    with pytest.raises(DatasetError, match=r"frame_00000\.jpg: cannot read image: the file is truncated"):
        check_image(photo)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20, b"hello"],
    ids=["empty", "garbage", "text"],
)
def test_a_corrupt_video_file_is_one_line(capsys, tmp_path, content):
    video = tmp_path / "clip" / "holiday.mp4"
    video.parent.mkdir()
    video.write_bytes(content)
    line = refused(capsys, video, tmp_path / "out", video)
    assert "cannot read video" in line


def test_a_truncated_video_file_is_one_line(capsys, n3dv, tmp_path):
    video = tmp_path / "clip" / "holiday.mp4"
    video.parent.mkdir()
    shutil.copy(n3dv / "cam00.mp4", video)
    truncate(video, keep=0.5)
    refused(capsys, video, tmp_path / "out", video)


# --- masks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["not an image", "truncated"])
def test_an_unreadable_mask_is_one_line_naming_it(capsys, photos, tmp_path, how):
    import imageio.v3 as iio

    masks = tmp_path / "masks"
    masks.mkdir()
    for k in range(8):
        iio.imwrite(masks / f"frame_{k:05d}.png", np.full((36, 48), 255, np.uint8))
    mask = masks / "frame_00003.png"
    mask.write_text("not a mask") if how == "not an image" else truncate(mask, keep=0.6)
    before = tree_digest(masks)
    line = refused(capsys, photos, tmp_path / "out", mask, flags=("--data.masks", str(masks)))
    assert "not an image" in line or "truncated" in line
    assert tree_digest(masks) == before


# --- the whole-scene check behind every reader -----------------------------------------------------------------


def _scene(T: torch.Tensor, K: torch.Tensor | None = None, times: torch.Tensor | None = None) -> SceneData:
    n = len(T)
    K = K if K is not None else torch.tensor([[40.0, 0, 24], [0, 40, 18], [0, 0, 1]]).expand(n, 3, 3)
    return SceneData(
        cameras=Cameras(T_world_cam=T, Ks=K.clone(), width=48, height=36, times=times),
        image_paths=[Path(f"images/v{i}.png") for i in range(n)],
        depth_paths=[None] * n,
        train_indices=list(range(n)),
        test_indices=[],
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda T, K, t: T[1, 0, 3].fill_(math.nan), r"images/v1\.png: its camera pose has a NaN"),
        (
            lambda T, K, t: T[1, :3, :3].mul_(2),
            r"v1\.png: its camera pose has a 3x3 part that is not a rotation",
        ),
        (lambda T, K, t: T[1, :3, 0].neg_(), r"v1\.png: its camera pose has a 3x3 part that is a reflection"),
        (lambda T, K, t: T[1, 3, 3].fill_(0), r"v1\.png: its camera pose has bottom row"),
        (
            lambda T, K, t: K[2, 0, 0].fill_(0),
            r"v2\.png: its camera's focal length \(0, 40\) is not positive",
        ),
        (lambda T, K, t: K[2, 1, 2].fill_(math.inf), r"v2\.png: its camera's intrinsics .* not all finite"),
        (lambda T, K, t: t[2].fill_(1.5), r"v2\.png: its time 1\.5 is not in \[0, 1\]"),
        (lambda T, K, t: t[0].fill_(math.nan), r"v0\.png: its time nan is not in \[0, 1\]"),
    ],
)
def test_load_scene_refuses_any_unusable_camera_a_reader_might_let_through(damage, expected):
    T = torch.eye(4).repeat(3, 1, 1)
    K = torch.tensor([[40.0, 0, 24], [0, 40, 18], [0, 0, 1]]).repeat(3, 1, 1)
    times = torch.tensor([0.0, 0.5, 1.0])
    damage(T, K, times)
    with pytest.raises(DatasetError, match=expected) as info:
        _validate(_scene(T, K, times), Path("data"))
    assert "\n" not in str(info.value) and "fix or remove this view in data" in str(info.value)


def test_the_rotation_tolerance_accepts_float32_rounding_and_refuses_real_damage():
    rng = np.random.default_rng(0)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R *= np.linalg.det(R)
    T = np.eye(4)
    T[:3, :3] = R
    assert describe_pose_problem(T.astype(np.float32)) is None
    assert describe_pose_problem(T + np.pad(np.full((3, 3), 1e-5), ((0, 1), (0, 1)))) is None
    assert describe_pose_problem(np.diag([1.01, 1.0, 1.0, 1.0])) is not None  # 2% stretch: RᵀR off by 0.02


def test_a_damaged_sfm_cache_is_made_again_not_read(workspaces, tmp_path):
    from splat4d.data.sfm import _model_intact

    model = Path(shutil.copytree(workspaces["bin"] / "sparse" / "0", tmp_path / "sfm" / "model"))
    assert _model_intact(model) and _model_intact(tmp_path / "absent")
    (model / "points3D.bin").write_bytes(b"\xff" * 12)  # pycolmap would reserve memory for 2^64 points
    assert not _model_intact(model)
