"""Stopping a command with `kill` as cleanly as with Ctrl-C.

`import pycolmap` installs glog's failure signal handler natively (not through Python's `signal` module, so
`signal.getsignal` still reports `SIG_DFL`) for SIGTERM as well as SIGSEGV, SIGABRT, SIGILL, SIGFPE and SIGBUS.
On SIGTERM that handler prints a native stack dump of about twenty lines and kills the process at once, skipping
every `finally` (an SfM run left its `.sfm.tmp-*` folder behind). `terminate_as_interrupt` puts Python's own
handler in its place for SIGTERM and SIGHUP: the signal raises `KeyboardInterrupt` in the main thread, exactly
as Ctrl-C does, so the same cleanup runs and the command ends with its one-line "interrupted" message (status 130).

pycolmap's long calls run their work in C++ threads while the calling thread waits in a loop that calls
`PyErr_CheckSignals`, so the handler runs at once; the call then stops its workers and waits for them before it
raises. Feature extraction and mapping stop within about a second, but exhaustive matching only looks between
blocks of image pairs (`ExhaustivePairingOptions.block_size`, 50 images by default: one block, the whole
matching, for 50 images or fewer). On its way out pycolmap logs `Stopping thread...` at level ERROR; the handler
here raises COLMAP's log threshold first so that the command's own one-line message is all the user sees (Ctrl-C
gets the same handler, for the same reason).
"""

import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

TERMINATING_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that stop a command as Ctrl-C does: Ctrl-C itself, `kill`, and the terminal closing (SIGHUP)."""


def _colmap_logging() -> Any:
    """`pycolmap.logging` when pycolmap is loaded (never imported here: it is slow and installs the handlers)."""
    pycolmap = sys.modules.get("pycolmap")
    return getattr(pycolmap, "logging", None)


def _leave_alone(signum: int) -> bool:
    """Ignored signals stay ignored; SIGINT is only taken over from Python's default handler (which raises
    `KeyboardInterrupt` too), never from a handler someone installed on purpose."""
    current = signal.getsignal(signum)
    return current == signal.SIG_IGN or (
        signum == signal.SIGINT and current is not signal.default_int_handler
    )


@contextmanager
def terminate_as_interrupt(signals: Sequence[int] = TERMINATING_SIGNALS) -> Iterator[None]:
    """While the block runs, `signals` raise `KeyboardInterrupt` in the main thread as Ctrl-C does, in place of
    whatever handler was there (including one installed natively by a C++ library); the previous handlers come
    back on exit. A signal that is ignored (SIG_IGN: SIGHUP under `nohup`, SIGINT in a background job) stays
    ignored, and SIGINT is only taken over from Python's default handler. Outside the main thread, where Python
    cannot set handlers, the block runs unchanged.

    A handler that was installed natively cannot be put back from Python: such a signal gets `SIG_DFL` back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    logging = _colmap_logging()
    level_at_entry = None if logging is None else logging.minloglevel
    muted: list[int] = []  # COLMAP's log threshold before the first signal muted it, if one did

    def handler(signum: int, frame: Any) -> None:
        logging = _colmap_logging()
        if logging is not None and not muted:
            muted.append(logging.minloglevel if level_at_entry is None else level_at_entry)
            logging.minloglevel = logging.FATAL.value
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    try:
        for signum in signals:
            if _leave_alone(signum):
                continue
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)
        logging = _colmap_logging()
        if muted and logging is not None:
            logging.minloglevel = muted[0]
