"""3DGS PLY files (the layout of the Inria code, which gsplat, SuperSplat and most viewers read and write).

One vertex per Gaussian with float properties x, y, z, nx, ny, nz (zeros), f_dc_0..2 (SH band 0 per channel),
f_rest_0..3(K−1)−1 (higher bands, channel-major: all of red's coefficients, then green's, then blue's),
opacity (a logit), scale_0..2 (log-scales) and rot_0..3 (quaternion w, x, y, z, not necessarily normalised).
Raw parameters are stored, not activated ones, so a round trip is exact.
"""

import math
from pathlib import Path

import numpy as np
import torch

from splat4d.gaussians import Gaussians
from splat4d.io.atomic import atomic_write_bytes

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


class PlyError(ValueError):
    """A PLY file is not a readable 3DGS file; the message names the file."""


def gaussians_to_ply_bytes(gaussians: Gaussians) -> bytes:
    p = {k: v.detach().cpu().float().numpy() for k, v in gaussians.params.items()}
    N = p["means"].shape[0]
    f_rest = p["shN"].transpose(0, 2, 1).reshape(N, -1)  # [N, K-1, 3] -> channel-major [N, 3(K-1)]
    columns = [
        ("x", p["means"][:, 0]), ("y", p["means"][:, 1]), ("z", p["means"][:, 2]),
        ("nx", np.zeros(N)), ("ny", np.zeros(N)), ("nz", np.zeros(N)),
        *((f"f_dc_{i}", p["sh0"][:, 0, i]) for i in range(3)),
        *((f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])),
        ("opacity", p["opacity_logits"]),
        *((f"scale_{i}", p["log_scales"][:, i]) for i in range(3)),
        *((f"rot_{i}", p["quats"][:, i]) for i in range(4)),
    ]  # fmt: skip
    table = np.empty(N, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        table[name] = values
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {N}"]
        + [f"property float {name}" for name, _ in columns]
        + ["end_header"]
    )
    return (header + "\n").encode("ascii") + table.tobytes()


def write_ply(path: Path, gaussians: Gaussians) -> None:
    """Write `gaussians` to `path` atomically."""
    atomic_write_bytes(Path(path), gaussians_to_ply_bytes(gaussians))


def _read_vertex_table(path: Path) -> np.ndarray:
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body_start = data.index(b"\n", end) + 1
    fmt, fields, count, in_vertex, before = None, [], 0, False, 0
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            in_vertex = words[1] == "vertex"
            if in_vertex:
                count = int(words[2])
            elif count == 0:
                before += 1
        elif words[0] == "property" and in_vertex:
            if words[1] == "list":
                raise PlyError(f"{path}: list property '{words[-1]}' in the vertex element is not supported")
            if words[1] not in _PLY_TYPES:
                raise PlyError(f"{path}: unknown property type '{words[1]}'")
            fields.append((words[2], _PLY_TYPES[words[1]]))
    if before:
        raise PlyError(f"{path}: the vertex element must come first")
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise PlyError(f"{path}: format '{fmt}' is not supported (3DGS files are binary)")
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + t) for name, t in fields])
    if len(data) - body_start < count * dtype.itemsize:
        raise PlyError(f"{path}: truncated ({count} vertices declared)")
    return np.frombuffer(data, dtype=dtype, count=count, offset=body_start)


def read_ply(path: Path) -> Gaussians:
    """Read a 3DGS PLY (written by splat4d, the Inria code or gsplat) into `Gaussians`."""
    path = Path(path)
    if not path.is_file():
        raise PlyError(f"{path}: file not found")
    table = _read_vertex_table(path)
    names = set(table.dtype.names or ())
    required = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"} | {f"scale_{i}" for i in range(3)}
    required |= {f"rot_{i}" for i in range(4)}
    missing = required - names
    if missing:
        raise PlyError(f"{path}: not a 3DGS PLY, missing properties {sorted(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    K = n_rest // 3 + 1
    if n_rest % 3 or math.isqrt(K) ** 2 != K:
        raise PlyError(f"{path}: {n_rest} f_rest properties do not make a full SH degree")
    N = len(table)

    def cols(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[k].astype(np.float32) for k in keys], axis=1))

    f_rest = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else torch.zeros(N, 0)
    return Gaussians(
        {
            "means": cols("x", "y", "z"),
            "log_scales": cols("scale_0", "scale_1", "scale_2"),
            "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
            "opacity_logits": cols("opacity")[:, 0].contiguous(),
            "sh0": cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
            "shN": f_rest.reshape(N, 3, K - 1).transpose(1, 2).contiguous(),
        }
    )
