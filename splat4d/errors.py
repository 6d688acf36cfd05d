"""The error policy of splat4d: which failures are the user's to fix, and how they are reported.

Every *expected* failure (bad input files, bad flags, an output that cannot be written, a corrupt checkpoint, an
interrupted run) is raised as a `UserError` whose message is one line: `<file or flag>: <what is wrong>; <what to
do>`. The command line (`splat4d.cli`) prints it as `error: <message>` and exits with status 2 (`EXIT_USER`);
interrupted runs exit with 130 (`EXIT_INTERRUPTED`). Anything else is a bug in splat4d and keeps its traceback.

Readers raise their own subclasses (`DatasetError`, `PlyError`, `SceneFolderError`, ...), all of them
`UserError`s, and they check values where they read them (finite numbers, shapes, rigid poses, positive sizes),
so nothing invalid reaches training, the viewer or an export.
"""

import errno
import sys

EXIT_USER = 2
"""Exit status of every expected failure (bad input, bad flags, unusable outputs), as argparse and tyro use."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)."""


class UserError(ValueError):
    """A failure the user can fix: bad input, bad flags, an unusable output. The message is one line naming the
    file or flag, what is wrong and, where it helps, what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class UsageError(UserError):
    """Flags that cannot be used together, or a flag's value out of its range; the message names the flag."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; the message says what was kept (e.g. the checkpoint saved)."""


def one_line(message: str) -> str:
    """`message` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


_OS_HINTS = {
    errno.EACCES: "check the folder's permissions or choose another output",
    errno.EPERM: "check the folder's permissions or choose another output",
    errno.EROFS: "the file system is read-only; choose another output",
    errno.ENOSPC: "free some disk space and rerun (the run resumes from its last checkpoint)",
    errno.EDQUOT: "free some disk space and rerun (the run resumes from its last checkpoint)",
    errno.EISDIR: "name a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "choose another name",
    errno.ENAMETOOLONG: "choose a shorter name",
}


def describe_os_error(exc: OSError) -> str | None:
    """A one-line message for an operating-system error on a named file (permissions, a full disk, a folder where a
    file was expected, ...): `<file>: <reason>; <what to do>`. None when the error names no file (then it is not a
    failure of the user's paths and should keep its traceback)."""
    path = exc.filename
    if path is None:
        return None
    reason = exc.strerror or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno or -1)
    return one_line(f"{path}: {reason.lower()}" + (f"; {hint}" if hint else ""))


def report_warning(message: str) -> None:
    """Print `warning: <message>` as one line on stderr: something went wrong that splat4d worked around (a
    damaged checkpoint skipped for the previous one, ...)."""
    print(f"warning: {one_line(message)}", file=sys.stderr)
