"""SIGTERM stops a command as Ctrl-C does: one line `interrupted` and status 130 (or a clean stop of the viewer),
no native stack dump from the signal handler pycolmap installs, and no temporary folder left in the cache.

The subprocess tests run `python -m splat4d` as a user would and signal it once it is at the stage under test."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from splat4d.interrupts import terminate_as_interrupt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

NATIVE_DUMP = re.compile(r"^\s*(\*\*\*|@\s+0x|PC: @)", re.MULTILINE)
"""Lines of glog's failure signal handler: `*** SIGTERM received by PID ...`, `PC: @ 0x...`, `    @ 0x... frame`."""
GLOG_LINE = re.compile(r"^[IWEF]\d{8} ", re.MULTILINE)
"""A COLMAP log line (such as `E... helpers.h:519] Stopping thread...` when a pycolmap call is interrupted)."""


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the command ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _stop(process: subprocess.Popen, timeout: float = 60) -> float:
    """SIGTERM `process` and wait for it to end: the seconds it took."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running {timeout} s after SIGTERM")
    return time.monotonic() - start


def _assert_no_dump(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert not NATIVE_DUMP.search(stderr), stderr
    assert not GLOG_LINE.search(stderr), stderr


def _popen(args: list, tmp_path: Path, pipe_stdout: bool = False) -> subprocess.Popen:
    """`python -m splat4d ARGS...` with its stderr (and stdout unless piped) going to files in `tmp_path`."""
    env = dict(os.environ, SPLAT4D_DEBUG="0")
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "splat4d", *map(str, args)],
            stdout=subprocess.PIPE if pipe_stdout else out,
            stderr=err,
            text=True,
            env=env,
        )


@pytest.fixture(scope="module")
def bare_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of 12 photos (320×240, no poses): `reconstruct` runs SfM on it for a few seconds."""
    from splat4d.data.synthetic import SampleConfig, write_sample_scene

    root = tmp_path_factory.mktemp("interrupts")
    write_sample_scene(SampleConfig(n_views=12, width=320, height=240), root / "sample", progress=False)
    bare = root / "bare"
    bare.mkdir()
    for image in sorted((root / "sample" / "images").glob("*.png")):
        shutil.copy(image, bare / image.name)
    return bare


def test_sigterm_during_sfm_stops_cleanly(bare_photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cache = out / "cache"
    process = _popen(["reconstruct", bare_photos, "-o", out, "--steps", "5", "--preset", "fast"], tmp_path)
    # SfM has begun once its temporary folder holds the database (feature extraction is under way).
    _wait_for(lambda: any(cache.glob(".sfm.tmp-*/database.db")), process, 60, "SfM started")
    seconds = _stop(process)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 130, stderr
    _assert_no_dump(stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "interrupted", stderr
    assert not list(cache.glob(".sfm.tmp-*")), sorted(p.name for p in cache.iterdir())
    assert not (cache / "sfm").exists()  # nothing that looks finished
    assert seconds < 30


def test_sigterm_stops_the_viewer_cleanly(tmp_path: Path) -> None:
    import torch

    from splat4d.gaussians import Gaussians
    from splat4d.io.ply import write_ply

    ply = tmp_path / "scene.ply"
    torch.manual_seed(0)
    write_ply(ply, Gaussians.from_points(torch.randn(50, 3), torch.rand(50, 3), sh_degree=0))
    process = _popen(["view", ply, "--port", "0"], tmp_path, pipe_stdout=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True)
    reader.start()
    _wait_for(lambda: any("viewer at" in line for line in seen), process, 60, "the viewer's address")
    _stop(process, timeout=30)
    reader.join(timeout=10)
    process.stdout.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert process.returncode in (0, 130), stderr
    _assert_no_dump(stderr)
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 1, stderr


def _signal_self(signum: int) -> None:
    """Send `signum` to this process and give Python's handler the chance to run (it runs in the main thread)."""
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    pytest.fail(f"signal {signum} raised nothing")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_terminate_as_interrupt_raises_and_restores(signum: int) -> None:
    import pycolmap  # installs glog's native SIGTERM handler, which kills the process with a stack dump

    before = signal.getsignal(signum)
    level = pycolmap.logging.minloglevel
    for _ in range(2):  # repeatedly, in one process
        with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
            _signal_self(signum)
        assert signal.getsignal(signum) == before
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert pycolmap.logging.minloglevel == level  # muted while the interrupt unwinds, then restored


def test_terminate_as_interrupt_leaves_ignored_signals_and_other_threads() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under `nohup`
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)

    seen = []

    def in_thread() -> None:
        with terminate_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]


def test_replace_dir_removes_temporaries_of_killed_builds(tmp_path: Path) -> None:
    from splat4d.data.undistort import replace_dir, stamp_matches

    target = tmp_path / "x"
    for name in (".x.tmp-abc123", ".x.tmp-def456.old", ".y.tmp-keep"):  # left by SIGKILL; another cache's
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "database.db").write_bytes(b"partial")
    with replace_dir(target, {"a": 1}) as outer:  # a build in progress: its folder is locked, so kept
        with replace_dir(target, {"a": 2}) as inner:
            assert outer.exists() and inner != outer
            (inner / "data").write_text("2")
        assert outer.exists()
        (outer / "data").write_text("1")
    assert stamp_matches(target, {"a": 1}) and (target / "data").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.tmp-keep", "x"]
