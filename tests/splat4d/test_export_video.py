"""Videos: an MP4 of a reconstructed scene decodes with the expected frames and size; time sweeps pass t."""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.errors import UsageError
from splat4d.export.video import VideoExport, render_frames, write_mp4
from splat4d.geometry import look_at
from splat4d.render import RenderOutput


def test_video_of_a_reconstructed_scene_decodes(reconstructed_sample: Path, tmp_path: Path) -> None:
    from pipelines import PIPELINES

    out = tmp_path / "orbit.mp4"
    export = VideoExport(
        reconstructed_sample, out=out, frames=5, width=42, height=31, device="cpu", progress=False
    )
    assert export.main(PIPELINES) == [out]
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape == (5, 32, 42, 3)
    assert frames.std() > 5  # the scene, not a blank frame
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(UsageError, match=r"orbit\.mp4: exists; pass --overwrite"):
        export.main(PIPELINES)


def test_side_by_side_pngs_along_an_interpolated_path(reconstructed_sample: Path, tmp_path: Path) -> None:
    from pipelines import PIPELINES

    export = VideoExport(
        reconstructed_sample, out=tmp_path / "v.mp4", path="interpolate", keyframes=[0, 2], frames=3,
        render="side-by-side", mp4=False, pngs=True, device="cpu", progress=False,
    )  # fmt: skip
    (folder,) = export.main(PIPELINES)
    assert folder == tmp_path / "v_frames"
    pngs = sorted(folder.glob("*.png"))
    assert [p.name for p in pngs] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert iio.imread(pngs[0]).shape == (60, 160, 3)


def test_odd_frames_are_cropped_to_even_for_h264(tmp_path: Path) -> None:
    frames = [np.full((21, 33, 3), 40 * i, np.uint8) for i in range(3)]
    assert write_mp4(frames, tmp_path / "odd.mp4", fps=10) == 3
    assert iio.imread(tmp_path / "odd.mp4", plugin="pyav").shape == (3, 20, 32, 3)


def _ring(n: int) -> Cameras:
    """n cameras on a circle of radius 3 around the origin, looking at it (OpenCV axes, z up)."""
    angles = torch.arange(n) * 2 * torch.pi / n
    eyes = torch.stack([3 * torch.cos(angles), 3 * torch.sin(angles), torch.zeros(n)], dim=-1)
    poses = torch.stack([look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for eye in eyes])
    K = torch.tensor([[10.0, 0, 4], [0, 10.0, 3], [0, 0, 1]]).repeat(n, 1, 1)
    return Cameras(poses, K, 8, 6)


def test_time_sweep_passes_t_to_render_view() -> None:
    seen = []

    def render_view(cameras: Cameras, t: float | None) -> RenderOutput:
        seen.append(t)
        image = torch.full((1, 6, 8, 3), float(t or 0))
        return RenderOutput(image, image[..., :1], image[..., :1] + 1, image[..., :1], {})

    train = _ring(4)
    cameras, times, fps = VideoExport(Path("unused"), frames=5, time_sweep=True, fixed_camera=1).build_path(
        train
    )
    assert times == [0.0, 0.25, 0.5, 0.75, 1.0] and fps == 30
    assert len(cameras) == 5 and torch.equal(cameras.T_world_cam, train.T_world_cam[1].expand(5, 4, 4))
    frames = list(render_frames(render_view, cameras, times, "rgb", progress=False))
    assert seen == times
    assert [int(f[0, 0, 0]) for f in frames] == [0, 64, 128, 191, 255]
    moving, moving_times, _ = VideoExport(Path("unused"), frames=4, time_sweep=True).build_path(train)
    assert moving_times == [0.0, 1 / 3, 2 / 3, 1.0] and len(moving.centers.unique(dim=0)) == 4


def _half_ring(n: int) -> Cameras:
    """n cameras on the half circle y >= 0 of radius 3 around the origin, looking at it (a capture from one side)."""
    angles = torch.linspace(0, torch.pi, n)
    eyes = torch.stack([3 * torch.cos(angles), 3 * torch.sin(angles), torch.zeros(n)], dim=-1)
    poses = torch.stack([look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for eye in eyes])
    K = torch.tensor([[10.0, 0, 4], [0, 10.0, 3], [0, 0, 1]]).repeat(n, 1, 1)
    return Cameras(poses, K, 8, 6)


def test_the_default_path_of_a_one_sided_capture_stays_on_the_photographed_side() -> None:
    cameras, times, _ = VideoExport(Path("unused"), frames=24).build_path(_half_ring(7))
    assert len(cameras) == 24 and times == [None] * 24
    assert (cameras.centers[:, 1] >= -1e-4).all()  # never behind (y < 0)
    x = cameras.centers[:, 0]
    assert x.min() < -2.9 and x.max() > 2.9  # but over the whole half circle
    orbit, _, _ = VideoExport(Path("unused"), frames=24, path="orbit").build_path(_half_ring(7))
    assert (orbit.centers[:, 1] < -1).sum() >= 8  # what --path orbit does: a third of the frames behind
    around, _, _ = VideoExport(Path("unused"), frames=12).build_path(_ring(8))
    torch.testing.assert_close(around.centers.norm(dim=-1), torch.full((12,), 3.0), atol=1e-4, rtol=0)
    assert (around.centers[:, 1] < -1).any()  # cameras all round: the full orbit


def test_export_prints_the_path_it_chose_and_why(
    reconstructed_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines import PIPELINES

    export = VideoExport(
        reconstructed_sample, out=tmp_path / "v.mp4", frames=2, width=16, height=12, mp4=False, pngs=True,
        device="cpu", progress=False,
    )  # fmt: skip
    export.main(PIPELINES)
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("path: ")]
    assert any(
        line.startswith(f"path: {kind}, as the training cameras ") for kind in ("orbit", "arc", "spiral")
    )
    assert "--path" in line
    export = VideoExport(reconstructed_sample, out=tmp_path / "v.mp4", path="orbit", frames=2, width=16,
                         height=12, mp4=False, pngs=True, overwrite=True, device="cpu", progress=False)  # fmt: skip
    export.main(PIPELINES)
    assert "path: " not in capsys.readouterr().out  # asked for: nothing to explain


def test_the_val_path_renders_the_validation_camera_sweeping_time() -> None:
    # D-NeRF's transforms_val.json: one fixed camera at times 0, 0.5, 1.
    val = _ring(1)[torch.zeros(3, dtype=torch.long)]
    val = Cameras(val.T_world_cam, val.Ks, val.width, val.height, torch.tensor([0.0, 0.5, 1.0]))
    cameras, times, _ = VideoExport(Path("unused"), frames=5, path="val").build_path(_ring(4), val=val)
    assert torch.equal(cameras.T_world_cam, val.T_world_cam[:1].expand(5, 4, 4))
    assert cameras.times is not None
    torch.testing.assert_close(cameras.times, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert times == [None] * 5  # rendered at the cameras' own times
    with pytest.raises(UsageError, match="--path val: the scene's dataset has no validation cameras"):
        VideoExport(Path("unused"), frames=5, path="val").build_path(_ring(4))
