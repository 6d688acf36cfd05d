"""Scenes whose images differ in size, each with its own camera (a phone's portraits and landscapes, a COLMAP model
with two cameras, nerfstudio frames with their own intrinsics): `Cameras` keeps a size per camera, the readers keep
each image's intrinsics, and the scene trains, evaluates, views and exports in every pipeline."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pipelines import PIPELINES
from pipelines.sparse_view.pseudo_views import nearest_cameras, sample_pseudo_camera
from pipelines.sparse_view.silhouettes import AlphaTerm, SilhouetteConfig, visual_hull_points
from splat4d.cameras import Cameras, MixedSizesError
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.colmap import read_colmap
from splat4d.data.config import DataConfig
from splat4d.data.dataset import ImageDataset, resize_cameras
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import Intrinsics, SampleConfig, render_view, scene_layout, write_sample_scene
from splat4d.export.camera_path import interpolate_path, resized
from splat4d.export.mesh import MeshExport, extract_mesh, orbit_cameras, render_depths
from splat4d.export.video import VideoExport
from splat4d.reconstruct import Reconstruction, reconstruct
from viewer.camera import cameras_to_viser
from viewer.scene import load_view_scene

LANDSCAPE = (48, 36)
PORTRAIT = (36, 48)
N_VIEWS = 8
STEPS = 6


def _cameras(sizes: list[tuple[int, int]]) -> Cameras:
    n = len(sizes)
    Ks = torch.eye(3).repeat(n, 1, 1)
    Ks[:, 0, 0] = Ks[:, 1, 1] = 40.0
    Ks[:, 0, 2] = torch.tensor([w / 2 for w, _ in sizes])
    Ks[:, 1, 2] = torch.tensor([h / 2 for _, h in sizes])
    return Cameras(torch.eye(4).repeat(n, 1, 1), Ks, [w for w, _ in sizes], [h for _, h in sizes])


def test_cameras_keep_a_size_each_and_refuse_one_size_for_a_mixed_batch() -> None:
    cameras = _cameras([LANDSCAPE, PORTRAIT, LANDSCAPE])
    assert cameras.sizes == [LANDSCAPE, PORTRAIT, LANDSCAPE] and not cameras.is_uniform
    with pytest.raises(MixedSizesError, match=r"2 image sizes \(48×36 \(2\), 36×48 \(1\)\).*cameras\[i\]"):
        _ = cameras.width
    assert (cameras[1].width, cameras[1].height) == PORTRAIT  # one camera is always uniform
    assert cameras[[0, 2]].is_uniform and cameras[[0, 2]].width == LANDSCAPE[0]
    assert cameras[torch.tensor([False, True, True])].sizes == [PORTRAIT, LANDSCAPE]
    assert cameras.scaled(0.5).sizes == [(24, 18), (18, 24), (24, 18)]
    assert Cameras.cat([cameras, cameras[1]]).sizes[-1] == PORTRAIT
    timed = dataclasses.replace(cameras, times=torch.zeros(3))
    assert timed.sizes == cameras.sizes and timed.times is not None
    assert dataclasses.replace(cameras[0], width=10, height=20).sizes == [(10, 20)]
    # The same camera rendered at half its size: every K scaled by its own ratio.
    half = resize_cameras(cameras, [24, 18, 24], [18, 24, 18])
    torch.testing.assert_close(half.Ks[:, :2], cameras.Ks[:, :2] / 2)


def test_a_path_through_cameras_of_two_sizes_takes_the_first_keys_size() -> None:
    cameras = _cameras([LANDSCAPE, PORTRAIT, LANDSCAPE])
    cameras.T_world_cam[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0])
    path = interpolate_path(cameras, [0, 1, 2], frames=5)
    assert path.is_uniform and (path.width, path.height) == LANDSCAPE
    # The portrait key, resized to the landscape size, keeps its focal length per pixel of width.
    torch.testing.assert_close(path.Ks[2, 0, 0], torch.tensor(40.0 * LANDSCAPE[0] / PORTRAIT[0]))
    resized_each = resized(cameras)  # no size given: every camera keeps its own
    assert resized_each.sizes == cameras.sizes


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample scene (nerfstudio layout, with times) with every other view re-rendered in portrait at the same
    focal length; each portrait frame carries its own intrinsics (`w`, `h`, `cx`, `cy`), the landscape ones use the
    file's global ones."""
    root = tmp_path_factory.mktemp("mixed") / "scene"
    cfg = SampleConfig(n_views=N_VIEWS, width=LANDSCAPE[0], height=LANDSCAPE[1], test_every=4, n_points=500)
    path = write_sample_scene(cfg, root, progress=False)
    meta = json.loads(path.read_text())
    layout = scene_layout(cfg)
    f = 0.5 * cfg.width / math.tan(math.radians(cfg.fov_degrees) / 2)
    for i, frame in enumerate(meta["frames"]):
        frame["time"] = i / (N_VIEWS - 1)
        if i % 2 == 1:
            w, h = PORTRAIT
            rgb, depth = render_view(
                layout, np.asarray(frame["transform_matrix"]), Intrinsics(f, f, w / 2, h / 2, w, h)
            )
            iio.imwrite(root / frame["file_path"], rgb)
            np.save(root / frame["depth_file_path"], depth)
            frame.update(w=w, h=h, cx=w / 2, cy=h / 2)
    path.write_text(json.dumps(meta))
    return root


def test_nerfstudio_frames_keep_their_own_intrinsics(mixed: Path) -> None:
    scene = read_nerfstudio(mixed)
    expected = [PORTRAIT if i % 2 else LANDSCAPE for i in range(N_VIEWS)]
    assert scene.cameras.sizes == expected
    torch.testing.assert_close(scene.cameras.Ks[1, :2, 2], torch.tensor([18.0, 24.0]))
    torch.testing.assert_close(scene.cameras.Ks[0, :2, 2], torch.tensor([24.0, 18.0]))


def test_each_image_loads_at_its_own_downscaled_size(mixed: Path) -> None:
    scene = read_nerfstudio(mixed)
    data = ImageDataset(scene, list(range(N_VIEWS)), downscale=2)
    for k in range(N_VIEWS):
        batch = data[k]
        w, h = (PORTRAIT if k % 2 else LANDSCAPE)[0] // 2, (PORTRAIT if k % 2 else LANDSCAPE)[1] // 2
        assert batch.rgb.shape == (1, h, w, 3) and batch.cameras.sizes == [(w, h)]
        torch.testing.assert_close(batch.cameras.Ks[0, :2], scene.cameras.Ks[k, :2] / 2)
    with pytest.raises(MixedSizesError):
        _ = data.width


def test_an_image_that_does_not_match_its_own_camera_is_named(mixed: Path, tmp_path: Path) -> None:
    scene = read_nerfstudio(mixed)
    portrait = tmp_path / "portrait_as_landscape.png"
    shutil.copy(scene.image_paths[0], portrait)  # a landscape image where a portrait camera expects one
    scene = dataclasses.replace(scene, image_paths=[*scene.image_paths[:1], portrait, *scene.image_paths[2:]])
    with pytest.raises(
        DatasetError, match=r"portrait_as_landscape\.png: image is 48x36 but the camera says 36x48"
    ):
        ImageDataset(scene, [0, 1])


def _colmap_text_model(mixed: Path, root: Path) -> Path:
    """A COLMAP workspace in text format (no rigs or frames: an older model) with two cameras: the landscape
    views on a PINHOLE camera, the portrait ones on a SIMPLE_PINHOLE camera."""
    scene = read_nerfstudio(mixed)
    (root / "images").mkdir(parents=True)
    (root / "sparse" / "0").mkdir(parents=True)
    f = float(scene.cameras.Ks[0, 0, 0])
    (root / "sparse" / "0" / "cameras.txt").write_text(
        "# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"1 PINHOLE {LANDSCAPE[0]} {LANDSCAPE[1]} {f} {f} {LANDSCAPE[0] / 2} {LANDSCAPE[1] / 2}\n"
        f"2 SIMPLE_PINHOLE {PORTRAIT[0]} {PORTRAIT[1]} {f} {PORTRAIT[0] / 2} {PORTRAIT[1] / 2}\n"
    )
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for i, path in enumerate(scene.image_paths):
        shutil.copy(path, root / "images" / path.name)
        T_cam_world = torch.linalg.inv(scene.cameras.T_world_cam[i].double()).numpy()
        q = _quaternion(T_cam_world[:3, :3])
        t = T_cam_world[:3, 3]
        lines += [f"{i + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} {1 + i % 2} {path.name}", ""]
    (root / "sparse" / "0" / "images.txt").write_text("\n".join(lines) + "\n")
    (root / "sparse" / "0" / "points3D.txt").write_text("# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]\n")
    return root


def _quaternion(R: np.ndarray) -> list[float]:
    """(w, x, y, z) of a rotation matrix (Shepperd's method, w > 0 branch: fine for these orbit poses)."""
    w = math.sqrt(max(0.0, 1.0 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    if w > 1e-3:
        return [
            w,
            (R[2, 1] - R[1, 2]) / (4 * w),
            (R[0, 2] - R[2, 0]) / (4 * w),
            (R[1, 0] - R[0, 1]) / (4 * w),
        ]
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return [w, x, y, z]


def test_a_two_camera_colmap_model_loads_each_images_own_intrinsics(mixed: Path, tmp_path: Path) -> None:
    ws = _colmap_text_model(mixed, tmp_path / "ws")
    scene = read_colmap(DataConfig(path=ws, test_every=0), tmp_path / "work")
    truth = read_nerfstudio(mixed)
    assert [p.name for p in scene.image_paths] == [p.name for p in truth.image_paths]
    assert scene.cameras.sizes == truth.cameras.sizes
    torch.testing.assert_close(scene.cameras.Ks, truth.cameras.Ks, rtol=0, atol=1e-4)
    torch.testing.assert_close(
        scene.cameras.T_world_cam, truth.cameras.T_world_cam.float(), rtol=0, atol=1e-4
    )
    assert scene.metadata["camera_models"] == ["PINHOLE", "SIMPLE_PINHOLE"]
    ImageDataset(scene, scene.train_indices)  # every image matches its own camera


def _train(name: str, data: Path, out: Path, **changes: object) -> Reconstruction:
    """Pipeline `name`'s fast preset for STEPS steps on the CPU, from 300 random points where it needs them."""
    spec = PIPELINES[name]
    cfg = spec.with_steps(spec.presets["fast"], STEPS)
    cfg = dataclasses.replace(
        cfg,
        data=DataConfig(path=data, test_every=4),
        trainer=dataclasses.replace(cfg.trainer, progress=False),
        init=dataclasses.replace(cfg.init, random_points=300),
        **changes,
    )
    return reconstruct(spec, name, "fast", cfg, out, torch.device("cpu"))


@pytest.fixture(scope="module")
def trained(mixed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Reconstruction, Path]:
    out = tmp_path_factory.mktemp("trained") / "scene"
    return _train("static", mixed, out), out


def test_portraits_and_landscapes_train_and_evaluate(trained: tuple[Reconstruction, Path]) -> None:
    result, out = trained
    cameras = json.loads((out / "cameras.json").read_text())["cameras"]
    assert [(c["width"], c["height"]) for c in cameras] == [
        PORTRAIT if i % 2 else LANDSCAPE for i in range(8)
    ]
    assert result.metrics["num_views"] == 2 and np.isfinite(result.metrics["psnr"])
    for view in result.metrics["views"]:  # photo | render | depth, each at the view's own size
        size = PORTRAIT if int(view["name"][-1]) % 2 else LANDSCAPE
        assert iio.imread(out / "eval" / f"{view['name']}.png").shape == (size[1], 3 * size[0], 3)


def test_a_mixed_scene_exports_a_mesh_and_video_paths_and_shows_in_the_viewer(
    trained: tuple[Reconstruction, Path],
) -> None:
    result, out = trained
    scene = result.scene
    cameras = scene.subset(scene.train_indices)
    depths, rgbs = render_depths(result.pipeline, cameras)
    assert [tuple(d.shape) for d in depths] == [(h, w) for w, h in cameras.sizes]
    assert [tuple(c.shape) for c in rgbs] == [(h, w, 3) for w, h in cameras.sizes]
    extra = orbit_cameras(cameras, 3)
    assert extra.sizes == [cameras.sizes[0]] * 3
    cfg = MeshExport(scene=out, bounds=(-3.0, -3.0, -1.0, 3.0, 3.0, 3.0), voxel_size=0.25, extra_views=3)
    extract_mesh(result.pipeline, cameras, cfg)  # renders and fuses each view at its own size
    for kind in (
        "orbit",
        "arc",
        "spiral",
    ):  # video paths take the first training camera's intrinsics and size
        path, _, _ = VideoExport(out, frames=3, path=kind).build_path(cameras)
        assert path.sizes == [cameras.sizes[0]] * 3, kind
    viewed = load_view_scene(
        out, PIPELINES, torch.device("cpu")
    )  # the scene folder read back, as `view` does
    assert viewed.cameras is not None and viewed.cameras.sizes == cameras.sizes
    for i, (w, h) in enumerate(cameras.sizes):
        _, _, fov_y, aspect = cameras_to_viser(viewed.cameras, i)
        assert aspect == pytest.approx(w / h)
        assert fov_y == pytest.approx(2 * math.atan(h / 2 / float(cameras.Ks[i, 1, 1])))


def test_a_size_limit_trains_and_evaluates_every_image_downscaled(mixed: Path, tmp_path: Path) -> None:
    """`--data.max-size` (the `fast` preset's time promise): the 48×36 and 36×48 photos under a 24-pixel limit
    train and evaluate at half size, and metrics.json says so."""
    spec, out = PIPELINES["static"], tmp_path / "limited"
    cfg = spec.with_steps(spec.presets["fast"], STEPS)
    assert cfg.data.max_size == 512  # the preset's promise: at most 512 pixels a side
    cfg = dataclasses.replace(
        cfg,
        data=DataConfig(path=mixed, test_every=4, max_size=24),
        trainer=dataclasses.replace(cfg.trainer, progress=False),
        init=dataclasses.replace(cfg.init, random_points=300),
    )
    result = reconstruct(spec, "static", "fast", cfg, out, torch.device("cpu"))
    assert result.metrics["downscale"] == 2
    for view in result.metrics["views"]:
        size = PORTRAIT if int(view["name"][-1]) % 2 else LANDSCAPE
        assert iio.imread(out / "eval" / f"{view['name']}.png").shape == (size[1] // 2, 3 * (size[0] // 2), 3)


def test_a_mixed_scene_trains_in_the_dynamic_pipeline(mixed: Path, tmp_path: Path) -> None:
    result = _train("dynamic", mixed, tmp_path / "dynamic")
    assert result.scene.cameras.times is not None and np.isfinite(result.metrics["psnr"])


def test_a_mixed_scene_trains_in_the_sparse_pipeline(mixed: Path, tmp_path: Path) -> None:
    """Pseudo views between a portrait and a landscape camera, and points triangulated from views of both sizes."""
    spec = PIPELINES["sparse"]
    triangulation = dataclasses.replace(spec.presets["fast"].triangulation, mode="always")
    co_reg = dataclasses.replace(spec.presets["fast"].co_reg, pseudo_start=0)
    result = _train("sparse", mixed, tmp_path / "sparse", views=6, triangulation=triangulation, co_reg=co_reg)
    train = result.scene.subset(result.scene.train_indices)
    assert not train.is_uniform and np.isfinite(result.metrics["psnr"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        pseudo = sample_pseudo_camera(train, nearest_cameras(train, 2), generator)
        assert pseudo.sizes[0] in train.sizes


def test_silhouettes_of_photos_of_different_sizes(mixed: Path) -> None:
    """Visual-hull points and the alpha term of RGBA photos of different sizes (every pixel opaque: every point
    the photos see is inside)."""
    scene = read_nerfstudio(mixed)
    alphas = {i: torch.ones(h, w) for i, (w, h) in enumerate(scene.cameras.sizes)}
    points, colours = visual_hull_points(scene, alphas, 200, SilhouetteConfig(), seed=0)
    assert len(points) == 200 and colours.shape == (200, 3)
    term = AlphaTerm(SilhouetteConfig())
    term._full = alphas
    indices = list(range(N_VIEWS))
    term.bind_views(scene, indices, [(w // 2, h // 2) for w, h in scene.cameras.sizes])
    assert term._sized[1].shape == (1, PORTRAIT[1] // 2, PORTRAIT[0] // 2, 1)


def test_the_working_downscale_fits_the_longest_side_of_every_image() -> None:
    from splat4d.data.dataset import working_downscale
    from splat4d.errors import UsageError

    scene = SceneData(
        _cameras([(800, 600), (600, 800), (400, 300)]), [Path("a")] * 3, [None] * 3, [0, 1, 2], []
    )
    assert working_downscale(scene, 1) == 1  # no limit
    assert working_downscale(scene, 1, 800) == 1
    assert working_downscale(scene, 1, 512) == 2  # 400×300 and 300×400
    assert working_downscale(scene, 3, 512) == 3  # never below the downscale asked for
    assert working_downscale(scene, 1, 100) == 8
    llff = SceneData(_cameras([(504, 378)]), [Path("a")], [None], [0], [], metadata={"prescaled": 8})
    assert working_downscale(llff, 8, 512) == 8  # images_8 read as they are
    assert working_downscale(llff, 8, 300) == 16  # and halved
    with pytest.raises(UsageError, match=r"--data\.max-size"):
        working_downscale(scene, 1, -1)
    assert working_downscale(scene, 2, 0) == 2  # 0: no limit
