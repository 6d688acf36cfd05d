"""Does the live viewer slow training down? Train the procedural sample scene with and without
`reconstruct --viewer` attached (server running, no browser connected), interleaved and repeated, and write
bench/results/viewer-<device>.json (format: ../shared/BENCH.md).

    python bench/live_viewer.py --device cpu

Figure: `live_viewer_no_client_speed_ratio` = training steps/s with the viewer attached and nobody watching,
divided by steps/s without a viewer (target ≥ 0.9: at most a 10% drop). Same scene, seed and steps in one process.
"""

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from common import write_results
from rich.console import Console

from pipelines import PIPELINES
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import load_recipe, write_sample_scene
from splat4d.reconstruct import reconstruct, resolve_device
from viewer import LiveViewer, ViewerConfig

REPO = Path(__file__).resolve().parent.parent


def _train(photos: Path, out: Path, steps: int, device: torch.device, viewer: bool) -> float:
    """Training seconds of one run (the trainer's own clock: evaluation and data loading excluded)."""
    spec = PIPELINES["static"]
    cfg = spec.with_steps(spec.presets["fast"], steps)
    cfg = dataclasses.replace(
        cfg, data=DataConfig(path=photos), trainer=dataclasses.replace(cfg.trainer, progress=False)
    )
    live = LiveViewer(ViewerConfig(), device, steps, console=Console(quiet=True)) if viewer else None
    try:
        result = reconstruct(
            spec, "static", "fast", cfg, out, device, overwrite=True, console=Console(quiet=True),
            callbacks=None if live is None else [live.training], on_built=None if live is None else live.on_built,
        )  # fmt: skip
    finally:
        if live is not None:
            live.close()
    return float(result.metrics["train_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = write_sample_scene(load_recipe(REPO / "assets" / "samples" / "static.json"), work / "photos")
        _train(photos, work / "warmup", 20, device, viewer=False)  # JIT build / caches out of the way
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for viewer in (False, True):
                times[viewer].append(_train(photos, work / f"run-{viewer}", args.steps, device, viewer))
                print(f"viewer={viewer}: {times[viewer][-1]:.1f} s", flush=True)
    plain, attached = statistics.median(times[False]), statistics.median(times[True])
    ratio = plain / attached  # steps/s with viewer ÷ steps/s without
    rows = [
        {
            "case": "no viewer" if not viewer else "viewer attached, no client",
            "command": "python " + " ".join(sys.argv),
            "steps": args.steps,
            "train_seconds": [round(t, 2) for t in times[viewer]],
            "median_steps_per_second": round(args.steps / statistics.median(times[viewer]), 2),
        }
        for viewer in (False, True)
    ]
    path = write_results(
        "viewer", device, {"live_viewer_no_client_speed_ratio": round(ratio, 3)}, rows, missing={}
    )
    print(f"speed ratio (viewer attached, no client ÷ no viewer): {ratio:.3f}; wrote {path}")


if __name__ == "__main__":
    main()
