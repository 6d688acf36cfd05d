"""Peak memory of long 4D videos: every frame rendered through the temporal Gaussian hierarchy streamed from disk
(`splat4d.hierarchy.HierarchicalScene`) vs from the flat in-memory `Gaussians4D`, for a procedural video 1×, 4× and
16× as long. Writes its figures into bench/results/dynamic-<device>.json (format: ../shared/BENCH.md), keeping every
figure and row that other benches (bench/dynamic.py) put there.

    python bench/hierarchy.py --device cpu

The video. One base clip (30 frames) holds: a static stage shared by the whole video (3,000 long-lived Gaussians:
floor and back wall), 1,000 "prop" Gaussians that appear and vanish within the clip, and 6 moving objects drawn as
flip-books of 500 short-lived Gaussians each (every one lives ~3 frames at a point of the object's path). The k×
video is k such clips with fresh props and paths, one after the other; times are renormalised to [0, 1], every
frame is rendered (30 k frames at 160×120) and the hierarchy's depth grows with log2(k) so that a leaf segment
always spans a quarter of a clip. The 1× video is the first clip of the 4× and 16× ones.

Memory. Each case runs in a fresh interpreter, so allocator caches and the extension's warm-up from one case cannot
hide or inflate another's. On CPU the peak is the process's resident-set high-water mark (VmHWM) over the case,
after writing 5 to /proc/self/clear_refs (which resets VmHWM to the current RSS) once imports and a warm-up render
are done; the figure is that peak minus the RSS at the reset. It counts everything the case holds, including
tensors of the C++ kernels that PyTorch's allocator never sees. Plain `ru_maxrss` minus a baseline is the fallback
(where clear_refs is not writable); it under-reports a case whose growth stays below the import-time peak, which the
reset avoids. On CUDA the peak is `torch.cuda.max_memory_allocated()` minus the allocation before the case.
Figures: `hierarchy_peak_mem_ratio_16x` = peak(16×) / peak(1×) through the hierarchy (target ≤ 1.3) and
`flat_peak_mem_ratio_16x`, the same for the flat scene (it grows with the video).
"""

import argparse
import contextlib
import ctypes
import datetime
import gc
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, device_name, machine, versions

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D, num_sh_bases, rgb_to_sh0
from splat4d.geometry import look_at
from splat4d.hierarchy import HierarchicalScene, build, lifespan_factor, save_hierarchy
from splat4d.hierarchy.streaming import gaussians_nbytes
from splat4d.io.atomic import atomic_write_text
from splat4d.io.ply import read_ply_4d, write_ply_4d
from splat4d.render import render

LENGTHS = (1, 4, 16)
FRAMES_PER_CLIP = 30
BASE_DEPTH = 2
"""Depth of the 1× hierarchy: leaves of a quarter clip (7.5 frames); k× adds log2(k) levels."""
STAGE, PROPS_PER_CLIP, OBJECTS_PER_CLIP, GAUSSIANS_PER_OBJECT = 2000, 1000, 6, 350
SH_DEGREE, TIME_DEGREE = 1, 1
WIDTH, HEIGHT = 160, 120
TARGET_RATIO = 1.3
MMAP_THRESHOLD = 1 << 16
"""glibc serves allocations from this size up with their own mmap, returned to the OS on free (a fixed threshold
also turns off glibc's adaptive one), so the resident set follows the live tensors instead of the heap's history."""
RESULTS_NAME = "dynamic"
PART = "hierarchy"
"""Tag of this bench's rows in the shared results file."""


# ------------------------------------------------------------------------------------------- the video -----


def procedural_video(clips: int, seed: int = 0) -> Gaussians4D:
    """`clips` base clips one after the other, times renormalised to [0, 1] (see the module docstring)."""
    parts = [_stage(torch.Generator().manual_seed(seed))]
    for c in range(clips):
        g = torch.Generator().manual_seed(seed + 1 + c)
        parts += [_props(g, c, clips), *(_mover(g, c, clips) for _ in range(OBJECTS_PER_CLIP))]
    return Gaussians4D({k: torch.cat([p[k] for p in parts]) for k in parts[0]})


def _gaussians(
    means: torch.Tensor, rgb: torch.Tensor, mu_t: torch.Tensor, half_life: torch.Tensor, size: float
) -> dict[str, torch.Tensor]:
    """Unrotated isotropic 4D Gaussians whose lifespans (at 1/255) are mu_t ± half_life."""
    n = means.shape[0]
    sigma_t = half_life / lifespan_factor()
    sh0 = torch.zeros(n, TIME_DEGREE + 1, 1, 3)
    sh0[:, 0, 0] = rgb_to_sh0(rgb)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1)
    return {
        "means4": torch.cat([means, mu_t[:, None]], 1),
        "log_scales4": torch.cat([torch.full((n, 3), math.log(size)), sigma_t.log()[:, None]], 1),
        "quats_l": identity,
        "quats_r": identity.clone(),
        "opacity_logits": torch.full((n,), 2.0),
        "sh0": sh0,
        "shN": torch.zeros(n, TIME_DEGREE + 1, num_sh_bases(SH_DEGREE) - 1, 3),
    }


def _stage(g: torch.Generator) -> dict[str, torch.Tensor]:
    """Floor (y = 1) and back wall (z = 3), alive over the whole video."""
    u, v = torch.rand(STAGE, generator=g) * 6 - 3, torch.rand(STAGE, generator=g) * 4 - 1
    floor = torch.arange(STAGE) % 2 == 0
    means = torch.where(
        floor[:, None],
        torch.stack([u, torch.ones(STAGE), v], 1),
        torch.stack([u, v - 2, torch.full_like(u, 3)], 1),
    )
    rgb = torch.rand(STAGE, 3, generator=g) * 0.3 + 0.35
    return _gaussians(means, rgb, torch.full((STAGE,), 0.5), torch.full((STAGE,), 10.0), 0.08)


def _props(g: torch.Generator, clip: int, clips: int) -> dict[str, torch.Tensor]:
    """Clusters of Gaussians that appear and vanish within the clip (lifespans ~90% of it)."""
    n = PROPS_PER_CLIP
    centres = torch.rand(10, 3, generator=g) * torch.tensor([4.0, 1.5, 2.0]) - torch.tensor([2.0, 0.5, 0.0])
    means = centres[torch.arange(n) % 10] + torch.randn(n, 3, generator=g) * 0.15
    half = 0.40 + 0.05 * torch.rand(n, generator=g)
    mu_t = (clip + 0.5 + (torch.rand(n, generator=g) - 0.5) * 0.05) / clips
    return _gaussians(means, torch.rand(n, 3, generator=g), mu_t, half / clips, 0.04)


def _mover(g: torch.Generator, clip: int, clips: int) -> dict[str, torch.Tensor]:
    """An object crossing the stage, as a flip-book: each Gaussian lives ~3 frames at a point of its path."""
    n = GAUSSIANS_PER_OBJECT
    start, end = torch.rand(2, 3, generator=g) * torch.tensor([4.0, 1.0, 2.0]) - torch.tensor(
        [2.0, 0.5, -0.5]
    )
    tau = torch.rand(n, generator=g)  # time within the clip
    means = start + tau[:, None] * (end - start) + torch.randn(n, 3, generator=g) * 0.1
    half = torch.full((n,), 1.5 / FRAMES_PER_CLIP)
    colour = torch.rand(3, generator=g).expand(n, 3)
    return _gaussians(means, colour, (clip + tau) / clips, half / clips, 0.04)


def camera() -> Cameras:
    T = look_at(
        torch.tensor([0.0, -0.8, -4.0]), torch.tensor([0.0, 0.2, 1.0]), torch.tensor([0.0, -1.0, 0.0])
    )
    K = torch.tensor([[130.0, 0.0, WIDTH / 2], [0.0, 130.0, HEIGHT / 2], [0.0, 0.0, 1.0]])
    return Cameras(T[None], K[None], WIDTH, HEIGHT)


def frame_times(clips: int) -> list[float]:
    n = clips * FRAMES_PER_CLIP
    return [(i + 0.5) / n for i in range(n)]


# ------------------------------------------------------------------------------------- one case, measured -----


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc), so it cannot silently serve the measured case."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak(device: torch.device) -> tuple[str, int]:
    """Start a peak measurement; returns (method, baseline bytes)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_memory_allocated", torch.cuda.memory_allocated(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "vmhwm_after_clear_refs", _proc_status_kb("VmRSS") * 1024
    except OSError:
        import resource

        return "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak(device: torch.device, method: str) -> int:
    if method == "cuda_max_memory_allocated":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    if method == "vmhwm_after_clear_refs":
        return _proc_status_kb("VmHWM") * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


@torch.no_grad()
def run_case(kind: str, source: Path, clips: int, device: torch.device) -> dict:
    """Render every frame of the video from `source` (a flat PLY, or a hierarchy folder); runs in a fresh process."""
    cameras = camera().to(device)
    warm = _gaussians(torch.zeros(4, 3), torch.rand(4, 3), torch.full((4,), 0.5), torch.ones(4), 0.1)
    render(Gaussians4D(warm).to(device), cameras, t=0.5)  # load the extension, start thread pools
    gc.collect()
    trim_heap()
    method, baseline = reset_peak(device)
    digest, resident_max, resident_bytes_max = hashlib.sha256(), 0, 0
    start = time.perf_counter()
    if kind == "flat":
        scene = read_ply_4d(source).to(device)
        for t in frame_times(clips):
            digest.update(render(scene, cameras, t=t).rgb.cpu().numpy().tobytes())
        resident_max, resident_bytes_max = len(scene), gaussians_nbytes(scene)
        segments_read = None
    else:
        streamed = HierarchicalScene(source, device)
        for t in frame_times(clips):
            digest.update(streamed.render(cameras, t=t).rgb.cpu().numpy().tobytes())
            resident_max = max(resident_max, len(streamed.gaussians_at(t)))
            resident_bytes_max = max(resident_bytes_max, streamed.resident_bytes())
        segments_read = streamed.segments_read
    seconds = time.perf_counter() - start
    peak_bytes = peak(device, method)
    return {
        "peak_mem_mb": round((peak_bytes - baseline) / 2**20, 2),
        "baseline_mb": round(baseline / 2**20, 1),
        "memory_method": method,
        "seconds": round(seconds, 2),
        "resident_gaussians_max": resident_max,
        "resident_param_mb_max": round(resident_bytes_max / 2**20, 2),
        "segments_read": segments_read,
        "frames_sha256": digest.hexdigest(),
    }


def _run_in_fresh_process(kind: str, source: Path, clips: int, device: torch.device) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(source), str(clips), "--device", str(device)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {clips}x failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ the results -----


def merge_and_write(device: torch.device, figures: dict, rows: list, missing: dict, part: str = PART) -> Path:
    """Update bench/results/dynamic-<device>.json: this bench's figures and rows (tagged `part`) replace its
    earlier ones; every other key, figure and row in the file (bench/dynamic.py's, other parts') is kept."""
    path = RESULTS / f"{RESULTS_NAME}-{device_name(device)}.json"
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    doc = json.loads(path.read_text()) if path.is_file() else {}
    ours = set(figures) | set(missing)
    old_missing = {k: v for k, v in doc.get("missing", {}).items() if k not in ours}
    doc.update(
        {
            "bench": doc.get("bench", RESULTS_NAME),
            "command": doc.get("command", command),  # the file's first writer; each of our rows names ours
            "machine": machine(),
            "device": device_name(device),
            "versions": versions(),
            "date": datetime.date.today().isoformat(),
            "figures": {**{k: v for k, v in doc.get("figures", {}).items() if k not in ours}, **figures},
            "rows": [r for r in doc.get("rows", []) if r.get("part") != part]
            + [{"part": part, "command": command, **r} for r in rows],
        }
    )
    doc.pop("missing", None)
    if old_missing or missing:
        doc["missing"] = {**old_missing, **missing}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=list(LENGTHS), help="video lengths in clips"
    )
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SOURCE", "CLIPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.child:
        kind, source, clips = args.child
        print(json.dumps(run_case(kind, Path(source), int(clips), device)))
        return

    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for clips in args.lengths:
            depth = BASE_DEPTH + round(math.log2(clips))
            t0 = time.perf_counter()
            video = procedural_video(clips)
            hierarchy = build(video, depth)
            flat_path, folder = Path(tmp) / f"flat-{clips}x.ply", Path(tmp) / f"hierarchy-{clips}x"
            write_ply_4d(flat_path, video)
            save_hierarchy(folder, hierarchy)
            build_seconds = time.perf_counter() - t0
            levels = [0] * (depth + 1)
            for segment, count in hierarchy.counts().items():
                levels[segment.level] += count
            results = {kind: _run_in_fresh_process(kind, src, clips, device) for kind, src in
                       (("hierarchy", folder), ("flat", flat_path))}  # fmt: skip
            same = results["hierarchy"]["frames_sha256"] == results["flat"]["frames_sha256"]
            for kind, result in results.items():
                peaks[kind, clips] = result["peak_mem_mb"]
                row = {"case": kind, "length": f"{clips}x", "frames": clips * FRAMES_PER_CLIP}
                row |= {"gaussians": len(video), "resolution": [WIDTH, HEIGHT], **result}
                if kind == "hierarchy":
                    row |= {
                        "depth": depth,
                        "segments": len(hierarchy.segments),
                        "gaussians_per_level": levels,
                    }
                    row |= {
                        "build_and_save_seconds": round(build_seconds, 2),
                        "frames_identical_to_flat": same,
                    }
                rows.append(row)
                print(row, flush=True)

    figures, missing = {}, {}
    for kind in ("hierarchy", "flat"):
        for clips in (4, 16):
            key = f"{kind}_peak_mem_ratio_{clips}x"
            if (kind, clips) in peaks and (kind, 1) in peaks and peaks[kind, 1] > 0:
                figures[key] = round(peaks[kind, clips] / peaks[kind, 1], 3)
            else:
                missing[key] = "needs --lengths 1 and " + str(clips)
    path = merge_and_write(device, figures, rows, missing)
    print(figures, f"(target hierarchy_peak_mem_ratio_16x <= {TARGET_RATIO})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
