"""Optional dependencies, imported where a feature needs them.

pycolmap (SfM, COLMAP workspaces, undistortion, triangulation), PyAV (video decoding) and imageio-ffmpeg (MP4
export) are large native packages that many uses of splat4d never touch: training on a Blender or pinhole
nerfstudio dataset, evaluation, PLY export and the rasterizer work without them. So no module imports them at
its top; the functions that need one call `require`, which turns a missing package into the error policy's one
line (`splat4d.errors`) instead of a traceback. Annotations that name their types are strings (`from __future__
import annotations` with the import under `TYPE_CHECKING`).

Importing pycolmap installs glog's failure signal handler natively, SIGTERM included, over whatever handler was
there. Now that the import happens during a command, inside `splat4d.interrupts.terminate_as_interrupt`, it would
replace the handler that turns SIGTERM into a clean stop; so `require` puts the Python-level handlers back after
a first import.
"""

import importlib
import signal
import sys
import threading
from types import ModuleType

from splat4d.errors import UserError

PACKAGES = {
    "pycolmap": ("pycolmap", "pycolmap"),
    "av": ("PyAV", "av"),
    "imageio_ffmpeg": ("imageio-ffmpeg", "imageio-ffmpeg"),
}
"""Import name → (the name users know the package by, the name to `pip install`)."""


def require(module: str, purpose: str, error: type[UserError] = UserError) -> ModuleType:
    """Import `module`, or raise `error` saying that it is needed for `purpose` and how to install it.

    Args:
        module: the module's import name, e.g. "pycolmap".
        purpose: what it is needed for, completing "it is needed to ...", e.g. "pose photos with SfM".
        error: the `UserError` subclass to raise (readers raise `DatasetError`).

    Raises:
        error: `<name> is not installed; it is needed to <purpose>: pip install <package>` (or, when the
            package is there but fails to import, its reason and a hint to reinstall it).
    """
    try:
        return _import_keeping_signal_handlers(module)
    except ImportError as exc:
        name, package = PACKAGES.get(module, (module, module))
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            raise error(f"{name} is not installed; it is needed to {purpose}: pip install {package}") from exc
        raise error(
            f"{name} is installed but cannot be imported ({exc}); it is needed to {purpose}: "
            f"pip install --force-reinstall {package}"
        ) from exc


def _import_keeping_signal_handlers(module: str) -> ModuleType:
    """Import `module`; a first import in the main thread re-installs afterwards every signal handler that was a
    Python callable before it (native libraries install their own with `sigaction`, unseen by Python's `signal`
    module, which would still report the old handler). Handlers that were SIG_DFL or SIG_IGN are left to the
    library, as an import at the top of a module would."""
    if module in sys.modules or threading.current_thread() is not threading.main_thread():
        return importlib.import_module(module)
    handlers = {signum: signal.getsignal(signum) for signum in signal.valid_signals()}
    imported = importlib.import_module(module)
    for signum, handler in handlers.items():
        if callable(handler):
            signal.signal(signum, handler)
    return imported
