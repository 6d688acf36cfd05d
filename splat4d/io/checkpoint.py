"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the step, the model's parameters (any number of Gaussians), every optimiser's state, the
densification strategy's state, the image sampler's position and the random number generators' states. Files are
written atomically (`checkpoints/step-000500.pt`) and only the newest `keep` are kept.
"""

import io
import re
from pathlib import Path
from typing import Any

import torch

from splat4d.io.atomic import atomic_write_bytes

FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:06d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    paths = list_checkpoints(directory)
    return paths[-1] if paths else None


def save_checkpoint(directory: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write `payload` (tensors, dicts, numbers) for `step`, then delete all but the newest `keep` checkpoints."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "step": step, **payload}, buffer)
    path = checkpoint_path(directory, step)
    atomic_write_bytes(path, buffer.getvalue())
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload.get('format_version')} is not {FORMAT_VERSION}")
    return payload


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
