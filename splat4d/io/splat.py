"""The compact `.splat` format of the antimatter15/splat web viewer (lossy; 32 bytes per Gaussian, no header).

Each record, little-endian: position 3 × float32, scale 3 × float32 (activated: exp of the log-scales), colour
RGBA 4 × uint8 (rgb = 0.5 + SH_C0 · f_dc, alpha = sigmoid(opacity logit), both × 255 and clamped) and rotation
4 × uint8 (the normalised quaternion w, x, y, z mapped as q · 128 + 128, clamped). Records are sorted by
descending size × opacity (exp(Σ log-scales) · alpha), the order the viewer's converter writes and its
progressive loader expects. Higher SH bands are dropped, so only view-independent colour survives.
"""

from pathlib import Path

import numpy as np
import torch

from splat4d.errors import UserError
from splat4d.gaussians import SH_C0, Gaussians
from splat4d.io.atomic import atomic_write_bytes

SPLAT_DTYPE = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)]
)
"""One record of a .splat file (32 bytes)."""


class SplatError(UserError):
    """A file is not a readable .splat file; the message names the file."""


def _to_uint8(x: np.ndarray) -> np.ndarray:
    # Round to nearest (the viewer's converter truncates; rounding halves the error of a read-back).
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussians_to_splat_bytes(gaussians: Gaussians) -> bytes:
    """The .splat bytes of `gaussians` (records sorted by descending size × opacity)."""
    p = {k: v.detach().cpu().double().numpy() for k, v in gaussians.params.items()}
    N = p["means"].shape[0]
    alpha = 1.0 / (1.0 + np.exp(-p["opacity_logits"]))
    order = np.argsort(-np.exp(p["log_scales"].sum(axis=1)) * alpha, kind="stable")
    quats = p["quats"] / np.linalg.norm(p["quats"], axis=1, keepdims=True).clip(1e-12)
    records = np.empty(N, dtype=SPLAT_DTYPE)
    records["position"] = p["means"]
    records["scale"] = gaussians.scales.detach().cpu().float().numpy()  # exp in float32, as rendered
    records["rgba"][:, :3] = _to_uint8((0.5 + SH_C0 * p["sh0"][:, 0]) * 255)
    records["rgba"][:, 3] = _to_uint8(alpha * 255)
    records["rotation"] = _to_uint8(quats * 128 + 128)
    return records[order].tobytes()


def write_splat(path: Path, gaussians: Gaussians) -> None:
    """Write `gaussians` to `path` atomically as a .splat file."""
    atomic_write_bytes(Path(path), gaussians_to_splat_bytes(gaussians))


def read_splat(path: Path) -> Gaussians:
    """Read a .splat file into `Gaussians` of SH degree 0 (in the file's order).

    The inverse of `write_splat` up to its quantisation: colours and opacities to 1/255, rotations to 1/128.
    Opacities of 0 and 255 are read as 0.5/255 and 254.5/255 so the logits stay finite.

    Raises:
        SplatError: the file is missing, empty, not whole records, or holds Gaussians that cannot be drawn
            (non-finite positions or scales, non-positive scales, all-zero rotations); the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise SplatError(f"{path}: is a folder, not a .splat file; name the file itself")
    if not path.is_file():
        raise SplatError(f"{path}: file not found")
    data = path.read_bytes()
    if not data:
        raise SplatError(f"{path}: the file is empty (0 bytes); export or copy it again")
    if len(data) % SPLAT_DTYPE.itemsize:
        raise SplatError(
            f"{path}: {len(data)} bytes is not a whole number of 32-byte .splat records; "
            "the file is cut short or not a .splat file"
        )
    records = np.frombuffer(data, dtype=SPLAT_DTYPE)
    N = len(records)
    hint = "the file is damaged or not a .splat file; export it again"
    bad = ~np.isfinite(records["position"]).all(axis=1) | ~np.isfinite(records["scale"]).all(axis=1)
    if bad.any():
        raise SplatError(f"{path}: {bad.sum()} of {N} Gaussians have non-finite positions or scales; {hint}")
    scales = records["scale"].astype(np.float64)
    bad = (scales <= 0).any(axis=1)
    if bad.any():
        raise SplatError(f"{path}: {bad.sum()} of {N} Gaussians have non-positive scales; {hint}")
    bad = (records["rotation"] == 128).all(axis=1)
    if bad.any():
        raise SplatError(f"{path}: {bad.sum()} of {N} Gaussians have an all-zero rotation; {hint}")
    rgba = records["rgba"].astype(np.float64) / 255
    alpha = np.clip(rgba[:, 3], 0.5 / 255, 254.5 / 255)
    quats = (records["rotation"].astype(np.float64) - 128) / 128

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    return Gaussians(
        {
            "means": tensor(records["position"]),
            "log_scales": tensor(np.log(scales)),
            "quats": tensor(quats),
            "opacity_logits": tensor(np.log(alpha / (1 - alpha))),
            "sh0": tensor((rgba[:, None, :3] - 0.5) / SH_C0),
            "shN": torch.zeros(N, 0, 3),
        }
    )
