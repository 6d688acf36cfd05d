"""Splat files: 4D PLY round trip, files from other tools, the .splat byte layout, per-frame slices of 4D scenes."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import cuda_rasterizer as cr
from splat4d.cameras import Cameras
from splat4d.errors import UsageError
from splat4d.export.splats import PlyExport, export_splats, slice_to_gaussians
from splat4d.gaussians import SH_C0, Gaussians, Gaussians4D
from splat4d.io.ply import PlyError, read_ply, read_ply_4d, write_ply, write_ply_4d
from splat4d.io.splat import read_splat, write_splat
from splat4d.render import RenderSettings, render


def _random_4d(n: int = 40, rotation: str = "quats", seed: int = 0) -> Gaussians4D:
    generator = torch.Generator().manual_seed(seed)
    g = Gaussians4D.from_points(
        torch.randn(n, 3, generator=generator),
        torch.rand(n, 3, generator=generator),
        torch.rand(n, generator=generator),
        sh_degree=1,
        time_degree=2,
        rotation=rotation,
        time_period=1.7,
    )
    with torch.no_grad():
        for name, p in g.params.items():
            if name not in ("means4", "log_scales4"):
                p.copy_(torch.randn(p.shape, generator=generator))
        g.params["log_scales4"].copy_(torch.randn(n, 4, generator=generator) * 0.3 - 1.5)
    return g


@pytest.mark.parametrize("rotation", ["quats", "rotors"])
def test_4d_ply_round_trip_is_exact(tmp_path: Path, rotation: str) -> None:
    g = _random_4d(rotation=rotation)
    write_ply_4d(tmp_path / "a.ply", g)
    h = read_ply_4d(tmp_path / "a.ply")
    assert h.time_period == g.time_period
    assert set(h.params.keys()) == set(g.params.keys())
    for name, value in g.params.items():
        assert torch.equal(value, h.params[name]), name


def test_4d_ply_names_its_extra_properties_and_time_period(tmp_path: Path) -> None:
    write_ply_4d(tmp_path / "a.ply", _random_4d(n=2))
    data = (tmp_path / "a.ply").read_bytes()
    header = data[: data.index(b"end_header")].decode().splitlines()
    names = [line.split()[-1] for line in header if line.startswith("property")]
    assert "comment time_period 1.7" in header
    assert names[:4] == ["x", "y", "z", "t"]
    assert {"scale_t", "rot_l_3", "rot_r_0", "f_dc_2_1", "f_rest_1_8"} <= set(names)


def test_3d_and_4d_readers_refuse_each_others_files(tmp_path: Path) -> None:
    write_ply_4d(tmp_path / "4d.ply", _random_4d(n=3))
    write_ply(tmp_path / "3d.ply", Gaussians.from_points(torch.randn(3, 3), torch.rand(3, 3), sh_degree=0))
    with pytest.raises(PlyError, match="missing properties"):
        read_ply(tmp_path / "4d.ply")
    with pytest.raises(PlyError, match="not a 4D"):
        read_ply_4d(tmp_path / "3d.ply")


def test_ply_from_gsplats_exporter_loads(tmp_path: Path) -> None:
    exporter = pytest.importorskip("gsplat.exporter")
    generator = torch.Generator().manual_seed(1)
    N = 6
    params = {
        "means": torch.randn(N, 3, generator=generator),
        "log_scales": torch.randn(N, 3, generator=generator),
        "quats": torch.randn(N, 4, generator=generator),
        "opacity_logits": torch.randn(N, generator=generator),
        "sh0": torch.randn(N, 1, 3, generator=generator),
        "shN": torch.randn(N, 8, 3, generator=generator),
    }
    exporter.export_splats(
        params["means"], params["log_scales"], params["quats"], params["opacity_logits"],
        params["sh0"], params["shN"], format="ply", save_to=str(tmp_path / "gsplat.ply"),
    )  # fmt: skip
    g = read_ply(tmp_path / "gsplat.ply")
    for name, value in params.items():
        assert torch.equal(g.params[name], value), name


def test_inria_style_ply_with_double_and_uchar_properties_loads(tmp_path: Path) -> None:
    N = 3
    rng = np.random.default_rng(0)
    fields = [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [(f"f_dc_{i}", "<f4") for i in range(3)] + [("opacity", "<f4")]
    fields += [(f"scale_{i}", "<f4") for i in range(3)] + [(f"rot_{i}", "<f4") for i in range(4)]
    fields += [("red", "u1"), ("confidence", "<f8")]
    table = np.zeros(N, dtype=fields)
    for name, _ in fields:
        table[name] = rng.integers(0, 255, N) if name == "red" else rng.normal(size=N)
    types = {"<f8": "double", "<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment made by hand", f"element vertex {N}"]
    header += [f"property {types[t]} {name}" for name, t in fields] + ["end_header"]
    (tmp_path / "inria.ply").write_bytes(("\n".join(header) + "\n").encode() + table.tobytes())
    g = read_ply(tmp_path / "inria.ply")
    np.testing.assert_array_equal(g.means.detach().numpy()[:, 0], table["x"].astype(np.float32))
    np.testing.assert_array_equal(g.quats.detach().numpy()[:, 3], table["rot_3"])
    assert g.sh_degree == 0


def test_splat_byte_layout(tmp_path: Path) -> None:
    sh0 = torch.tensor([[0.3, -0.3, 5.0], [0.0, 1.0, -5.0]]) / SH_C0  # rgb 0.8, 0.2, >1; 0.5, >1, <0
    g = Gaussians(
        {
            "means": torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]),
            "log_scales": torch.log(torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]])),
            "quats": torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.5, -0.5]]),
            "opacity_logits": torch.tensor([0.0, 2.0]),
            "sh0": sh0[:, None],
            "shN": torch.zeros(2, 3, 3),
        }
    )
    write_splat(tmp_path / "a.splat", g)
    data = (tmp_path / "a.splat").read_bytes()
    assert len(data) == 64
    # The second Gaussian is larger and more opaque, so it comes first.
    alpha1 = round(255 / (1 + np.exp(-2.0)))
    expected = struct.pack(
        "<3f3f4B4B", -1.0, 0.5, 0.25, *g.scales[1].tolist(), 128, 255, 0, alpha1, 192, 64, 192, 64
    )
    expected += struct.pack(
        "<3f3f4B4B", 1.0, 2.0, 3.0, *g.scales[0].tolist(), 204, 51, 255, 128, 255, 128, 128, 128
    )
    assert data == expected


def test_splat_read_back_is_close(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(2)
    N = 50
    g = Gaussians.from_points(
        torch.randn(N, 3, generator=generator), torch.rand(N, 3, generator=generator), 1
    )
    with torch.no_grad():
        g.params["quats"].copy_(torch.nn.functional.normalize(torch.randn(N, 4, generator=generator), dim=-1))
        g.params["opacity_logits"].copy_(torch.randn(N, generator=generator))
    write_splat(tmp_path / "a.splat", g)
    h = read_splat(tmp_path / "a.splat")
    order = torch.argsort(-(g.scales.prod(-1) * g.opacities)).detach()
    assert len(h) == N and h.sh_degree == 0
    torch.testing.assert_close(h.means, g.means[order].detach())
    torch.testing.assert_close(h.scales, g.scales[order].detach())
    torch.testing.assert_close(h.opacities, g.opacities[order].detach(), atol=2.5 / 255, rtol=0)
    rgb = lambda x: (x.params["sh0"][:, 0] * SH_C0 + 0.5).detach()  # noqa: E731
    torch.testing.assert_close(rgb(h), rgb(g)[order].clamp(0, 1), atol=0.6 / 255, rtol=0)
    # Same rotation up to sign, to the 1/128 quantisation.
    dots = (torch.nn.functional.normalize(h.quats, dim=-1) * g.quats[order].detach()).sum(-1).abs()
    assert dots.min() > 0.999


@pytest.mark.parametrize("rotation", ["quats", "rotors"])
def test_sliced_frame_is_what_render_slices_at_t(rotation: str) -> None:
    g = _random_4d(n=60, rotation=rotation)
    t = 0.37
    sliced = cr.slice_4d(g.means4, g.covars4, g.opacities, t)
    kept = cr.cull_by_time(sliced.temporal_weights, 1 / 255)
    frame = slice_to_gaussians(g, t)
    assert len(frame) == len(kept) > 10
    torch.testing.assert_close(frame.means, sliced.means[kept].detach())
    covars = cr.quat_scale_to_covar(frame.quats, frame.scales)
    torch.testing.assert_close(covars, sliced.covars[kept].detach(), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(frame.opacities, sliced.opacities[kept].detach(), atol=1e-6, rtol=1e-5)
    # Same colours in every direction: render both from a camera and compare the images.
    T_world_cam = torch.eye(4)
    T_world_cam[2, 3] = -4.0
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])
    cameras = Cameras(T_world_cam[None], K[None], width=32, height=24)
    settings = RenderSettings(backend="reference")
    expected = render(g, cameras, settings, t=t)
    actual = render(frame, cameras, settings)
    torch.testing.assert_close(actual.rgb, expected.rgb, atol=1e-4, rtol=1e-4)


def test_export_writes_frames_and_refuses_to_overwrite(tmp_path: Path) -> None:
    g = _random_4d(n=20)
    written = export_splats(g, tmp_path / "scene4d.ply", times=3)
    assert [p.name for p in written] == ["scene4d.ply", "frame_0000.ply", "frame_0001.ply", "frame_0002.ply"]
    assert read_ply_4d(written[0]).time_period == g.time_period
    torch.testing.assert_close(read_ply(written[3]).means, slice_to_gaussians(g, 1.0).means)
    with pytest.raises(UsageError, match=r"scene4d.ply: exists; pass --overwrite"):
        export_splats(g, tmp_path / "scene4d.ply", times=3)
    export_splats(g, tmp_path / "scene4d.ply", times=3, overwrite=True)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ply_export_of_a_reconstructed_scene(reconstructed_sample: Path, tmp_path: Path) -> None:
    from pipelines import PIPELINES

    ply = PlyExport(reconstructed_sample, out=tmp_path / "scene.ply").main(PIPELINES)
    reference = read_ply(reconstructed_sample / "point_cloud.ply")
    for name, value in read_ply(ply[0]).params.items():
        assert torch.equal(value, reference.params[name]), name
    splat = PlyExport(reconstructed_sample, out=tmp_path / "scene.splat", format="splat").main(PIPELINES)
    assert splat[0].stat().st_size == 32 * len(reference)
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        PlyExport(reconstructed_sample, out=tmp_path / "scene.ply").main(PIPELINES)
