"""One rank of the data-parallel tests: `python -m tests.distributed.worker SCENES OUT [--cuda] CASE...`, started
with torchrun's environment variables (`helpers.start_ranks`).

Trains each case with one view per step on this rank (`helpers.run_case`, scene folder OUT/CASE/scene, written by
rank 0 only) and saves this rank's final parameters to OUT/CASE/rank<r>.pt, so a test can compare the ranks. Then
the `static` case once more in OUT/resumed, stopped at step `INTERRUPT_AT` on every rank as torchrun's SIGTERM
would and resumed from rank 0's checkpoint.
"""

import sys
from pathlib import Path

import torch

from splat4d.distributed import session
from splat4d.trainer import TrainingInterrupted
from tests.distributed.helpers import NO_REFINE, run_case

INTERRUPT_AT = 12


def _save(result, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in result.pipeline.gaussians.params.items()}, path)


def _interrupt(step: int, pipeline) -> None:
    if step == INTERRUPT_AT:
        raise KeyboardInterrupt


def main(scenes: Path, out: Path, cases: list[str]) -> None:
    torch.set_num_threads(1)  # the CPU rasterizer's backward is bitwise repeatable on one thread
    if cases[:1] == ["--cuda"]:  # NCCL, one GPU per rank: the cases without refinement (`NO_REFINE`)
        with session(torch.device("cuda"), timeout_s=120.0) as (ranks, device):
            for name in cases[1:]:
                result = run_case(
                    name, scenes, out / name / "scene", 1, ranks, device=device, overrides=NO_REFINE
                )
                _save(result, out / name / f"rank{ranks.rank}.pt")
        return
    with session(torch.device("cpu"), timeout_s=60.0) as (ranks, _):
        for name in cases:
            result = run_case(name, scenes, out / name / "scene", batch_size=1, ranks=ranks)
            _save(result, out / name / f"rank{ranks.rank}.pt")
        resumed = out / "resumed" / "scene"
        try:
            run_case("static", scenes, resumed, batch_size=1, ranks=ranks, callbacks=[_interrupt])
            raise AssertionError("the run was not interrupted")
        except TrainingInterrupted as exc:
            assert exc.step == INTERRUPT_AT and (exc.checkpoint is not None) == ranks.is_main
        result = run_case("static", scenes, resumed, batch_size=1, ranks=ranks)
        _save(result, out / "resumed" / f"rank{ranks.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
