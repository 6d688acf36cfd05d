"""3DGS PLY files (the layout of the Inria code, which gsplat, SuperSplat and most viewers read and write).

One vertex per Gaussian with float properties x, y, z, nx, ny, nz (zeros), f_dc_0..2 (SH band 0 per channel),
f_rest_0..3(K−1)−1 (higher bands, channel-major: all of red's coefficients, then green's, then blue's),
opacity (a logit), scale_0..2 (log-scales) and rot_0..3 (quaternion w, x, y, z, not necessarily normalised).
Raw parameters are stored, not activated ones, so a round trip is exact. Files from other tools load too:
properties may come in any order and of any numeric type (double, uchar, ...), and unknown ones are ignored.

4D extension (`write_ply_4d` / `read_ply_4d`, for `Gaussians4D`): the same vertex element with

- x, y, z, t: the 4D mean; nx, ny, nz zeros (as in 3D files);
- f_dc_<m>_<c> and f_rest_<m>_<i>: SH coefficients of time basis m = 0..M−1 (cos(2π m t / time_period)), each
  laid out like the 3D f_dc_<c> / f_rest_<i> (channel-major f_rest);
- opacity (logit), scale_0..2 (spatial log-scales), scale_t (temporal log-scale);
- the 4D rotation as rot_l_0..3 + rot_r_0..3 (left/right quaternions, w x y z) or rotor_0..7;
- a header line `comment time_period <float>` (absent: 1.0).

3D readers ignore the extra properties and fail on the missing f_dc_<c>, so a 4D file is never mistaken for a
static scene.
"""

import math
from pathlib import Path

import numpy as np
import torch

from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.io.atomic import atomic_write_bytes

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


class PlyError(ValueError):
    """A PLY file is not a readable 3DGS file; the message names the file."""


def _ply_bytes(columns: list[tuple[str, np.ndarray]], comments: tuple[str, ...] = ()) -> bytes:
    N = len(columns[0][1])
    table = np.empty(N, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        table[name] = values
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0"]
        + [f"comment {c}" for c in comments]
        + [f"element vertex {N}"]
        + [f"property float {name}" for name, _ in columns]
        + ["end_header"]
    )
    return (header + "\n").encode("ascii") + table.tobytes()


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
    return _ply_bytes(columns)


def write_ply(path: Path, gaussians: Gaussians) -> None:
    """Write `gaussians` to `path` atomically."""
    atomic_write_bytes(Path(path), gaussians_to_ply_bytes(gaussians))


def _read_vertex_table(path: Path) -> np.ndarray:
    return _read_ply_file(path)[0]


def _read_ply_file(path: Path) -> tuple[np.ndarray, list[str]]:
    """The vertex table and the header's comment lines (without the `comment ` prefix)."""
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body_start = data.index(b"\n", end) + 1
    fmt, fields, count, in_vertex, before, comments = None, [], 0, False, 0, []
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "comment":
            comments.append(line.strip()[len("comment") :].strip())
        elif words[0] == "format":
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
    return np.frombuffer(data, dtype=dtype, count=count, offset=body_start), comments


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


def _sh_columns(sh0: np.ndarray, shN: np.ndarray, suffix: str) -> list[tuple[str, np.ndarray]]:
    """f_dc_<suffix><c> and channel-major f_rest_<suffix><i> columns of sh0 [N, 1, 3] and shN [N, K-1, 3]."""
    N = sh0.shape[0]
    f_rest = shN.transpose(0, 2, 1).reshape(N, -1)
    return [
        *((f"f_dc_{suffix}{c}", sh0[:, 0, c]) for c in range(3)),
        *((f"f_rest_{suffix}{i}", f_rest[:, i]) for i in range(f_rest.shape[1])),
    ]


def gaussians4d_to_ply_bytes(gaussians: Gaussians4D) -> bytes:
    p = {k: v.detach().cpu().float().numpy() for k, v in gaussians.params.items()}
    N, M = p["means4"].shape[0], p["sh0"].shape[1]
    if "rotors" in p:
        rotation = [(f"rotor_{i}", p["rotors"][:, i]) for i in range(8)]
    else:
        rotation = [(f"rot_l_{i}", p["quats_l"][:, i]) for i in range(4)]
        rotation += [(f"rot_r_{i}", p["quats_r"][:, i]) for i in range(4)]
    columns = [
        *((name, p["means4"][:, i]) for i, name in enumerate("xyzt")),
        ("nx", np.zeros(N)), ("ny", np.zeros(N)), ("nz", np.zeros(N)),
        *(col for m in range(M) for col in _sh_columns(p["sh0"][:, m], p["shN"][:, m], f"{m}_")),
        ("opacity", p["opacity_logits"]),
        *((f"scale_{i}", p["log_scales4"][:, i]) for i in range(3)),
        ("scale_t", p["log_scales4"][:, 3]),
        *rotation,
    ]  # fmt: skip
    return _ply_bytes(columns, comments=(f"time_period {gaussians.time_period!r}",))


def write_ply_4d(path: Path, gaussians: Gaussians4D) -> None:
    """Write a 4D scene to `path` atomically in the 4D extension of the 3DGS layout (see the module docstring)."""
    atomic_write_bytes(Path(path), gaussians4d_to_ply_bytes(gaussians))


def read_ply_4d(path: Path) -> Gaussians4D:
    """Read a file written by `write_ply_4d` into `Gaussians4D` (exactly the parameters that were written)."""
    path = Path(path)
    if not path.is_file():
        raise PlyError(f"{path}: file not found")
    table, comments = _read_ply_file(path)
    names = set(table.dtype.names or ())
    required = {"x", "y", "z", "t", "opacity", "scale_0", "scale_1", "scale_2", "scale_t", "f_dc_0_0"}
    missing = required - names
    if missing:
        raise PlyError(f"{path}: not a 4D splat4d PLY, missing properties {sorted(missing)}")
    M = sum(1 for n in names if n.startswith("f_dc_") and n.endswith("_0") and n.count("_") == 3)
    n_rest = sum(1 for n in names if n.startswith("f_rest_0_"))
    K = n_rest // 3 + 1
    if n_rest % 3 or math.isqrt(K) ** 2 != K:
        raise PlyError(f"{path}: {n_rest} f_rest_0_* properties do not make a full SH degree")
    time_period = 1.0
    for comment in comments:
        words = comment.split()
        if len(words) == 2 and words[0] == "time_period":
            try:
                time_period = float(words[1])
            except ValueError:
                raise PlyError(f"{path}: bad time_period comment {comment!r}") from None
    N = len(table)

    def cols(*keys: str) -> torch.Tensor:
        absent = [k for k in keys if k not in names]
        if absent:
            raise PlyError(f"{path}: missing properties {absent}")
        return torch.from_numpy(np.stack([table[k].astype(np.float32) for k in keys], axis=1))

    sh0 = torch.stack([cols(*(f"f_dc_{m}_{c}" for c in range(3))) for m in range(M)], dim=1)[:, :, None]
    if n_rest:
        rest = [cols(*(f"f_rest_{m}_{i}" for i in range(n_rest))) for m in range(M)]
        shN = torch.stack([r.reshape(N, 3, K - 1).transpose(1, 2) for r in rest], dim=1).contiguous()
    else:
        shN = torch.zeros(N, M, 0, 3)
    if "rotor_0" in names:
        rotation = {"rotors": cols(*(f"rotor_{i}" for i in range(8)))}
    else:
        rotation = {
            "quats_l": cols(*(f"rot_l_{i}" for i in range(4))),
            "quats_r": cols(*(f"rot_r_{i}" for i in range(4))),
        }
    return Gaussians4D(
        {
            "means4": cols("x", "y", "z", "t"),
            "log_scales4": cols("scale_0", "scale_1", "scale_2", "scale_t"),
            **rotation,
            "opacity_logits": cols("opacity")[:, 0].contiguous(),
            "sh0": sh0.contiguous(),
            "shN": shN,
        },
        time_period,
    )
