"""3DGS PLY files: exact round trip, the Inria property layout, and clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.gaussians import Gaussians
from splat4d.io.ply import PlyError, read_ply, write_ply


def _random_gaussians(n: int = 50, degree: int = 2) -> Gaussians:
    g = Gaussians.from_points(torch.randn(n, 3), torch.rand(n, 3), sh_degree=degree)
    with torch.no_grad():
        for p in g.params.values():
            p.normal_()
    return g


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_exact(tmp_path: Path, degree: int) -> None:
    g = _random_gaussians(degree=degree)
    write_ply(tmp_path / "a.ply", g)
    h = read_ply(tmp_path / "a.ply")
    for name, value in g.params.items():
        assert torch.equal(value, h.params[name]), name


def test_layout_is_the_inria_one(tmp_path: Path) -> None:
    g = _random_gaussians(n=3, degree=1)
    write_ply(tmp_path / "a.ply", g)
    data = (tmp_path / "a.ply").read_bytes()
    header = data[: data.index(b"end_header")].decode().splitlines()
    names = [line.split()[-1] for line in header if line.startswith("property")]
    rest = [f"f_rest_{i}" for i in range(9)]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest, "opacity"]
    assert names == [*expected, "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    body = np.frombuffer(data[data.index(b"end_header\n") + 11 :], dtype="<f4").reshape(3, len(names))
    # f_rest is channel-major: the 3 red coefficients come first.
    np.testing.assert_array_equal(body[:, 9:12], g.params["shN"][:, :, 0].detach().numpy())
    np.testing.assert_array_equal(
        body[:, names.index("opacity")], g.params["opacity_logits"].detach().numpy()
    )


def test_property_order_and_extra_properties_do_not_matter(tmp_path: Path) -> None:
    """Files from other tools may order properties differently or add some (e.g. gsplat's exporter)."""
    g = _random_gaussians(n=4, degree=1)
    write_ply(tmp_path / "a.ply", g)
    reference = read_ply(tmp_path / "a.ply")
    data = (tmp_path / "a.ply").read_bytes()
    header = data[: data.index(b"end_header")].decode().splitlines()
    names = [line.split()[-1] for line in header if line.startswith("property")]
    body = np.frombuffer(data[data.index(b"end_header\n") + 11 :], dtype="<f4").reshape(4, len(names))
    order = list(reversed(range(len(names))))
    shuffled = np.concatenate([body[:, order], np.ones((4, 1), np.float32)], axis=1)
    lines = ["ply", "format binary_little_endian 1.0", "element vertex 4"]
    lines += [f"property float {names[i]}" for i in order] + ["property float extra", "end_header"]
    (tmp_path / "b.ply").write_bytes(("\n".join(lines) + "\n").encode() + shuffled.tobytes())
    other = read_ply(tmp_path / "b.ply")
    for name, value in reference.params.items():
        assert torch.equal(value, other.params[name]), name


def test_a_point_cloud_is_not_a_splat_file(tmp_path: Path) -> None:
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
    (tmp_path / "p.ply").write_bytes((header + "property float z\nend_header\n").encode() + bytes(12))
    with pytest.raises(PlyError, match=r"p\.ply: not a 3DGS PLY"):
        read_ply(tmp_path / "p.ply")
    (tmp_path / "t.ply").write_bytes(b"not a ply")
    with pytest.raises(PlyError, match=r"t\.ply: not a PLY file"):
        read_ply(tmp_path / "t.ply")


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through tempfile (0600); the output must still be readable like any file the user makes."""
    import os

    write_ply(tmp_path / "a.ply", _random_gaussians(n=2))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.ply").stat().st_mode & 0o777 == 0o666 & ~umask
