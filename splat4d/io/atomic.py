"""Atomic file writes: a crash or Ctrl-C never leaves a half-written output in place."""

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the output, not the temporary file the user never asked for
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        apply_default_permissions(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # A full disk, or a folder where the file goes: name the output, not the temporary file.
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: Path, overwrite: bool, flag: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot be written as asked: a folder, or an existing file
    without `overwrite`.

    Raises:
        UsageError: naming `flag` and the path.
    """
    from splat4d.errors import UsageError

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; name a file (it is never replaced by one)")
    if path.exists() and not overwrite:
        raise UsageError(f"{flag} {path}: exists; pass --overwrite to replace it")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def apply_default_permissions(path: Path) -> None:
    """Give a temporary file or folder (created 0600 / 0700 by `tempfile`) the permissions a plain `open` or
    `mkdir` would have given it under the current umask, before it is renamed into place as a user's output."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)
