"""EXIF orientation: photos written with each orientation tag 1..8 come out upright, photo folders posed by SfM are
read upright end to end (a phone's set of sideways-stored portraits and landscapes), so are a phone video's frames
(turned by its display matrix), and datasets with cameras name a photo stored turned."""

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from splat4d.data.base import DatasetError
from splat4d.data.config import DataConfig, SfmConfig, VideoConfig
from splat4d.data.dataset import ImageDataset
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.orientation import ORIENTATION_TAG, exif_orientation, upright_copies, upright_size
from splat4d.data.sfm import extract_frames, read_images
from splat4d.data.synthetic import Intrinsics, SampleConfig, render_view, scene_layout, write_sample_scene
from splat4d.geometry import similarity_residuals

BLOCK = 16
"""Side of the flat-coloured blocks of the test pattern, compared by the mean of their inner half (JPEG keeps it
within a few levels; it blurs colour across block edges)."""
ROWS, COLS = 4, 6
"""The pattern's blocks: 4 x 6, so the upright image is 96 wide and 64 high (not square: turns change its size)."""
JPEG_TOLERANCE = 6 / 255
"""Largest difference of a block's inner mean colour after JPEG round trips at quality 95."""


def _pattern() -> np.ndarray:
    """An upright RGB image of ROWS x COLS flat blocks, each a different colour."""
    rng = np.random.default_rng(0)
    colours = rng.integers(20, 236, (ROWS, COLS, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, BLOCK, axis=0), BLOCK, axis=1)


def stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for the `upright` image with EXIF `orientation`, from the EXIF definition of
    the tag ("row 0 is at the visual <side>, column 0 at the visual <side>"), not from Pillow's implementation."""
    return {
        1: upright,  # top, left
        2: upright[:, ::-1],  # top, right
        3: upright[::-1, ::-1],  # bottom, right
        4: upright[::-1],  # bottom, left
        5: upright.transpose(1, 0, 2),  # left, top
        6: np.rot90(upright, 1),  # right, top: stored[i, j] = upright[j, W - 1 - i]
        7: upright[::-1, ::-1].transpose(1, 0, 2),  # right, bottom
        8: np.rot90(upright, -1),  # left, bottom: stored[i, j] = upright[H - 1 - j, i]
    }[orientation]


def write_photo(path: Path, upright: np.ndarray, orientation: int) -> None:
    """A JPEG (quality 95) that shows `upright` when its EXIF orientation is applied, as a phone writes it."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[0x010F] = "splat4d"  # Make, kept in the upright copies
    image = Image.fromarray(np.ascontiguousarray(stored_for(upright, orientation)))
    image.save(path, quality=95, exif=exif)


def _block_means(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    inner = slice(BLOCK // 4, BLOCK - BLOCK // 4)
    blocks = image.reshape(h, BLOCK, w, BLOCK, 3)[:, inner, :, inner]
    return blocks.astype(np.float64).mean((1, 3)) / 255


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_with_each_orientation_tag_come_out_upright(tmp_path: Path, orientation: int) -> None:
    upright = _pattern()
    photo = tmp_path / "photo.jpg"
    write_photo(photo, upright, orientation)
    stored_size = Image.open(photo).size
    assert exif_orientation(photo) == orientation
    assert upright_size(stored_size, orientation) == (upright.shape[1], upright.shape[0])

    (copy,) = upright_copies([photo], tmp_path / "upright", progress=False)
    pixels = iio.imread(copy)
    assert pixels.shape == upright.shape
    np.testing.assert_allclose(_block_means(pixels), _block_means(upright), atol=JPEG_TOLERANCE)
    if orientation == 1:
        assert copy == photo  # nothing to turn: the photo is used as it is
    else:
        assert exif_orientation(copy) == 1 and Image.open(copy).getexif()[0x010F] == "splat4d"


def test_a_set_with_one_turned_photo_links_the_others(tmp_path: Path) -> None:
    upright = _pattern()
    write_photo(tmp_path / "a.jpg", upright, 1)
    write_photo(tmp_path / "b.jpg", upright, 6)
    files = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    copies = upright_copies(files, tmp_path / "cache", progress=False)
    assert [c.name for c in copies] == ["a.jpg", "b.jpg"] and all(
        c.parent == tmp_path / "cache" for c in copies
    )
    assert copies[0].read_bytes() == files[0].read_bytes()  # linked (or copied), not re-encoded
    assert iio.imread(copies[1]).shape == upright.shape
    mtime = copies[1].stat().st_mtime_ns
    assert upright_copies(files, tmp_path / "cache", progress=False) == copies  # reused while unchanged
    assert copies[1].stat().st_mtime_ns == mtime


def write_phone_video(path: Path, upright: np.ndarray, rotation: int, frames: int = 4) -> None:
    """An H.264 video of `upright` as a phone records it: frames stored turned, with a display matrix rotating
    them `rotation` degrees counter-clockwise for display (an upright portrait video: -90, "rotation of -90.00
    degrees" in ffprobe)."""
    import av

    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90))  # display turns it back by `rotation`
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv444p"
        stream.set_display_rotation(rotation)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("rotation", [0, -90, 90, 180])
def test_frames_of_a_phone_video_come_out_as_a_player_shows_them(tmp_path: Path, rotation: int) -> None:
    upright = _pattern()
    video = tmp_path / "clip.mp4"
    write_phone_video(video, upright, rotation)
    times = extract_frames(video, VideoConfig(fps=4.0), tmp_path / "frames", progress=False)
    assert len(times) == 4
    for name in times:
        pixels = iio.imread(tmp_path / "frames" / name)
        assert pixels.shape == upright.shape
        np.testing.assert_allclose(_block_means(pixels), _block_means(upright), atol=JPEG_TOLERANCE)


def test_a_dataset_photo_stored_turned_is_named_with_its_orientation(tmp_path: Path) -> None:
    """A dataset's cameras describe the stored pixels (COLMAP ignores the tag): a photo that fits its camera only
    once turned is refused, saying so."""
    upright = _pattern()
    (tmp_path / "images").mkdir()
    write_photo(tmp_path / "images" / "a.jpg", upright, 6)
    h, w = upright.shape[:2]
    frame = {"file_path": "images/a.jpg", "transform_matrix": np.eye(4).tolist()}
    meta = {"fl_x": 40.0, "fl_y": 40.0, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "frames": [frame]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"a\.jpg: image is 64x96 but .* 96x64: .*EXIF orientation 6"):
        read_nerfstudio(tmp_path)


# --- a phone's photo set, posed by SfM ------------------------------------------------------------------------

N_PHOTOS = 12
LANDSCAPE = (320, 240)
ARC_DEGREES = 80.0
SFM = SfmConfig(max_num_features=2048, camera_model="SIMPLE_PINHOLE")
WALL_EPS = 5e-3
PIXEL_TOLERANCE = 0.03
"""Mean absolute difference (in [0, 1]) between a photo read back and its upright render: JPEG at quality 95,
twice for the turned ones."""


def _black_out_the_room(rgb: np.ndarray, depth: np.ndarray, K: Intrinsics, T: np.ndarray, room: list) -> None:
    """Black out the room's walls, floor and ceiling in place: their tiled textures give SIFT false matches that
    bend the reconstruction (see `tests/splat4d/test_sfm.py`'s photos)."""
    v, u = np.mgrid[0 : K.height, 0 : K.width] + 0.5
    p_cam = np.stack([(u - K.cx) / K.fx * depth, (v - K.cy) / K.fy * depth, depth], -1)
    p_world = p_cam @ T[:3, :3].T + T[:3, 3]
    on_room = (np.abs(p_world[..., :2]).max(-1) > room[1][0] - WALL_EPS) | (p_world[..., 2] < WALL_EPS)
    rgb[on_room | (p_world[..., 2] > room[1][2] - WALL_EPS)] = 0


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], Path]:
    """The sample scene photographed like a phone: every other photo portrait, stored sideways with orientation 6
    or 8 (as phones store portraits), the others landscape with orientation 1; each as the JPEG a phone writes.

    Returns the photo folder, the upright render of each photo by name, and the scene's transforms.json (true
    poses)."""
    root = tmp_path_factory.mktemp("phone")
    cfg = SampleConfig(n_views=N_PHOTOS, width=LANDSCAPE[0], height=LANDSCAPE[1], arc_degrees=ARC_DEGREES)
    truth = write_sample_scene(cfg, root / "truth", progress=False)
    meta = json.loads(truth.read_text())
    reference = read_nerfstudio(truth)
    layout = scene_layout(cfg)
    f = 0.5 * cfg.width / math.tan(math.radians(cfg.fov_degrees) / 2)
    photos = root / "photos"
    photos.mkdir()
    uprights = {}
    for i, frame in enumerate(meta["frames"]):
        name = f"IMG_{i:04d}.jpg"
        w, h = LANDSCAPE if i % 2 == 0 else LANDSCAPE[::-1]
        K = Intrinsics(f, f, w / 2, h / 2, w, h)
        rgb, depth = render_view(layout, np.asarray(frame["transform_matrix"]), K)
        T = reference.cameras.T_world_cam[i].double().numpy()
        _black_out_the_room(rgb, depth, K, T, meta["splat4d"]["room_bounds"])
        uprights[name] = rgb
        write_photo(photos / name, rgb, 1 if i % 2 == 0 else (6, 8)[i // 2 % 2])
    return photos, uprights, truth


def test_a_phones_portraits_and_landscapes_are_posed_and_read_upright(
    phone_photos: tuple[Path, dict[str, np.ndarray], Path], tmp_path: Path
) -> None:
    photos, uprights, truth = phone_photos
    scene = read_images(DataConfig(path=photos, sfm=SFM, test_every=0), tmp_path / "work", progress=False)
    names = [p.name for p in scene.image_paths]
    assert names == sorted(uprights)  # every photo registered
    for name, size in zip(names, scene.cameras.sizes, strict=True):
        assert size == (uprights[name].shape[1], uprights[name].shape[0]), name
    # Posed upright: the camera centres agree with the true ones after a similarity alignment.
    reference = read_nerfstudio(truth)
    true_centres = reference.cameras.centers.double()
    errors = similarity_residuals(scene.cameras.centers, true_centres)
    assert float(errors.max()) < 0.05  # metres, on an orbit of radius 2.8
    # Training reads the same upright pixels, each photo at its own size.
    data = ImageDataset(scene, list(range(len(names))))
    for k, name in enumerate(names):
        rgb = data[k].rgb[0].numpy()
        assert rgb.shape == uprights[name].shape
        assert np.abs(rgb - uprights[name] / 255.0).mean() < PIXEL_TOLERANCE, name
    assert (tmp_path / "work" / "upright").is_dir()
