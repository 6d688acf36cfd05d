"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the step, the model's parameters (any number of Gaussians), every optimiser's state, the
densification strategy's state, the image sampler's position and the random number generators' states. Files are
written atomically (`checkpoints/step-000500.pt`) and only the newest `keep` are kept.
"""

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from splat4d.errors import UserError, report_warning
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


class CheckpointError(UserError):
    """A checkpoint file cannot be used (unreadable, truncated, of another format, with non-finite parameters)."""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of the checkpoint `path`, checked: a mapping with a non-negative `step` and finite `params`.

    Raises:
        CheckpointError: naming the file, when it is unreadable (empty, truncated, not a checkpoint), of another
            format version, or holds parameters that are not finite tensors.
    """
    path = Path(path)
    try:  # torch raises many types for damaged files (EOFError, RuntimeError, pickle errors)
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        reason = "empty file" if path.is_file() and path.stat().st_size == 0 else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a splat4d checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload.get('format_version')} is not {FORMAT_VERSION}"
        )
    step = payload.get("step")
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: no valid step number in the checkpoint")
    params = payload.get("params")
    if params is not None:
        if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
            raise CheckpointError(f"{path}: its parameters are not tensors")
        bad = [name for name, value in params.items() if not torch.isfinite(value).all()]
        if bad:
            raise CheckpointError(f"{path}: non-finite values in {', '.join(sorted(bad))}")
    return payload


def load_latest_checkpoint(
    directory: Path,
    map_location: str | torch.device = "cpu",
    set_aside: bool = False,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in `directory` and its payload, or None when there is none at all.

    An unreadable newer checkpoint (a disk that filled up, a file damaged by hand) is skipped for the previous
    one, with a one-line warning through `warn` (default: `splat4d.errors.report_warning`). With `set_aside` (a
    run that resumes and will write new checkpoints), a skipped file is renamed `<name>.corrupt`: kept for the
    user, no longer taken for the newest checkpoint.

    Raises:
        CheckpointError: there are checkpoints but none is readable.
    """
    warn = warn or report_warning
    skipped: list[CheckpointError] = []
    paths = list_checkpoints(directory)
    for path in reversed(paths):
        try:
            payload = load_checkpoint(path, map_location)
        except CheckpointError as exc:
            skipped.append(exc)
            continue
        for exc, bad in zip(skipped, reversed(paths), strict=False):
            kept = ""
            if set_aside:
                bad.replace(bad.with_name(bad.name + ".corrupt"))
                kept = f", set aside as {bad.name}.corrupt"
            warn(f"{exc}; using the previous checkpoint {path.name}{kept}")
        return path, payload
    if skipped:
        raise CheckpointError(
            f"{directory}: none of its {len(paths)} checkpoints is readable ({skipped[0]}); "
            "rerun `splat4d reconstruct` with --overwrite to train again"
        )
    return None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
