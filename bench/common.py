"""Shared plumbing of the benchmark scripts: machine description and the results file of ../shared/BENCH.md."""

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def device_name(device: torch.device) -> str:
    """`cpu`, or the GPU's name in lower-case words joined by '-' (e.g. nvidia-h100-80gb-hbm3)."""
    if device.type != "cuda":
        return "cpu"
    return "-".join(torch.cuda.get_device_name(device).lower().split())


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    with contextlib.suppress(ValueError, OSError):
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb, "torch_threads": torch.get_num_threads()}


def versions() -> dict:
    import splat4d

    out = {"splat4d": splat4d.__version__, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import gsplat

        out["gsplat"] = gsplat.__version__
    except ImportError:
        pass
    return out


def write_results(bench: str, device: torch.device, figures: dict, rows: list, missing: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = device_name(device)
    doc = {
        "bench": bench,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "device": name,
        "versions": versions(),
        "date": datetime.date.today().isoformat(),
        "figures": figures,
        "rows": rows,
    }
    if missing:
        doc["missing"] = missing
    path = RESULTS / f"{bench}-{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def add_cpu_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """`--threads` and `--clock`, shared by the benches that time CPU kernels on a machine others may be using."""
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--clock",
        choices=("wall", "process"),
        default="wall",
        help="CPU timer: wall (perf_counter, default) or process (CPU seconds of this process: unaffected by other "
        "jobs on a shared machine; equal to wall time only with --threads 1). CUDA runs are timed on the device.",
    )


def cpu_timer(clock: str, device: torch.device) -> "Callable[[], float]":
    """The timer `--clock` names for CPU runs (process CPU time or perf_counter); perf_counter on a GPU."""
    import time

    return time.process_time if clock == "process" and device.type == "cpu" else time.perf_counter
