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
static scene; `read_any_ply` tells the two apart.

Readers check what they read (`PlyError`, one line naming the file): the header line by line, the body's length
against the declared vertex count, and every Gaussian's values (finite, log-scales that do not overflow when
rendered, rotations that are not all zero), so a damaged or diverged scene is refused here rather than drawn as a
blank canvas.
"""

import math
from pathlib import Path

import numpy as np
import torch

from splat4d.errors import UserError
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.io.atomic import atomic_write_bytes

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


class PlyError(UserError):
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


def _read_bytes(path: Path) -> bytes:
    """The whole file, or a `PlyError` naming it when it is absent, a folder or unreadable."""
    if path.is_dir():
        raise PlyError(f"{path}: is a folder, not a PLY file; name the .ply file itself")
    if not path.is_file():
        raise PlyError(f"{path}: file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PlyError(f"{path}: cannot be read ({(exc.strerror or type(exc).__name__).lower()})") from None


def _read_vertex_table(path: Path) -> np.ndarray:
    return _read_ply_file(path)[0]


def _read_ply_file(path: Path) -> tuple[np.ndarray, list[str]]:
    """The vertex table and the header's comment lines (without the `comment ` prefix).

    Raises:
        PlyError: the file is empty, not a binary PLY, has a damaged header, declares no vertices, or is shorter
            than its header says.
    """
    data = _read_bytes(path)
    if not data:
        raise PlyError(f"{path}: the file is empty (0 bytes); export or copy it again")
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise PlyError(f"{path}: not a PLY file (the first line is not 'ply')")
    marker = data.find(b"\nend_header")
    if marker < 0:
        raise PlyError(f"{path}: the header has no end_header line; the file is cut short or not a PLY file")
    body_start = marker + len(b"\nend_header")
    body_start += data[body_start : body_start + 1] == b"\r"
    if data[body_start : body_start + 1] != b"\n":
        raise PlyError(f"{path}: end_header is not followed by a line break; the header is damaged")
    body_start += 1
    fields, count, comments = _parse_header(path, data[:marker].decode("latin-1").splitlines())
    order = "<" if fields[0] == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + t) for name, t in fields[1]])
    need, have = count * dtype.itemsize, len(data) - body_start
    if have < need:
        raise PlyError(
            f"{path}: truncated: the header declares {count} vertices ({need} bytes) but only {have} bytes "
            "follow it; the file was cut short, export or copy it again"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=body_start), comments


def _parse_header(path: Path, lines: list[str]) -> tuple[tuple[str, list[tuple[str, str]]], int, list[str]]:
    """((format, vertex properties as (name, numpy type)), vertex count, comments) of the header lines before
    end_header (the first is `ply`)."""

    def bad(number: int, why: str) -> PlyError:
        return PlyError(f"{path}: header line {number} {why}; the file is damaged or not a 3DGS PLY")

    fmt, count, element, before = None, None, None, []
    fields: list[tuple[str, str]] = []
    comments: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] == "obj_info":
            continue
        if words[0] == "comment":
            comments.append(line.strip()[len("comment") :].strip())
            continue
        if not line.isascii():
            raise bad(number, "is not ASCII text")
        if words[0] == "format":
            if len(words) != 3:
                raise bad(number, f"{line.strip()!r} is not 'format <type> <version>'")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3:
                raise bad(number, f"{line.strip()!r} is not 'element <name> <count>'")
            try:
                n = int(words[2])
            except ValueError:
                raise bad(
                    number, f"gives element {words[1]} the count {words[2]!r}, not an integer"
                ) from None
            if n < 0:
                raise bad(number, f"gives element {words[1]} the negative count {n}")
            element = words[1]
            if element == "vertex":
                if count is not None:
                    raise bad(number, "declares a second vertex element")
                if before:
                    raise PlyError(f"{path}: the vertex element must come first (after {before[0]!r})")
                count = n
            elif count is None and n > 0:
                before.append(element)
        elif words[0] == "property":
            if element is None:
                raise bad(number, "declares a property before any element")
            if element != "vertex":
                continue
            if len(words) > 1 and words[1] == "list":
                raise PlyError(f"{path}: list property '{words[-1]}' in the vertex element is not supported")
            if len(words) != 3:
                raise bad(number, f"{line.strip()!r} is not 'property <type> <name>'")
            if words[1] not in _PLY_TYPES:
                raise PlyError(
                    f"{path}: unknown property type '{words[1]}' (PLY types are {', '.join(_PLY_TYPES)})"
                )
            if any(words[2] == name for name, _ in fields):
                raise bad(number, f"repeats the vertex property {words[2]!r}")
            fields.append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise bad(number, f"starts with the unknown keyword {words[0]!r}")
    if fmt is None:
        raise PlyError(f"{path}: the header has no format line; the file is damaged or not a PLY file")
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise PlyError(
            f"{path}: format '{fmt}' is not supported (3DGS files are binary); "
            "save it as binary_little_endian (e.g. in CloudCompare or MeshLab)"
        )
    if count is None:
        raise PlyError(f"{path}: no vertex element; not a 3DGS PLY")
    if count == 0:
        raise PlyError(f"{path}: holds no Gaussians (element vertex 0); nothing to show or export")
    if not fields:
        raise PlyError(f"{path}: the vertex element has no properties; not a 3DGS PLY")
    return (fmt, fields), count, comments


_MAX_LOG_SCALE = 44.0
"""Largest log-scale whose squared scale (a covariance entry) is finite in float32 (exp(2 · 44.36) ≈ 3.4e38)."""


def _check_values(
    path: Path,
    values: dict[str, torch.Tensor],
    log_scales: dict[str, torch.Tensor],
    rotations: dict[str, torch.Tensor],
) -> None:
    """Refuse Gaussians that cannot be drawn: non-finite values in any property group of `values` (named by their
    PLY properties, e.g. "x/y/z"), log-scales so large that the covariance overflows, and all-zero rotations.

    Raises:
        PlyError: naming the file, how many Gaussians are bad and in which properties.
    """
    n = len(next(iter(values.values())))
    hint = "retrain the scene or export it again (it was saved from a diverged run, or the file is damaged)"

    def refuse(bad: torch.Tensor, what: str, fields: list[str]) -> None:
        raise PlyError(
            f"{path}: {int(bad.sum())} of {n} Gaussians have {what} in {', '.join(fields)}; {hint}"
        )

    bad, fields = torch.zeros(n, dtype=torch.bool), []
    for name, v in values.items():
        rows = ~torch.isfinite(v.reshape(n, -1)).all(dim=1)
        if rows.any():
            bad |= rows
            fields.append(name)
    if fields:
        refuse(bad, "non-finite values (NaN or infinity)", fields)
    for name, v in log_scales.items():
        rows = (v.reshape(n, -1) > _MAX_LOG_SCALE).any(dim=1)
        if rows.any():
            bad |= rows
            fields.append(name)
    if fields:
        refuse(bad, f"log-scales above {_MAX_LOG_SCALE:g} (sizes that overflow when rendered)", fields)
    for name, v in rotations.items():
        rows = (v == 0).all(dim=1)
        if rows.any():
            bad |= rows
            fields.append(name)
    if fields:
        refuse(bad, "all-zero rotations (no orientation)", fields)


def read_ply(path: Path) -> Gaussians:
    """Read a 3DGS PLY (written by splat4d, the Inria code or gsplat) into `Gaussians`.

    Raises:
        PlyError: the file is not a readable 3DGS PLY, or holds Gaussians that cannot be drawn (non-finite values,
            all-zero rotations); the message names the file.
    """
    path = Path(path)
    return _gaussians_from_table(path, _read_vertex_table(path))


def read_any_ply(path: Path) -> Gaussians | Gaussians4D:
    """Read a 3DGS PLY into `Gaussians`, or a 4D splat4d PLY (one with the 4D extension's `t` and `f_dc_0_0`) into
    `Gaussians4D`; errors as `read_ply` and `read_ply_4d`."""
    path = Path(path)
    table, comments = _read_ply_file(path)
    if {"t", "f_dc_0_0"} <= set(table.dtype.names or ()):
        return _gaussians4d_from_table(path, table, comments)
    return _gaussians_from_table(path, table)


def _gaussians_from_table(path: Path, table: np.ndarray) -> Gaussians:
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
    if not {f"f_rest_{i}" for i in range(n_rest)} <= names:
        raise PlyError(
            f"{path}: the {n_rest} f_rest properties are not numbered f_rest_0..f_rest_{n_rest - 1}; "
            "the file is damaged or not a 3DGS PLY"
        )
    N = len(table)

    def cols(*keys: str) -> torch.Tensor:
        with np.errstate(over="ignore"):  # doubles beyond float32 become inf, refused by _check_values
            return torch.from_numpy(np.stack([table[k].astype(np.float32) for k in keys], axis=1))

    f_rest = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else torch.zeros(N, 0)
    params = {
        "means": cols("x", "y", "z"),
        "log_scales": cols("scale_0", "scale_1", "scale_2"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacity_logits": cols("opacity")[:, 0].contiguous(),
        "sh0": cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
        "shN": f_rest.reshape(N, 3, K - 1).transpose(1, 2).contiguous(),
    }
    _check_values(
        path,
        {
            "x/y/z": params["means"],
            "opacity": params["opacity_logits"],
            "scale_0-2": params["log_scales"],
            "rot_0-3": params["quats"],
            "f_dc_0-2": params["sh0"],
            "f_rest_*": params["shN"],
        },
        {"scale_0-2": params["log_scales"]},
        {"rot_0-3": params["quats"]},
    )
    return Gaussians(params)


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
    """Read a file written by `write_ply_4d` into `Gaussians4D` (exactly the parameters that were written).

    Raises:
        PlyError: the file is not a readable 4D splat4d PLY, its time_period is not a positive number, or it holds
            Gaussians that cannot be drawn (non-finite values, all-zero rotations); the message names the file.
    """
    path = Path(path)
    table, comments = _read_ply_file(path)
    return _gaussians4d_from_table(path, table, comments)


def _gaussians4d_from_table(path: Path, table: np.ndarray, comments: list[str]) -> Gaussians4D:
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
        if words and words[0] == "time_period":
            try:
                (time_period,) = map(float, words[1:])
            except ValueError:
                raise PlyError(
                    f"{path}: bad time_period comment {comment!r}; it must be 'comment time_period <number>'"
                ) from None
    if not (math.isfinite(time_period) and time_period > 0):
        raise PlyError(
            f"{path}: time_period {time_period} must be a positive finite number; "
            "fix the header line 'comment time_period ...' (1 for times normalised to [0, 1])"
        )
    N = len(table)

    def cols(*keys: str) -> torch.Tensor:
        absent = [k for k in keys if k not in names]
        if absent:
            raise PlyError(f"{path}: missing properties {absent}")
        with np.errstate(over="ignore"):  # doubles beyond float32 become inf, refused by _check_values
            return torch.from_numpy(np.stack([table[k].astype(np.float32) for k in keys], axis=1))

    sh0 = torch.stack([cols(*(f"f_dc_{m}_{c}" for c in range(3))) for m in range(M)], dim=1)[:, :, None]
    if n_rest:
        rest = [cols(*(f"f_rest_{m}_{i}" for i in range(n_rest))) for m in range(M)]
        shN = torch.stack([r.reshape(N, 3, K - 1).transpose(1, 2) for r in rest], dim=1).contiguous()
    else:
        shN = torch.zeros(N, M, 0, 3)
    if "rotor_0" in names:
        rotation = {"rotors": cols(*(f"rotor_{i}" for i in range(8)))}
        rotation_names = {"rotor_0-7": rotation["rotors"]}
    else:
        rotation = {
            "quats_l": cols(*(f"rot_l_{i}" for i in range(4))),
            "quats_r": cols(*(f"rot_r_{i}" for i in range(4))),
        }
        rotation_names = {"rot_l_0-3": rotation["quats_l"], "rot_r_0-3": rotation["quats_r"]}
    means4, log_scales4 = cols("x", "y", "z", "t"), cols("scale_0", "scale_1", "scale_2", "scale_t")
    opacity_logits = cols("opacity")[:, 0].contiguous()
    _check_values(
        path,
        {
            "x/y/z": means4[:, :3],
            "t": means4[:, 3],
            "opacity": opacity_logits,
            "scale_0-2": log_scales4[:, :3],
            "scale_t": log_scales4[:, 3],
            **rotation_names,
            "f_dc_*": sh0,
            "f_rest_*": shN,
        },
        {"scale_0-2": log_scales4[:, :3], "scale_t": log_scales4[:, 3]},
        rotation_names,
    )
    return Gaussians4D(
        {
            "means4": means4,
            "log_scales4": log_scales4,
            **rotation,
            "opacity_logits": opacity_logits,
            "sh0": sh0.contiguous(),
            "shN": shN,
        },
        time_period,
    )
