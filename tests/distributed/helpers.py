"""Helpers for the multi-process tests: tiny scenes, the training cases, and starting ranks as torchrun would.

Ranks are started either through `splat4d reconstruct --nproc 2` (torchrun's own launcher and agent, what users
run) or directly as processes with torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR, ...), which
is quicker and leaves out the agent, so a test sees what one rank does when another dies or hangs.
"""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pipelines import PIPELINES
from splat4d.config_io import with_override
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.distributed import SINGLE, Ranks
from splat4d.io.checkpoint import load_latest_checkpoint
from splat4d.reconstruct import Reconstruction, reconstruct
from splat4d.strategy import STRATEGIES
from splat4d.trainer import StepCallback

REPO = Path(__file__).resolve().parents[2]

STEPS = 24
"""Steps of every case: densification at steps 10 and 20 (`REFINE`)."""
REFINE = ("refine_start_iter=5", "refine_every=10")
NO_REFINE = ("strategy.refine_start_iter=1000",)
"""For GPU runs: the CUDA backward accumulates with atomics, so two runs differ in the last bits and a
densification threshold could decide differently; without refinement they must stay close."""
CPU = torch.device("cpu")

CASES: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "static": ("static", "photos", None, tuple(f"strategy.{r}" for r in REFINE)),
    "mcmc": ("static", "photos", "mcmc", (*(f"strategy.{r}" for r in REFINE), "strategy.cap_max=5000")),
    "dynamic": (
        "dynamic",
        "video",
        None,
        (*(f"strategy.{r}" for r in REFINE), "init.time_copies=1", "strategy.max_gaussians=7000"),
    ),
    "sparse": (
        "sparse",
        "photos",
        None,
        (
            *(f"strategy.densify.{r}" for r in REFINE),
            "strategy.unpool_every=10",
            "strategy.floater_every=10",
            "strategy.floater_min_seen=1",
            "strategy.co_prune_every=20",
        ),
    ),
}
"""Case name → (pipeline, scene, strategy preset or None for the pipeline's, `--set` overrides)."""


def write_scenes(root: Path) -> Path:
    """The tiny scenes the cases train on: root/photos (8 static views, 64×48) and root/video (8 frames)."""
    write_sample_scene(SampleConfig(n_views=8, width=64, height=48), root / "photos")
    write_sample_scene(SampleConfig(n_views=8, width=64, height=48, dynamic=True), root / "video")
    return root


def case_command(name: str, scenes: Path, out: Path) -> list[str]:
    """`splat4d` arguments that train case `name` as `run_case` does (add `--nproc` or `--batch-size`)."""
    pipeline, scene, strategy, overrides = CASES[name]
    flags = [
        "--pipeline",
        pipeline,
        "--preset",
        "fast",
        "--steps",
        str(STEPS),
        "--device",
        "cpu",
        "--no-progress",
    ]
    if strategy is not None:
        flags += ["--strategy", strategy]
    if pipeline == "sparse":
        flags += ["--views", "3"]
    return [
        "reconstruct",
        str(scenes / scene),
        "-o",
        str(out),
        *flags,
        "--set",
        "trainer.log_every=1",
        *overrides,
    ]


def run_case(
    name: str,
    scenes: Path,
    out: Path,
    batch_size: int,
    ranks: Ranks = SINGLE,
    callbacks: list[StepCallback] | None = None,
    device: torch.device = CPU,
    overrides: tuple[str, ...] = (),
) -> Reconstruction:
    """Train case `name` on `device` into `out` as `splat4d reconstruct` with `case_command(name)` would, with
    `batch_size` views per step on each rank (and `overrides`, more `--set` assignments)."""
    pipeline, scene, strategy, case_overrides = CASES[name]
    spec = PIPELINES[pipeline]
    cfg = spec.presets["fast"]
    if strategy is not None:
        cfg = dataclasses.replace(cfg, strategy=STRATEGIES[strategy])
    cfg = spec.with_steps(cfg, STEPS)
    if pipeline == "sparse":
        cfg = dataclasses.replace(cfg, views=3)
    trainer = dataclasses.replace(cfg.trainer, progress=False, batch_size=batch_size, log_every=1)
    cfg = dataclasses.replace(cfg, data=DataConfig(path=scenes / scene), trainer=trainer)
    for assignment in (*case_overrides, *overrides):
        cfg = with_override(cfg, assignment)
    return reconstruct(spec, pipeline, "fast", cfg, out, device, callbacks=callbacks, ranks=ranks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args: list[str], world: int, cwd: Path, extra_env: dict[str, str] | None = None) -> list:
    """`python ARGS` started `world` times with torchrun's environment variables (one thread each), stdout and
    stderr piped."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        **(extra_env or {}),
    }
    return [
        subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]


def splat4d_nproc(args: list[str], cwd: Path) -> subprocess.Popen:
    """`splat4d ARGS` (with `--nproc N` among them: torchrun's launcher), stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "splat4d", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], processes: list, timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail with the processes' output if one exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [p for p in processes if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            for p in processes:
                p.kill()
            output = "\n".join(
                f"[{p.args}] rc={p.wait()}\n{p.stdout.read()}\n{p.stderr.read()}" for p in processes
            )
            raise AssertionError(
                f"waiting for {what}: {'a process ended' if ended else 'timed out'}\n{output}"
            )
        time.sleep(0.05)


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of the worker of `rank` among the children of a torchrun launcher, or None (not started yet)."""
    children = []
    for task in Path(f"/proc/{launcher_pid}/task").iterdir():
        children += (task / "children").read_text().split()
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str, float]:
    """Wait for `process`: (exit status, stdout, stderr, seconds waited); kills it and fails past `timeout`."""
    start = time.monotonic()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"still running after {timeout} s (it hangs)\n{out}\n{err}") from None
    return process.returncode, out, err, time.monotonic() - start


def final_params(out: Path) -> dict[str, torch.Tensor]:
    """The parameters of the newest checkpoint in the scene folder `out`."""
    found = load_latest_checkpoint(out / "checkpoints")
    assert found is not None, f"no checkpoint in {out}"
    return found[1]["params"]


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal within float tolerance, with the same number of Gaussians (the same densification decisions)."""
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, (name, a[name].shape, b[name].shape)
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
