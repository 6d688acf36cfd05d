"""Peak memory of *training* long 4D videos: streamed through the temporal hierarchy
(`splat4d.hierarchy.training.StreamedTrainer`, one root-to-leaf path resident) vs the shared flat trainer
(`splat4d.trainer.Trainer`, every Gaussian resident), on the procedural video of bench/hierarchy.py 1×, 4× and 16×
as long; and, at 1×, the quality each reaches on a held-out camera with the same steps. Writes its figures into
bench/results/dynamic-<device>.json (rows tagged part "streamed_training"), keeping every other figure and row.

    python bench/hierarchy_training.py --device cpu

The video and its views. The truth is bench/hierarchy.py's procedural video (`procedural_video`: a static stage,
props that live within a clip, flip-book movers), stored as a hierarchy and streamed, so that the truth costs the
same small amount of memory in every case. Four cameras on an arc look at the stage; three train, the middle
fourth is held out. Every frame (30 per clip) of every training camera is a training view, its image rendered
from the truth when it is needed (160×120).

The two trainers start from the same Gaussians: `seed_segments` of random points in the stage's box (4,000 per
path), all of them at once for the flat trainer. Both use the dynamic pipeline's `fast` loss and densification
thresholds, stretched to the run's length, with opacity resets off for both (streamed training has none), the
same learning rates and the same number of steps: `--sweeps` passes of `--steps-per-visit` steps over every leaf.
Streamed training densifies each segment once per sweep; the flat trainer densifies everything once per sweep's
worth of steps. The hierarchy's depth grows with log2(k),
a leaf spanning a quarter clip, as in bench/hierarchy.py.

Memory: each case runs in a fresh interpreter; the peak is measured as in bench/hierarchy.py (VmHWM after
clear_refs on CPU, `max_memory_allocated` on CUDA). Figures: `hierarchy_train_peak_mem_ratio_16x` =
peak(16×) / peak(1×) of streamed training, `flat_train_peak_mem_ratio_16x` the same for the flat trainer, and
`hierarchy_train_psnr_1x` / `flat_train_psnr_1x`, held-out PSNR of the quality runs (`--quality-sweeps`).
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from hierarchy import (
    BASE_DEPTH,
    FRAMES_PER_CLIP,
    HEIGHT,
    MMAP_THRESHOLD,
    WIDTH,
    merge_and_write,
    peak,
    procedural_video,
    reset_peak,
    trim_heap,
)

from pipelines.dynamic.config import PRESETS, with_steps
from pipelines.dynamic.pipeline import DynamicPipeline
from splat4d.cameras import Cameras
from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians4D
from splat4d.geometry import look_at
from splat4d.hierarchy import HierarchicalScene, build, concat, save_hierarchy
from splat4d.hierarchy.training import HierarchyTrainConfig, StreamedTrainer, seed_segments
from splat4d.initialization import scene_scale
from splat4d.metrics import psnr
from splat4d.render import render
from splat4d.trainer import Trainer, TrainerConfig

PART = "streamed_training"
LENGTHS = (1, 4, 16)
POINTS_PER_PATH = 4000
TRAIN_CAMERAS, HELD_OUT = (0, 1, 3), 2
EVAL_EVERY = 3
"""Held-out PSNR over every third frame."""


def cameras_arc() -> list[torch.Tensor]:
    """Four camera-to-world poses on an arc in front of the stage, 0.9 rad across."""
    out = []
    for i in range(4):
        a = -0.45 + 0.3 * i
        eye = torch.tensor([4.0 * math.sin(a), -0.8, -4.0 * math.cos(a) + 1.0])
        out.append(look_at(eye, torch.tensor([0.0, 0.2, 1.0]), torch.tensor([0.0, -1.0, 0.0])))
    return out


def view_camera(k: int, t: float) -> Cameras:
    K = torch.tensor([[130.0, 0.0, WIDTH / 2], [0.0, 130.0, HEIGHT / 2], [0.0, 0.0, 1.0]])
    return Cameras(cameras_arc()[k][None], K[None], WIDTH, HEIGHT, times=torch.tensor([t]))


def depth_for(clips: int) -> int:
    return BASE_DEPTH + round(math.log2(clips))


class TruthViews:
    """The training views of the video, rendered from the truth hierarchy in `folder` when loaded (a
    `splat4d.hierarchy.training.ViewSource`, and a dataset for the flat `Trainer`)."""

    def __init__(self, folder: Path, clips: int, device: torch.device) -> None:
        self.truth = HierarchicalScene(folder, device)
        frames = clips * FRAMES_PER_CLIP
        self.views = [(k, (f + 0.5) / frames) for f in range(frames) for k in TRAIN_CAMERAS]
        self.device = device

    def times(self) -> torch.Tensor:
        return torch.tensor([t for _, t in self.views])

    def load(self, ids: list[int], downscale: int = 1) -> list[Batch]:
        if downscale != 1:
            raise ValueError("TruthViews renders at the bench's one resolution (coarse_until is 0 here)")
        return [self[i] for i in ids]

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> Batch:
        k, t = self.views[i]
        cam = view_camera(k, t).to(self.device)
        return Batch(cam, self.truth.render(cam, t).rgb, None, i)


def initial_gaussians(seed: int = 0) -> Gaussians4D:
    """One Gaussian per random point in the stage's box (`seed_segments` sets their times)."""
    g = torch.Generator().manual_seed(seed)
    n = POINTS_PER_PATH
    lo, hi = torch.tensor([-3.0, -1.0, -0.5]), torch.tensor([3.0, 1.2, 3.2])
    points = lo + torch.rand(n, 3, generator=g) * (hi - lo)
    return Gaussians4D.from_points(points, torch.rand(n, 3, generator=g), torch.full((n,), 0.5), sh_degree=1,
                                   time_degree=1, time_period=2.0)  # fmt: skip


def _config(steps: int, steps_per_sweep: int):
    """The dynamic `fast` preset stretched to `steps` (`with_steps`: densification from 7.5% to 75% of the run),
    never resetting; the flat trainer refines once per sweep's worth of steps, as often as streamed training
    refines each segment (once per sweep)."""
    cfg = with_steps(PRESETS["fast"], steps)
    strategy = dataclasses.replace(cfg.strategy, refine_every=steps_per_sweep, reset_every=10**9)
    return cfg, strategy


def run_case(
    kind: str, truth: Path, clips: int, sweeps: int, steps_per_visit: int, device: torch.device
) -> dict:
    """Train one case in this (fresh) process; returns its row."""
    hcfg = HierarchyTrainConfig(depth=depth_for(clips), sweeps=sweeps, steps_per_visit=steps_per_visit,
                                points_per_path=POINTS_PER_PATH, progress=False)  # fmt: skip
    steps = sweeps * hcfg.tree.num_leaves * steps_per_visit  # every leaf has views (7.5 frames each)
    cfg, strategy = _config(steps, hcfg.tree.num_leaves * steps_per_visit)
    views = TruthViews(truth, clips, device)
    poses = torch.stack([cameras_arc()[k] for k in TRAIN_CAMERAS])
    scale = scene_scale(Cameras(poses, view_camera(0, 0.5).Ks.expand(len(poses), 3, 3), WIDTH, HEIGHT))
    warm = initial_gaussians()
    render(
        Gaussians4D({k: v[:4] for k, v in warm.params.items()}, 2.0).to(device),
        view_camera(0, 0.5).to(device),
    )
    trim_heap()
    method, baseline = reset_peak(device)
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-{clips}x-"))
    start = time.perf_counter()
    try:
        if kind == "hierarchy":
            trainer = StreamedTrainer(
                hcfg, lambda scene: DynamicPipeline(cfg, scene, (0.0, 0.0, 0.0)), views, work / "store",
                initial_gaussians, scale, cfg.optim, strategy, device,
            )  # fmt: skip
            result = trainer.train()
            assert result.step == steps, (result.step, steps)
            gaussians, resident = result.num_gaussians, result.resident_gaussians_max
            trainer.export(work / "out")
            model = HierarchicalScene(work / "out", device)

            def draw(cam, t):
                return model.render(cam, t).rgb
        else:
            seeded = seed_segments(initial_gaussians(), hcfg.tree, POINTS_PER_PATH, hcfg.seed)
            flat = concat(list(seeded.values()), next(iter(seeded.values()))).to(device)
            pipeline = DynamicPipeline(cfg, Gaussians4D(dict(flat.params), flat.time_period), (0.0, 0.0, 0.0))
            tcfg = TrainerConfig(steps=steps, checkpoint_every=steps + 1, log_every=steps + 1, progress=False)
            Trainer(pipeline, strategy.build(), views, work, scale, tcfg, cfg.optim).train()
            gaussians = resident = len(pipeline.gaussians)

            def draw(cam, t):
                return pipeline.render_view(cam, t).rgb

        seconds = time.perf_counter() - start
        peak_bytes = peak(device, method)
        frames = clips * FRAMES_PER_CLIP
        scores = []
        with torch.no_grad():
            for f in range(0, frames, EVAL_EVERY):
                t = (f + 0.5) / frames
                cam = view_camera(HELD_OUT, t).to(device)
                scores.append(float(psnr(draw(cam, t), views.truth.render(cam, t).rgb)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "case": kind,
        "length": f"{clips}x",
        "frames": frames,
        "views": len(views),
        "steps": steps,
        "sweeps": sweeps,
        "steps_per_visit": steps_per_visit,
        "depth": hcfg.depth,
        "gaussians": gaussians,
        "resident_gaussians_max": resident,
        "peak_mem_mb": round((peak_bytes - baseline) / 2**20, 2),
        "baseline_mb": round(baseline / 2**20, 1),
        "memory_method": method,
        "train_seconds": round(seconds, 1),
        "held_out_psnr": round(sum(scores) / len(scores), 3),
        "resolution": [WIDTH, HEIGHT],
    }


def _fresh(
    kind: str, truth: Path, clips: int, sweeps: int, spv: int, device: torch.device, threads: int
) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(truth), str(clips), str(sweeps), str(spv),
           "--device", str(device)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {clips}x failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=list(LENGTHS), help="video lengths in clips"
    )
    parser.add_argument("--sweeps", type=int, default=1, help="sweeps of the memory runs")
    parser.add_argument("--steps-per-visit", type=int, default=25, help="steps per leaf visit (all runs)")
    parser.add_argument(
        "--quality-sweeps", type=int, default=12, help="sweeps of the 1x quality runs (0: none)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once, each on cores / jobs threads")
    parser.add_argument(
        "--child", nargs=5, metavar=("KIND", "TRUTH", "CLIPS", "SWEEPS", "SPV"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.child:
        kind, truth, clips, sweeps, spv = args.child
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        print(json.dumps(run_case(kind, Path(truth), int(clips), int(sweeps), int(spv), device)))
        return

    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    rows, peaks, quality = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        truths = {}
        for clips in sorted(set(args.lengths) | ({1} if args.quality_sweeps else set())):
            truths[clips] = Path(tmp) / f"truth-{clips}x"
            save_hierarchy(truths[clips], build(procedural_video(clips), depth_for(clips)))
        jobs = [(kind, clips, args.sweeps) for clips in args.lengths for kind in ("hierarchy", "flat")]
        if args.quality_sweeps:
            jobs += [(kind, 1, args.quality_sweeps) for kind in ("hierarchy", "flat")]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = []
            for kind, clips, sweeps in jobs:
                run = (kind, truths[clips], clips, sweeps, args.steps_per_visit, device, threads)
                futures.append(((kind, clips, sweeps), pool.submit(_fresh, *run)))
            for (kind, clips, sweeps), future in futures:
                row = future.result()
                row["threads"] = threads
                rows.append(row)
                print(row, flush=True)
                if sweeps == args.sweeps and clips in args.lengths:
                    peaks[kind, clips] = row["peak_mem_mb"]
                if args.quality_sweeps and sweeps == args.quality_sweeps and clips == 1:
                    quality[kind] = row["held_out_psnr"]

    figures, missing = {}, {}
    for kind in ("hierarchy", "flat"):
        for clips in (4, 16):
            key = f"{kind}_train_peak_mem_ratio_{clips}x"
            if (kind, clips) in peaks and (kind, 1) in peaks and peaks[kind, 1] > 0:
                figures[key] = round(peaks[kind, clips] / peaks[kind, 1], 3)
            else:
                missing[key] = f"needs --lengths 1 and {clips}"
        if kind in quality:
            figures[f"{kind}_train_psnr_1x"] = quality[kind]
    path = merge_and_write(device, figures, rows, missing, part=PART)
    print(figures)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
