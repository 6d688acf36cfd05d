"""Data-parallel training throughput: 2 ranks × 1 thread against 1 rank × 1 thread on the same scene, writing
bench/results/distributed-<device>.json (format: ../shared/BENCH.md).

    python bench/distributed.py --device cpu

Each case is `splat4d reconstruct` as a user runs it (a subprocess; `--nproc 2` starts torchrun's launcher), on the
procedural sample scene (24 views at 320×240, its 4000 points), static pipeline, `fast` preset, at full resolution
from the first step (`trainer.coarse_until=0`), every rank on one thread (OMP_NUM_THREADS=1):

    one_view    1 rank,  1 view per step,  2 × STEPS steps
    two_views   1 rank,  2 views per step, STEPS steps    (--batch-size 2)
    two_ranks   2 ranks, 1 view per step,  STEPS steps    (--nproc 2)

All three train on the same number of views. `two_views` and `two_ranks` are the same computation (2 ranks × 1
view equals 1 process × 2 views), so their parameters must agree (`rows[].max_abs_param_diff_vs_two_views`) and
their throughputs compare the parallel machinery alone; `one_view` is plain single-process training. Training views
per second are measured from the run's log: the wall time from step WARMUP to TAIL steps before the end (start-up,
image decoding, the first steps' one-off costs and evaluation excluded). Meanwhile the CPU time of the case's
processes is read from /proc, giving the CPU cores it actually got and its views per CPU-second. Each case runs
--repeats times, interleaved, and the best counts; each row records the 1-minute load average before and after
its run, since the machine may be shared.

Figures: cpu_2rank_speedup (two_ranks / two_views views per second, wall clock; target ≥ 1.6 on a 2-core machine),
cpu_2rank_speedup_vs_one_view (two_ranks / one_view), cpu_2rank_efficiency (two_ranks / two_views views per
CPU-second: the speed-up per core the ranks got, which bounds the wall-clock speed-up on an idle machine at
2 × efficiency), views_per_s_{one_view,two_views,two_ranks}. With --device cuda on a machine with 2 or more GPUs:
gpu_2rank_speedup and gpu_2rank_speedup_vs_one_view, the same on 2 GPUs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import write_results

from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.io.checkpoint import load_latest_checkpoint

REPO = Path(__file__).resolve().parent.parent
STEPS = 60
WARMUP = 10
"""Steps left out of the rate (first-call overheads: loading the rasterizer library, allocator warm-up)."""
TAIL = 5
"""Last steps left out, so that the CPU reading is taken while the case still trains (not evaluates)."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_SPEEDUP = 1.6
"""On the 2-core machine (issue 23)."""
CASES = {
    "one_view": {"nproc": 1, "batch": 1, "steps_factor": 2},
    "two_views": {"nproc": 1, "batch": 2, "steps_factor": 1},
    "two_ranks": {"nproc": 2, "batch": 1, "steps_factor": 1},
}


def run_case(name: str, photos: Path, out: Path, device: str, steps: int) -> dict:
    """Train case `name` into `out` as a subprocess; returns its row: views per second over the timed steps, and
    the CPU cores its processes used meanwhile (read from /proc while it trains)."""
    case = CASES[name]
    case_steps = steps * case["steps_factor"]
    args = [
        sys.executable, "-m", "splat4d", "reconstruct", str(photos), "-o", str(out),
        "--preset", "fast", "--steps", str(case_steps), "--device", device, "--no-progress",
        "--nproc", str(case["nproc"]), "--batch-size", str(case["batch"]),
        "--set", "trainer.coarse_until=0", "trainer.log_every=1", f"trainer.checkpoint_every={case_steps}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    shutil.rmtree(out, ignore_errors=True)  # the log is read while the case trains: no earlier run's lines
    load_before = os.getloadavg()[0]
    first_step, last_step = WARMUP * case["steps_factor"], case_steps - TAIL * case["steps_factor"]
    log_path = out / "log.jsonl"
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
        cpu = [_cpu_at_step(process, log_path, step) for step in (first_step, last_step)]
        if process.wait() != 0:
            output.seek(0)
            raise RuntimeError(f"{name} failed ({process.returncode}):\n{output.read()}")
    log = {line["step"]: line for line in map(json.loads, log_path.read_text().splitlines())}
    first, last = log[first_step], log[last_step]
    views_per_step = case["nproc"] * case["batch"]
    views = (last_step - first_step) * views_per_step
    seconds = last["seconds"] - first["seconds"]
    cores = (cpu[1][0] - cpu[0][0]) / (cpu[1][1] - cpu[0][1])
    return {
        "case": name,
        "ranks": case["nproc"],
        "views_per_step": views_per_step,
        "steps": case_steps,
        "threads_per_rank": 1,
        "gaussians": last["num_gaussians"],
        "timed_steps": [first_step, last_step],
        "timed_views": views,
        "timed_seconds": round(seconds, 3),
        "views_per_s": round(views / seconds, 3),
        "cpu_cores_used": round(cores, 3),
        "views_per_cpu_s": round(views / seconds / cores, 3),
        "final_loss": log[case_steps]["loss"],
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }


def _cpu_at_step(process: subprocess.Popen, log_path: Path, step: int) -> tuple[float, float]:
    """(CPU seconds of `process` and its descendants, wall clock) as soon as the log reaches `step`."""
    while not log_path.is_file() or len(log_path.read_text().splitlines()) < step:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args}: ended before step {step} (status {process.returncode})")
        time.sleep(0.02)
    return _tree_cpu_seconds(process.pid), time.perf_counter()


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and all its descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return total


def _params(out: Path) -> dict[str, torch.Tensor]:
    found = load_latest_checkpoint(out / "checkpoints")
    assert found is not None
    return found[1]["params"]


def allreduce_bytes(params: dict[str, torch.Tensor]) -> int:
    """Bytes each rank contributes to a step's all-reduce (float32): every parameter's gradient, the default
    strategy's two per-Gaussian statistics (grad2d, count), one has-gradient flag per parameter and the log sums."""
    n = len(next(iter(params.values())))
    return 4 * (sum(p.numel() for p in params.values()) + 2 * n + len(params) + 4)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def measure(args: argparse.Namespace, rows: list[dict]) -> dict[str, float]:
    """Run every case `args.repeats` times, interleaved, adding a row per run; the best views/s of each case."""
    width, height = (int(v) for v in args.size.split("x"))
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_sample_scene(
            SampleConfig(n_views=args.views, width=width, height=height), Path(tmp) / "p"
        )
        for repeat in range(args.repeats):
            for name in CASES:
                out = Path(tmp) / name
                row = {**run_case(name, photos, out, args.device, args.steps), "repeat": repeat}
                if name == "two_ranks":
                    params = _params(out)
                    row["max_abs_param_diff_vs_two_views"] = _max_diff(
                        params, _params(Path(tmp) / "two_views")
                    )
                    row["allreduce_bytes_per_step"] = allreduce_bytes(params)
                rows.append(row)
                print(f"{name} (run {repeat + 1}): {row['views_per_s']:.2f} views/s", flush=True)
                best[name] = max(best.get(name, 0.0), row["views_per_s"])
    return best


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--steps", type=int, default=STEPS, help=f"steps of the 2-view cases (default {STEPS})"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each case, interleaved; the best counts"
    )
    parser.add_argument("--views", type=int, default=24, help="views of the sample scene (default 24)")
    parser.add_argument("--size", default="320x240", help="image size of the sample scene (default 320x240)")
    args = parser.parse_args(argv)
    if args.steps <= WARMUP + TAIL:
        parser.error(
            f"--steps must exceed {WARMUP + TAIL} (the {WARMUP} warm-up and {TAIL} last steps are not timed)"
        )
    device = torch.device(args.device)
    figures: dict[str, float] = {}
    missing: dict[str, str] = {}
    rows: list[dict] = []
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cpu":
        missing["gpu_2rank_speedup"] = (
            "no GPU was at hand on this machine; rerun with --device cuda on 2+ GPUs"
        )
    elif gpus < 2:
        missing["gpu_2rank_speedup"] = f"{gpus} GPU(s) on this machine; 2 are needed"
    if device.type == "cpu" or gpus >= 2:
        prefix = "gpu" if device.type == "cuda" else "cpu"
        rate = measure(args, rows)
        for name in CASES:
            figures[f"views_per_s_{name}"] = rate[name]
        figures[f"{prefix}_2rank_speedup"] = round(rate["two_ranks"] / rate["two_views"], 3)
        figures[f"{prefix}_2rank_speedup_vs_one_view"] = round(rate["two_ranks"] / rate["one_view"], 3)
        if (
            prefix == "cpu"
        ):  # what the speed-up would be with both cores free: views per CPU-second, 2 ranks vs 1
            per_core = {name: max(r["views_per_cpu_s"] for r in rows if r["case"] == name) for name in CASES}
            figures["cpu_2rank_efficiency"] = round(per_core["two_ranks"] / per_core["two_views"], 3)
        speedup = figures[f"{prefix}_2rank_speedup"]
        print(f"{prefix}_2rank_speedup {speedup:.2f} (target ≥ {TARGET_SPEEDUP} on 2 CPU cores)")
    path = write_results("distributed", device, figures, rows, missing)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
