"""Data-parallel training on several processes with torch.distributed, started by torchrun.

    torchrun --nproc-per-node 4 -m splat4d reconstruct INPUT -o OUT           # one machine, 4 GPUs
    splat4d reconstruct INPUT -o OUT --nproc 4                                # the same; starts torchrun's launcher

Every process (a *rank*) holds the whole scene and trains it in lockstep with the others (gsplat's and DDP's data
parallelism, with densification kept in step):

- Views: all ranks draw one shared shuffled order (`TrainSampler`, seeded alike); a step takes world size × batch
  size views of it and rank r renders its slice (`Trainer`).
- Gradients: each rank back-propagates its views' losses; the gradients of every parameter are summed over the
  ranks (one all-reduce per step, `Ranks.all_reduce`) and divided by the step's number of views before the
  optimiser step, which every rank then takes alike.
- Densification: the statistics a strategy accumulates per view (`Strategy.statistics`: image-plane gradient
  sums and visibility counts are summed, screen radii maxed) go into the same all-reduce, so every rank refines
  the same Gaussians. Randomness (dropout, pseudo views, splits, MCMC relocation and noise) draws from torch's
  generator reseeded from (seed, step, view) (`view_seed`, `strategy_seed`): equal on every rank, and equal to
  what one process rendering all the views draws. The ranks' Gaussians therefore stay identical, and N ranks × 1
  view per step compute what 1 process × N views (`--batch-size N`) does.
- Files: rank 0 reads the input (structure from motion included) and hands the scene to the others
  (`Ranks.from_main`), starts every rank from its Gaussians, and alone writes checkpoints, logs, the PLY, metrics
  and renders. The live viewer runs on rank 0.
- Faults: every collective has a timeout (`--set trainer.dist_timeout=SECONDS`); a rank that dies or stops
  answering makes the others stop with one line (`RankLostError`) after rank 0 has saved the last whole step, and
  torchrun's agent stops the remaining processes of a run when one exits with an error. With NCCL a collective
  whose peer died may not return at all: NCCL's watchdog ends the process after the timeout, or torchrun's agent
  does first, and the run resumes from the last periodic checkpoint.

The process group uses NCCL for CUDA tensors and gloo on the CPU; a second gloo group with a long timeout
(`SETUP_TIMEOUT`) carries the start-up messages (rank 0 may spend minutes in structure from motion while the others
wait) and, when rank 0 runs the live viewer, a per-step wait for it (the viewer may hold training paused).
"""

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from splat4d.errors import EXIT_INTERRUPTED, EXIT_USER, UsageError, UserError, one_line

SETUP_TIMEOUT = timedelta(hours=2)
"""How long the other ranks wait for rank 0 at start-up (it reads the input first, structure from motion on a
large photo set taking minutes to hours, and loads the newest checkpoint) and while its live viewer holds training
paused."""

ReduceOp = Literal["sum", "max"]

T = TypeVar("T")


class RankLostError(UserError):
    """A collective did not complete: another rank stopped (crashed, killed, interrupted) or did not answer within
    the timeout."""


class MainRankFailed(SystemExit):
    """Rank 0 failed while preparing the run and reports why itself; the other ranks stop quietly with the same
    exit status as its error."""

    def __init__(self) -> None:
        super().__init__(EXIT_USER)


class TorchrunEnv(NamedTuple):
    """Where this process stands in a torchrun job (the variables torchrun sets for every worker)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def torchrun_env(environ: dict[str, str] | None = None) -> TorchrunEnv | None:
    """This process's rank and world size from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE), or None when it was not started by torchrun (no RANK / WORLD_SIZE).

    Raises:
        UsageError: the variables are set but not consistent integers.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError as exc:
        raise UsageError(f"torchrun: RANK / WORLD_SIZE / LOCAL_RANK are not integers ({exc})") from None
    if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
        raise UsageError(
            f"torchrun: inconsistent RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank} "
            f"LOCAL_WORLD_SIZE={local_world}"
        )
    return TorchrunEnv(rank, world, local_rank, local_world)


def view_seed(seed: int, step: int, slot: int) -> int:
    """Seed of torch's generator while the `slot`-th view of step `step` is rendered (slots count the step's views
    over all ranks): the same wherever that view is rendered, so dropout and pseudo views do not depend on how the
    views are spread over processes."""
    return int(np.random.SeedSequence([seed, step, 1, slot]).generate_state(1, np.uint64)[0])


def strategy_seed(seed: int, step: int) -> int:
    """Seed of torch's generator while the strategy refines after step `step` (splits, relocation, noise): the same
    on every rank."""
    return int(np.random.SeedSequence([seed, step, 2]).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of a run, and the collectives the trainer needs. `Ranks()` is a run
    on one process, where every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 0.0
    """Timeout of the training collectives (seconds)."""
    setup_group: Any = field(default=None, compare=False, repr=False)
    """Gloo group with `SETUP_TIMEOUT`, for the start-up messages."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reads the input and writes the scene folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def label(self) -> str:
        """`rank r: ` in a run of several ranks (prefix of this rank's messages), else nothing."""
        return f"rank {self.rank}: " if self.distributed else ""

    def all_reduce(self, tensor: Tensor, op: ReduceOp, what: str) -> None:
        """Sum or max `tensor` over the ranks, in place; `what` names it in the error.

        Raises:
            RankLostError: another rank stopped or did not answer within the timeout.
        """
        if not self.distributed:
            return
        reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        with self._collective(what, self.timeout_s):
            dist.all_reduce(tensor, op=reduce_op)

    def broadcast_(self, tensors: list[Tensor], what: str) -> None:
        """Overwrite `tensors` with rank 0's, in place (e.g. the initial Gaussians)."""
        if not self.distributed:
            return
        with self._collective(what, self.timeout_s):
            for tensor in tensors:
                dist.broadcast(tensor, src=0)

    def from_main(self, fn: Callable[[], T], what: str) -> T:
        """`fn()` run on rank 0 and its result (pickled) handed to every rank; one process: just `fn()`.

        If `fn` raises on rank 0, rank 0 re-raises it (and reports it) while the other ranks raise
        `MainRankFailed`, stopping quietly.
        """
        if not self.distributed:
            return fn()
        if self.is_main:
            try:
                value = fn()
            except BaseException:
                self._broadcast_object(("failed", None), what)
                raise
            self._broadcast_object(("ok", value), what)
            return value
        status, value = self._broadcast_object(None, what)
        if status != "ok":
            raise MainRankFailed
        return value

    def wait_for_main(self, what: str) -> None:
        """Every rank waits here until rank 0 arrives, for up to `SETUP_TIMEOUT` (e.g. while rank 0's live viewer
        holds training paused), rather than the training timeout."""
        if not self.distributed:
            return
        with self._collective(what, SETUP_TIMEOUT.total_seconds()):
            dist.barrier(group=self.setup_group)

    def _broadcast_object(self, value: Any, what: str) -> Any:
        box = [value]
        with self._collective(what, SETUP_TIMEOUT.total_seconds()):
            dist.broadcast_object_list(box, src=0, group=self.setup_group)
        return box[0]

    @contextmanager
    def _collective(self, what: str, timeout_s: float) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:  # gloo and NCCL raise RuntimeError subclasses (DistBackendError, ...)
            reason = _reason(exc)
            raise RankLostError(
                f"{self.label()}{what}: another rank stopped or did not answer within {timeout_s:g} s ({reason})"
            ) from exc


SINGLE = Ranks()
"""A run on one process."""

_SOURCE_LOCATION = re.compile(r"\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")


def _reason(exc: BaseException) -> str:
    """The first sentence of a backend's error, without its C++ source locations: `Connection reset by peer`."""
    text = _SOURCE_LOCATION.sub("", one_line(str(exc)))
    first = text.split(". ", 1)[0].rstrip(".")
    return first if len(first) <= 120 else first[:117] + "..."


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, env: TorchrunEnv) -> torch.device:
    """The device of this rank: its own GPU (`cuda:LOCAL_RANK`, made the current one) on CUDA, else the CPU.

    Raises:
        UsageError: more ranks on this machine than visible GPUs.
    """
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise UsageError(
            f"torchrun: {env.local_world_size} processes on this machine but {count} GPU(s) visible; start at most "
            f"{count} (--nproc-per-node) or train on the CPU (--device cpu)"
        )
    bound = torch.device("cuda", env.local_rank)
    torch.cuda.set_device(bound)
    return bound


@contextmanager
def session(device: torch.device, timeout_s: float) -> Iterator[tuple[Ranks, torch.device]]:
    """Join the other ranks when torchrun started this process (process group on `backend_for(device)`, each rank
    on its own GPU) and leave at the end; yields (ranks, this rank's device). Without torchrun, or with one
    process: (`SINGLE`, `device`) and nothing else.

    Raises:
        UsageError: `timeout_s` is not positive, or there are fewer GPUs than ranks on this machine.
        RankLostError: the other ranks did not all join within `timeout_s`.
    """
    env = torchrun_env()
    if env is None or env.world_size == 1:
        yield SINGLE, device
        return
    if timeout_s <= 0:
        raise UsageError(f"--trainer.dist-timeout: must be positive, got {timeout_s}")
    device = rank_device(device, env)
    backend = backend_for(device)
    label = f"rank {env.rank}: "
    try:
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
        setup_group = dist.new_group(backend="gloo", timeout=SETUP_TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise RankLostError(
            f"{label}could not join the other {env.world_size - 1} rank(s) within {timeout_s:g} s "
            f"({_reason(exc)})"
        ) from exc
    ranks = Ranks(env.rank, env.world_size, env.local_rank, timeout_s, setup_group)
    try:
        yield ranks, device
    finally:
        # After a lost rank there may be nothing left to tear down cleanly; the process exit does the rest.
        with suppress(RuntimeError):
            dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m splat4d ARGV` on `nproc` processes of this machine through torchrun's own launcher
    (`torch.distributed.run --standalone --nproc-per-node NPROC`) and wait for them.

    Returns:
        The exit status: 0; 130 (interrupted) when this launcher was stopped by Ctrl-C or SIGTERM (torchrun then
        stops the ranks with SIGTERM, and rank 0 saves a checkpoint); else the first failed rank's (killed by a
        signal: 128 + its number), after one line naming the rank when it could not say why itself.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "splat4d"])
    args.training_script_args = list(argv)  # not parsed by torchrun: `--nproc` would be read as its own flag
    # torchrun's agent logs its rendezvous, the OMP_NUM_THREADS default, the SIGTERMs it sends and each failed
    # rank; the ranks say what matters themselves, and a rank killed by a signal is reported below.
    prefixes = ("torch.distributed.run", "torch.distributed.elastic", "torch.distributed.launcher")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(prefixes):  # each sets its own level, so each is quietened
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except SignalException:
        return EXIT_INTERRUPTED
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode < 0:
            signal_name = failure.signal_name()
            print(
                f"error: --nproc {nproc}: rank {rank} was killed by {signal_name}; the other ranks were stopped "
                "(rerun the same command to resume from the last checkpoint)",
                file=sys.stderr,
            )
            return 128 - failure.exitcode
        return failure.exitcode
    return 0
