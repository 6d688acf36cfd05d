"""Bad scene files end in one line: 3DGS and 4D PLYs (damaged headers, cut-short bodies, non-finite or undrawable
Gaussians), nerfstudio camera paths and temporal hierarchy folders are checked where they are read, so the user
sees `error: <file>: <what is wrong>; <what to do>` and exit status 2 instead of a traceback or a blank viewer."""

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.errors import UserError
from splat4d.export.camera_path import CameraPathError, load_nerfstudio_camera_path
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.hierarchy import MANIFEST_NAME, HierarchyFormatError, build, load_hierarchy, save_hierarchy
from splat4d.io.ply import PlyError, read_any_ply, read_ply, read_ply_4d, write_ply, write_ply_4d
from splat4d.io.splat import SplatError, read_splat, write_splat
from tests.reliability.conftest import CliResult, assert_one_line_error, run_cli, tree_digest
from viewer.scene import load_view_scene

N = 6
BAD_ROWS = [1, 4]


def _gaussians3d() -> Gaussians:
    g = torch.Generator().manual_seed(0)
    return Gaussians(
        {
            "means": torch.randn(N, 3, generator=g),
            "log_scales": torch.randn(N, 3, generator=g) - 2,
            "quats": torch.randn(N, 4, generator=g),
            "opacity_logits": torch.randn(N, generator=g),
            "sh0": torch.randn(N, 1, 3, generator=g),
            "shN": torch.randn(N, 3, 3, generator=g),
        }
    )


def _gaussians4d(rotation: str = "quats") -> Gaussians4D:
    g = torch.Generator().manual_seed(0)
    return Gaussians4D.from_points(
        torch.randn(N, 3, generator=g),
        torch.rand(N, 3, generator=g),
        torch.rand(N, generator=g),
        sh_degree=1,
        time_degree=1,
        rotation=rotation,
    )


@pytest.fixture
def ply3d(tmp_path: Path) -> Path:
    write_ply(tmp_path / "scene.ply", _gaussians3d())
    return tmp_path / "scene.ply"


@pytest.fixture
def ply4d(tmp_path: Path) -> Path:
    write_ply_4d(tmp_path / "scene4d.ply", _gaussians4d())
    return tmp_path / "scene4d.ply"


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`splat4d view` must fail before serving; should a bad file be accepted, fail the test instead of hanging."""

    def refuse(*args, **kwargs):
        raise AssertionError("the viewer started: the bad file was accepted")

    monkeypatch.setattr("viewer.ViewerApp", refuse)


def _view(capsys: pytest.CaptureFixture, scene: Path) -> CliResult:
    return run_cli(capsys, "view", scene, "--device", "cpu", "--port", "0")


def _split(data: bytes) -> tuple[bytes, list[str]]:
    """The header (through end_header's line break) and the vertex property names of a file we wrote."""
    start = data.index(b"end_header\n") + len(b"end_header\n")
    names = [line.split()[-1] for line in data[:start].decode().splitlines() if line.startswith("property")]
    return data[:start], names


def _set_values(path: Path, prop: str, value: float, rows: list[int] | None = None) -> None:
    """Overwrite property `prop` of the vertices `rows` (default: BAD_ROWS) of a float32 PLY written by splat4d."""
    data = path.read_bytes()
    header, names = _split(data)
    table = np.frombuffer(data, dtype=[(n, "<f4") for n in names], offset=len(header)).copy()
    table[prop][BAD_ROWS if rows is None else rows] = value
    path.write_bytes(header + table.tobytes())


# --- PLY: values that cannot be drawn ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "value", "label"),
    [
        ("x", math.nan, "x/y/z"),
        ("z", math.inf, "x/y/z"),
        ("opacity", math.nan, "opacity"),
        ("scale_1", -math.inf, "scale_0-2"),
        ("rot_3", math.nan, "rot_0-3"),
        ("f_dc_2", math.nan, "f_dc_0-2"),
        ("f_rest_7", math.inf, "f_rest_*"),
    ],
)
def test_non_finite_values_in_a_3d_ply_are_refused_naming_the_file_and_the_count(
    capsys, no_server, ply3d: Path, prop: str, value: float, label: str
) -> None:
    _set_values(ply3d, prop, value)
    before = tree_digest(ply3d.parent)
    line = assert_one_line_error(_view(capsys, ply3d), ply3d, f"{len(BAD_ROWS)} of {N} Gaussians", label)
    assert "non-finite" in line
    assert tree_digest(ply3d.parent) == before
    with pytest.raises(PlyError, match="non-finite"):
        read_ply(ply3d)


@pytest.mark.parametrize(
    ("prop", "value", "label"),
    [
        ("y", math.nan, "x/y/z"),
        ("t", math.nan, "t"),
        ("scale_t", math.inf, "scale_t"),
        ("scale_0", math.nan, "scale_0-2"),
        ("opacity", -math.inf, "opacity"),
        ("rot_l_2", math.nan, "rot_l_0-3"),
        ("rot_r_0", math.inf, "rot_r_0-3"),
        ("f_dc_1_2", math.nan, "f_dc_*"),
        ("f_rest_0_4", math.nan, "f_rest_*"),
    ],
)
def test_non_finite_values_in_a_4d_ply_are_refused_naming_the_file_and_the_count(
    capsys, no_server, ply4d: Path, prop: str, value: float, label: str
) -> None:
    _set_values(ply4d, prop, value)
    assert_one_line_error(_view(capsys, ply4d), ply4d, f"{len(BAD_ROWS)} of {N} Gaussians", label)
    with pytest.raises(PlyError, match="non-finite"):
        read_ply_4d(ply4d)


def test_double_precision_values_that_overflow_float32_are_refused(tmp_path: Path) -> None:
    write_ply(tmp_path / "single.ply", _gaussians3d())
    single = (tmp_path / "single.ply").read_bytes()
    header, names = _split(single)
    table = np.frombuffer(single, dtype=[(n, "<f4") for n in names], offset=len(header))
    wide = table.astype([(n, "<f8") for n in names])
    wide["x"][0] = 1e300
    data = header.replace(b"property float ", b"property double ") + wide.tobytes()
    (tmp_path / "double.ply").write_bytes(data)
    with pytest.raises(
        PlyError,
        match=rf"double\.ply: 1 of {N} Gaussians have non-finite values \(NaN or infinity\) in x/y/z;",
    ):
        read_ply(tmp_path / "double.ply")


@pytest.mark.parametrize("fmt", ["3d", "4d quats", "4d rotors"])
def test_all_zero_rotations_are_refused(capsys, no_server, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "scene.ply"
    if fmt == "3d":
        write_ply(path, _gaussians3d())
        props = [f"rot_{i}" for i in range(4)]
    elif fmt == "4d quats":
        write_ply_4d(path, _gaussians4d())
        props = [f"rot_l_{i}" for i in range(4)]
    else:
        write_ply_4d(path, _gaussians4d(rotation="rotors"))
        props = [f"rotor_{i}" for i in range(8)]
    for prop in props:
        _set_values(path, prop, 0.0)
    line = assert_one_line_error(_view(capsys, path), path, f"{len(BAD_ROWS)} of {N} Gaussians")
    assert "all-zero rotations" in line


def test_log_scales_that_overflow_when_rendered_are_refused(tmp_path: Path) -> None:
    write_ply(tmp_path / "huge.ply", _gaussians3d())
    _set_values(tmp_path / "huge.ply", "scale_2", 60.0, rows=[0])
    with pytest.raises(PlyError, match=rf"huge\.ply: 1 of {N} Gaussians have log-scales above 44"):
        read_ply(tmp_path / "huge.ply")


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("time_period nan", "time_period nan must be a positive finite number"),
        ("time_period inf", "time_period inf must be a positive finite number"),
        ("time_period 0", "time_period 0.0 must be a positive finite number"),
        ("time_period -2", "time_period -2.0 must be a positive finite number"),
        ("time_period soon", "bad time_period comment"),
        ("time_period", "bad time_period comment"),
    ],
)
def test_a_4d_ply_with_an_unusable_time_period_is_refused(
    capsys, no_server, ply4d: Path, comment: str, expected: str
) -> None:
    data = ply4d.read_bytes()
    ply4d.write_bytes(data.replace(b"comment time_period 1.0\n", f"comment {comment}\n".encode(), 1))
    assert expected in assert_one_line_error(_view(capsys, ply4d), ply4d)


# --- PLY: damaged files -------------------------------------------------------------------------------------------


def _header_edit(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        header, _ = _split(data)
        assert old in header
        return header.replace(old, new, 1) + data[len(header) :]

    return edit


def _zero_vertices(data: bytes) -> bytes:
    header, _ = _split(data)
    return header.replace(b"element vertex 6", b"element vertex 0")


DAMAGED_PLY: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "zero-byte file": (lambda data: b"", "the file is empty"),
    "zero vertices": (_zero_vertices, "holds no Gaussians"),
    "non-integer vertex count": (_header_edit(b"element vertex 6", b"element vertex six"), "not an integer"),
    "fractional vertex count": (_header_edit(b"element vertex 6", b"element vertex 6.5"), "not an integer"),
    "negative vertex count": (_header_edit(b"element vertex 6", b"element vertex -6"), "negative count"),
    "vertex count missing": (_header_edit(b"element vertex 6", b"element vertex"), "element <name> <count>"),
    "missing end_header": (_header_edit(b"end_header\n", b""), "no end_header line"),
    "no line break after end_header": (
        _header_edit(b"end_header\n", b"end_header"),
        "not followed by a line",
    ),
    "non-ASCII garbage in the header": (
        _header_edit(b"element vertex", b"\xff\xfe\x00\x9c garbage\nelement vertex"),
        "is not ASCII text",
    ),
    "an unknown header keyword": (_header_edit(b"element vertex", b"hello world\nelement vertex"), "unknown"),
    "not a PLY at all": (lambda data: b"\x89PNG\r\n\x1a\n" + data[:100], "not a PLY file"),
    "ascii format": (_header_edit(b"binary_little_endian", b"ascii"), "format 'ascii' is not supported"),
    "no format line": (_header_edit(b"format binary_little_endian 1.0\n", b""), "no format line"),
    "truncated body": (lambda data: data[:-10], "truncated"),
    "a property twice": (_header_edit(b"property float y\n", b"property float x\n"), "repeats"),
    "an unknown property type": (
        _header_edit(b"property float y\n", b"property half y\n"),
        "unknown property",
    ),
    "a property before any element": (
        _header_edit(b"element vertex 6\n", b"property float w\nelement vertex 6\n"),
        "before any element",
    ),
    "f_rest properties with a gap": (_header_edit(b"f_rest_1\n", b"f_rest_99\n"), "not numbered"),
}


@pytest.mark.parametrize("case", list(DAMAGED_PLY))
def test_a_damaged_ply_is_one_line_naming_the_file(capsys, no_server, ply3d: Path, case: str) -> None:
    damage, expected = DAMAGED_PLY[case]
    ply3d.write_bytes(damage(ply3d.read_bytes()))
    before = tree_digest(ply3d.parent)
    line = assert_one_line_error(_view(capsys, ply3d), ply3d)
    assert expected in line, line
    assert tree_digest(ply3d.parent) == before
    with pytest.raises(PlyError):
        read_any_ply(ply3d)


def test_a_ply_path_that_is_a_folder_is_one_line(capsys, no_server, tmp_path: Path) -> None:
    folder = tmp_path / "scene.ply"
    folder.mkdir()
    assert "is a folder" in assert_one_line_error(_view(capsys, folder), folder)
    with pytest.raises(PlyError, match="is a folder"):
        read_ply(folder)


def test_the_viewer_loader_raises_a_user_error_for_damaged_ply_files(ply4d: Path) -> None:
    """The viewer's own loader (what `splat4d view` serves) refuses the scene instead of showing "bounds: nan"."""
    _set_values(ply4d, "x", math.nan)
    with pytest.raises(UserError, match=rf"scene4d\.ply: 2 of {N} Gaussians have non-finite"):
        load_view_scene(ply4d, {}, torch.device("cpu"))
    ply4d.write_bytes(ply4d.read_bytes()[:-3])
    with pytest.raises(UserError, match="truncated"):
        load_view_scene(ply4d, {}, torch.device("cpu"))


def test_sound_ply_files_still_load_as_3d_or_4d(ply3d: Path, ply4d: Path) -> None:
    assert isinstance(read_any_ply(ply3d), Gaussians) and len(read_any_ply(ply3d)) == N
    assert isinstance(read_any_ply(ply4d), Gaussians4D) and len(read_any_ply(ply4d)) == N


# --- .splat -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: b"", "the file is empty"),
        (lambda d: d[:-5], "not a whole number of 32-byte"),
        (lambda d: np.float32(np.nan).tobytes() + d[4:], "1 of 6 Gaussians have non-finite"),
        (lambda d: d[:12] + np.float32(-1).tobytes() + d[16:], "1 of 6 Gaussians have non-positive scales"),
        (lambda d: d[:28] + bytes([128] * 4) + d[32:], "1 of 6 Gaussians have an all-zero rotation"),
    ],
)
def test_a_damaged_splat_file_is_one_line(tmp_path: Path, damage, expected: str) -> None:
    write_splat(tmp_path / "a.splat", _gaussians3d())
    (tmp_path / "a.splat").write_bytes(damage((tmp_path / "a.splat").read_bytes()))
    with pytest.raises(SplatError, match=r"a\.splat: ") as info:
        read_splat(tmp_path / "a.splat")
    assert expected in str(info.value) and "\n" not in str(info.value)


# --- camera_path.json -----------------------------------------------------------------------------------------------


def _camera_path_doc() -> dict:
    pose = [1.0, 0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 1.0]
    return {
        "camera_type": "perspective",
        "render_width": 64,
        "render_height": 48,
        "fps": 24,
        "camera_path": [
            {"camera_to_world": pose, "fov": 50.0, "time": 0.0},
            {"camera_to_world": pose, "fov": 60.0, "time": 1.0},
        ],
    }


def _pose_edit(i: int, value) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["camera_path"][0]["camera_to_world"][i] = value

    return edit


def _scaled(doc: dict) -> None:
    doc["camera_path"][1]["camera_to_world"] = [
        2.0 * x for x in doc["camera_path"][1]["camera_to_world"][:12]
    ] + [
        0.0,
        0.0,
        0.0,
        1.0,
    ]


BAD_CAMERA_PATHS: dict[str, tuple[Callable[[dict], object], str]] = {
    "camera_path missing": (lambda d: d.pop("camera_path"), "no camera_path list"),
    "camera_path empty": (lambda d: d.update(camera_path=[]), "camera_path is empty"),
    "camera_path not a list": (lambda d: d.update(camera_path={"a": 1}), "not a list of keyframes"),
    "keyframe not an object": (lambda d: d["camera_path"].append(3), "camera_path[2] is not an object"),
    "camera_to_world missing": (
        lambda d: d["camera_path"][1].pop("camera_to_world"),
        "has no camera_to_world",
    ),
    "camera_to_world of 12 numbers": (
        lambda d: d["camera_path"][0].update(camera_to_world=[1.0] * 12),
        "camera_path[0].camera_to_world holds 12 numbers",
    ),
    "camera_to_world not a list": (
        lambda d: d["camera_path"][0].update(camera_to_world="eye"),
        "camera_to_world is not a list",
    ),
    "camera_to_world NaN": (_pose_edit(3, math.nan), "camera_to_world is NaN, not a finite number"),
    "camera_to_world infinite": (_pose_edit(7, math.inf), "is Infinity, not a finite number"),
    "camera_to_world text": (_pose_edit(0, "one"), 'is "one", not a finite number'),
    "camera_to_world scaled": (
        _scaled,
        "camera_path[1].camera_to_world has a 3x3 part that is not a rotation",
    ),
    "camera_to_world sheared": (_pose_edit(1, 0.5), "3x3 part that is not a rotation"),
    "camera_to_world mirrored": (_pose_edit(0, -1.0), "3x3 part that is a reflection"),
    "camera_to_world bottom row": (_pose_edit(12, 1.0), "has bottom row [1 0 0 1], not [0 0 0 1]"),
    "camera_to_world beyond float32": (_pose_edit(3, 1e300), "is 1e+300, not a finite number"),
    "fov zero": (lambda d: d["camera_path"][0].update(fov=0), "camera_path[0].fov is 0 degrees"),
    "fov negative": (lambda d: d["camera_path"][1].update(fov=-10), "fov is -10 degrees"),
    "fov 180": (lambda d: d["camera_path"][0].update(fov=180), "must be between 0 and 180"),
    "fov text": (lambda d: d["camera_path"][0].update(fov="wide"), 'fov is "wide"'),
    "default fov NaN": (
        lambda d: (d["camera_path"][0].pop("fov"), d.update(default_fov=math.nan)),
        "default_fov is NaN",
    ),
    "render_width missing": (lambda d: d.pop("render_width"), "missing key 'render_width'"),
    "render_width zero": (lambda d: d.update(render_width=0), "render_width is 0, not a whole number"),
    "render_height negative": (lambda d: d.update(render_height=-48), "render_height is -48"),
    "render_height fractional": (lambda d: d.update(render_height=47.5), "render_height is 47.5"),
    "render_width text": (lambda d: d.update(render_width="640"), 'render_width is "640", not a finite'),
    "render_width huge": (lambda d: d.update(render_width=10**9), "render_width is 1000000000"),
    "render_width infinite": (lambda d: d.update(render_width=math.inf), "render_width is Infinity"),
    "render_width boolean": (lambda d: d.update(render_width=True), "render_width is true"),
    "fps zero": (lambda d: d.update(fps=0), "fps is 0, must be positive"),
    "fps negative": (lambda d: d.update(fps=-24), "fps is -24, must be positive"),
    "fps text": (lambda d: d.update(fps="24"), 'fps is "24", not a finite number'),
    "fps NaN": (lambda d: d.update(fps=math.nan), "fps is NaN"),
    "time NaN": (lambda d: d["camera_path"][1].update(time=math.nan), "camera_path[1].time is NaN"),
    "time infinite": (lambda d: d["camera_path"][0].update(time=-math.inf), "time is -Infinity"),
    "time text": (lambda d: d["camera_path"][0].update(time="noon"), 'time is "noon"'),
    "a fisheye camera": (lambda d: d.update(camera_type="fisheye"), "camera_type 'fisheye' is not supported"),
}


@pytest.mark.parametrize("case", list(BAD_CAMERA_PATHS))
def test_a_bad_camera_path_file_is_one_line_naming_the_file_and_the_value(
    capsys, tmp_path: Path, case: str
) -> None:
    from splat4d.cli import run_reporting_errors

    edit, expected = BAD_CAMERA_PATHS[case]
    doc = _camera_path_doc()
    edit(doc)
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CameraPathError) as info:
        load_nerfstudio_camera_path(path)
    assert expected in str(info.value), str(info.value)
    # What `splat4d export video --path camera-path --camera-path-json FILE` prints for it.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_reporting_errors(lambda: load_nerfstudio_camera_path(path))
    result = CliResult(exited.value.code, "", capsys.readouterr().err)
    assert_one_line_error(result, path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"camera_path": [', "not valid JSON (Expecting value at line 1 column 18)"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00{", "not UTF-8 text"),
        (b"[1, 2, 3]", "no camera_path list"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"fps": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_a_camera_path_file_that_is_not_json_is_one_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    (tmp_path / "camera_path.json").write_bytes(content)
    with pytest.raises(CameraPathError, match=r"camera_path\.json: ") as info:
        load_nerfstudio_camera_path(tmp_path / "camera_path.json")
    assert expected in str(info.value)


def test_a_camera_path_that_is_missing_or_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CameraPathError, match=r"absent\.json: file not found"):
        load_nerfstudio_camera_path(tmp_path / "absent.json")
    with pytest.raises(CameraPathError, match="is a folder"):
        load_nerfstudio_camera_path(tmp_path)


def test_a_sound_camera_path_still_loads_with_nested_4x4_poses(tmp_path: Path) -> None:
    doc = _camera_path_doc()
    flat = doc["camera_path"][0]["camera_to_world"]
    doc["camera_path"][0]["camera_to_world"] = [flat[i : i + 4] for i in range(0, 16, 4)]
    (tmp_path / "camera_path.json").write_text(json.dumps(doc))
    imported = load_nerfstudio_camera_path(tmp_path / "camera_path.json")
    assert len(imported.cameras) == 2 and imported.fps == 24
    assert imported.cameras.times is not None and imported.cameras.times.tolist() == [0.0, 1.0]


# --- temporal hierarchy folders -------------------------------------------------------------------------------------


@pytest.fixture
def hierarchy(tmp_path: Path) -> Path:
    """A depth-1 hierarchy with a root segment (long-lived Gaussians) and both leaves."""
    n = 12
    g = torch.Generator().manual_seed(0)
    times = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9] * 2)
    scene = Gaussians4D.from_points(
        torch.randn(n, 3, generator=g),
        torch.rand(n, 3, generator=g),
        times,
        sh_degree=0,
        init_time_scale=0.01,
    )
    with torch.no_grad():
        scene.params["log_scales4"][:3, 3] = 1.0  # long-lived: the root segment
    folder = tmp_path / "hierarchy"
    save_hierarchy(folder, build(scene, depth=1))
    levels = {(e["level"], e["index"]) for e in json.loads((folder / MANIFEST_NAME).read_text())["segments"]}
    assert levels == {(0, 0), (1, 0), (1, 1)}
    return folder


def _edit_manifest(folder: Path, edit: Callable[[dict], object]) -> None:
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    edit(doc)
    (folder / MANIFEST_NAME).write_text(json.dumps(doc))


def _segment(folder: Path, level: int, index: int) -> Path:
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    (entry,) = [e for e in doc["segments"] if (e["level"], e["index"]) == (level, index)]
    return folder / entry["file"]


BAD_MANIFESTS: dict[str, tuple[Callable[[dict], object], str]] = {
    "time_period infinite": (
        lambda d: d.update(time_period=math.inf),
        "time_period inf must be a positive finite number",
    ),
    "time_period NaN": (
        lambda d: d.update(time_period=math.nan),
        "time_period nan must be a positive finite number",
    ),
    "time_period text": (lambda d: d.update(time_period="1.0"), "time_period must be a number"),
    "threshold NaN": (
        lambda d: d.update(time_cull_threshold=math.nan),
        "time_cull_threshold nan must be in (0, 1)",
    ),
    "a depth too large to hold": (lambda d: d.update(depth=10**9), "does not make a tree"),
    "a negative SH shape": (
        lambda d: d["param_shapes"].update(shN=[1, -1, 3]),
        "do not describe a Gaussians4D",
    ),
    "a missing parameter": (
        lambda d: d["param_shapes"].pop("opacity_logits"),
        "do not describe a Gaussians4D",
    ),
    "segments not a list": (lambda d: d.update(segments={"a": 1}), "expected a list"),
    "a segment that is not an object": (lambda d: d["segments"].append("L9"), "segments must hold objects"),
    "a segment of zero Gaussians": (lambda d: d["segments"][0].update(count=0, primary=0), "bad count"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_a_hierarchy_manifest_with_bad_values_is_one_line(
    capsys, no_server, hierarchy: Path, case: str
) -> None:
    edit, expected = BAD_MANIFESTS[case]
    _edit_manifest(hierarchy, edit)
    before = tree_digest(hierarchy)
    line = assert_one_line_error(_view(capsys, hierarchy), hierarchy / MANIFEST_NAME)
    assert expected in line and "splat4d export hierarchy" in line, line
    assert tree_digest(hierarchy) == before


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "",
        lambda text: "[" * 100_000,
        lambda text: text.replace('"depth": 1', '"depth": 1' + "0" * 5000),
    ],
    ids=["truncated", "empty", "nested too deeply", "a 5000-digit number"],
)
def test_a_corrupt_or_truncated_hierarchy_manifest_is_one_line(
    capsys, no_server, hierarchy: Path, damage
) -> None:
    text = (hierarchy / MANIFEST_NAME).read_text()
    assert '"depth": 1' in text
    (hierarchy / MANIFEST_NAME).write_text(damage(text))
    line = assert_one_line_error(_view(capsys, hierarchy), hierarchy / MANIFEST_NAME)
    assert "not valid JSON" in line


def test_a_missing_segment_is_found_when_the_hierarchy_is_opened_not_when_it_is_played(
    capsys, no_server, hierarchy: Path
) -> None:
    """The viewer first shows t = 0.5, which does not need segment L1 S0; the missing file is reported anyway."""
    segment = _segment(hierarchy, 1, 0)
    segment.unlink()
    assert "segment file not found" in assert_one_line_error(_view(capsys, hierarchy), segment)


def test_a_truncated_segment_is_one_line(capsys, no_server, hierarchy: Path) -> None:
    segment = _segment(hierarchy, 1, 0)
    segment.write_bytes(segment.read_bytes()[:-9])
    assert "the manifest says" in assert_one_line_error(_view(capsys, hierarchy), segment)


def test_a_segment_with_non_finite_values_is_one_line_even_when_its_hash_matches(
    capsys, no_server, hierarchy: Path
) -> None:
    """A segment saved from a diverged run: consistent with its manifest, but not drawable."""
    segment = _segment(hierarchy, 0, 0)
    _set_values(segment, "scale_t", math.nan, rows=[0])
    data = segment.read_bytes()

    def rehash(doc: dict) -> None:
        (entry,) = [e for e in doc["segments"] if e["file"] == segment.name]
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    _edit_manifest(hierarchy, rehash)
    line = assert_one_line_error(_view(capsys, hierarchy), segment)
    assert "non-finite values (NaN or infinity) in scale_t;" in line
    with pytest.raises(HierarchyFormatError, match="non-finite"):
        load_hierarchy(hierarchy)
