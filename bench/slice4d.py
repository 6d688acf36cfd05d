"""4D slicing benchmark: the fused `slice_4d` kernel against the same maths in plain torch, and 4D render FPS.

    python bench/slice4d.py --device cpu --threads 1 --clock process --fps-cases 1m@1920x1080:30
    python bench/slice4d.py --device cuda                 # the same on the GPU, plus slice4d_fps_1080p_1m_300f

A script of its own rather than a mode of bench/rasterizer_stages.py: its scene is 4D, it loops over frame times
instead of timing stages of one render, and its figures are the ones issue 4 named, in their own results file.

Slicing: N random 4D Gaussians (general space-time rotations, scale 0.02..0.2 of the [0, 1] sequence along the
rotated time axis) are conditioned on each of `--frames` evenly spaced times and culled by temporal weight (1/255,
the render default): `cr.slice_4d` (the `cpu` or `cuda` kernel, input checks off) + `cr.cull_by_time`, against
`cuda_rasterizer.reference_4d.slice_4d` (the same conditional mean, covariance and weight written in plain torch
ops) + the same `cull_by_time`. Forward only, no autograd, as when playing back a trained scene; both loops run in
one process on the same tensors, and their outputs are compared. Seconds are wall time (device synced), or on the
CPU with `--clock process` the process's CPU time, which other jobs on a shared machine do not inflate.

Rendering (by default on `--device cuda`; on the CPU through `--fps-cases`): a 4D scene built from
bench/rasterizer.py's `make_scene` (its Gaussians given lifespans and a slight space-time rotation; SH degree 3
times a constant and one cosine time basis) rendered by `splat4d.render.render` (slice, cull, 4D colour, project, intersect,
rasterize) at every one of the frame times, one camera; FPS = frames / total seconds (device synced). On the CPU,
1M Gaussians at 1080p render at well under 1 FPS, so the committed CPU file has the same scene over 30 frames.

Writes bench/results/slice4d-<device>.json (format: ../shared/BENCH.md). Figures, with <n> as 1m, 100k, ... and
<size> as 1080p (1920x1080) or WxH:

    slice4d_speedup_vs_torch_slicing_<n>_<frames>f    torch seconds / fused seconds, slice + cull of all frames
    slice4d_fused_seconds_<n>_<frames>f               fused kernel + cull, total over all frames
    slice4d_torch_seconds_<n>_<frames>f               plain-torch slicing + cull, total over all frames
    slice4d_fps_<size>_<n>_<frames>f                  rendered frames per second

The issue's headline keys are slice4d_speedup_vs_torch_slicing_1m_300f and slice4d_fps_1080p_1m_300f.
"""

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from common import add_cpu_timing_arguments, cpu_timer, write_results
from rasterizer import make_scene
from rich.console import Console

import cuda_rasterizer as cr
from cuda_rasterizer import reference_4d
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians4D, num_sh_bases
from splat4d.render import RenderSettings, render

CULL_THRESHOLD = 1.0 / 255.0
"""Temporal weight below which a Gaussian is dropped: `RenderSettings.time_cull_threshold`'s default."""
GPU_FPS_CASE = (1_000_000, 1920, 1080, 300)
"""The issue's GPU figure: slice, cull and render 1080p frames of a 1M-Gaussian 4D scene at 300 times."""


def count_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def size_label(width: int, height: int) -> str:
    return "1080p" if (width, height) == (1920, 1080) else f"{width}x{height}"


def parse_count(spec: str) -> int:
    m = re.fullmatch(r"(\d+)([km]?)", spec.strip().lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"{spec!r} is not a count such as 1m, 100k or 5000")
    return int(m[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[m[2]]


def parse_fps_case(spec: str) -> tuple[int, int, int, int]:
    """`1m@1920x1080:300` -> (N, width, height, frames)."""
    m = re.fullmatch(r"(\d+[km]?)@(\d+)x(\d+):(\d+)", spec.strip().lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"{spec!r} is not N@WIDTHxHEIGHT:FRAMES (e.g. 1m@1920x1080:300)")
    return parse_count(m[1]), int(m[2]), int(m[3]), int(m[4])


def random_4d_gaussians(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(means4 [N,4], covars4 [N,10], opacities [N]): general 4D rotations, lifespans inside [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    means4 = torch.cat([torch.randn(n, 3, generator=g), torch.rand(n, 1, generator=g)], dim=1)
    log_scales = torch.empty(n, 4)
    log_scales[:, :3].uniform_(math.log(0.01), math.log(0.1), generator=g)
    log_scales[:, 3].uniform_(math.log(0.02), math.log(0.2), generator=g)
    quats_l, quats_r = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    covars4 = cr.covar4d_from_quats(quats_l, quats_r, log_scales.exp())
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    return means4.to(device), covars4.to(device), opacities.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_slicing(
    means4: torch.Tensor,
    covars4: torch.Tensor,
    opacities: torch.Tensor,
    times: list[float],
    fused: bool,
    clock: str = "wall",
) -> tuple[float, float]:
    """(total seconds of slice + cull over `times`, mean number of Gaussians kept per frame)."""
    device = means4.device

    def slice_and_cull(t: float) -> torch.Tensor:
        if fused:
            sliced = cr.slice_4d(means4, covars4, opacities, t, backend=device.type, check_finite=False)
            weights = sliced.temporal_weights
        else:
            weights = reference_4d.slice_4d(means4, covars4, opacities, t)[3]
        return cr.cull_by_time(weights, CULL_THRESHOLD)

    for t in times[:2]:  # warm-up: first kernel launch, allocator
        slice_and_cull(t)
    timer = cpu_timer(clock, device)
    _sync(device)
    kept = 0
    t0 = timer()
    for t in times:
        kept += slice_and_cull(t).shape[0]  # the cull's index count is known on the host: no extra sync
    _sync(device)
    return timer() - t0, kept / len(times)


@torch.no_grad()
def max_abs_diff(means4: torch.Tensor, covars4: torch.Tensor, opacities: torch.Tensor, t: float) -> float:
    """Largest difference between the fused kernel's and the plain-torch slice at time t, over all outputs."""
    fused = cr.slice_4d(means4, covars4, opacities, t, backend=means4.device.type, check_finite=False)
    plain = reference_4d.slice_4d(means4, covars4, opacities, t)
    return max(float((a - b).abs().max()) for a, b in zip(fused, plain, strict=True))


def scene_4d(
    n: int, width: int, height: int, device: torch.device, seed: int = 0
) -> tuple[Gaussians4D, Cameras]:
    """bench/rasterizer.py's 3D scene given lifespans: μ_t uniform in [0, 1], temporal scale 0.02..0.2, and a
    slight space-time rotation (so slicing moves the means); SH degree 3 with 2 cosine time bases."""
    scene = make_scene(n, width, height, torch.device("cpu"), seed)
    g = torch.Generator().manual_seed(seed + 1)
    quats_l, quats_r = cr.spatial_quats_to_quats_lr(scene.quats)
    tilt = 0.05
    K = num_sh_bases(3)
    sh = torch.zeros(n, 2, K, 3)
    sh[:, 0] = scene.sh
    sh[:, 1] = 0.1 * torch.randn(n, K, 3, generator=g)
    log_time_scales = torch.empty(n, 1).uniform_(math.log(0.02), math.log(0.2), generator=g)
    params = {
        "means4": torch.cat([scene.means, torch.rand(n, 1, generator=g)], dim=1),
        "log_scales4": torch.cat([scene.scales.log(), log_time_scales], dim=1),
        "quats_l": quats_l + tilt * torch.randn(n, 4, generator=g),
        "quats_r": quats_r + tilt * torch.randn(n, 4, generator=g),
        "opacity_logits": torch.logit(scene.opacities),
        "sh0": sh[:, :, :1].contiguous(),
        "shN": sh[:, :, 1:].contiguous(),
    }
    gaussians = Gaussians4D(params).to(device).requires_grad_(False)
    cameras = Cameras(torch.linalg.inv(scene.T_cam_world), scene.Ks, width, height).to(device)
    return gaussians, cameras


@torch.no_grad()
def render_fps(
    n: int, width: int, height: int, frames: int, device: torch.device, clock: str = "wall"
) -> dict:
    """Slice, cull and render `frames` frames of a 4D scene with `splat4d.render`: frames per second and detail."""
    gaussians, cameras = scene_4d(n, width, height, device)
    settings = RenderSettings(backend=device.type)
    times = torch.linspace(0, 1, frames).tolist()
    for t in times[:3]:
        render(gaussians, cameras, settings, t=t)
    timer = cpu_timer(clock, device)
    _sync(device)
    kept = 0
    t0 = timer()
    for t in times:
        kept += render(gaussians, cameras, settings, t=t).info["kept_ids"].shape[0]
    _sync(device)
    seconds = timer() - t0
    return {"fps": frames / seconds, "seconds": seconds, "mean_kept": kept / frames}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cr.has_cuda() else "cpu")
    parser.add_argument("--n", type=parse_count, default=1_000_000, help="4D Gaussians to slice (default 1m)")
    parser.add_argument("--frames", type=int, default=300, help="frame times to slice at (default 300)")
    parser.add_argument(
        "--fps-cases",
        nargs="*",
        type=parse_fps_case,
        default=None,
        metavar="N@WxH:FRAMES",
        help="4D render FPS cases (default: 1m@1920x1080:300 on cuda, none on the cpu)",
    )
    add_cpu_timing_arguments(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cr.has_cuda():
        parser.error("--device cuda needs torch with CUDA and a visible GPU")
    if args.fps_cases is None:
        args.fps_cases = [GPU_FPS_CASE] if args.device == "cuda" else []
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    figures: dict[str, float] = {}
    missing: dict[str, str] = {}
    rows: list[dict] = []

    key = f"{count_label(args.n)}_{args.frames}f"
    means4, covars4, opacities = random_4d_gaussians(args.n, device)
    times = torch.linspace(0, 1, args.frames).tolist()
    fused_s, fused_kept = time_slicing(means4, covars4, opacities, times, True, args.clock)
    torch_s, torch_kept = time_slicing(means4, covars4, opacities, times, False, args.clock)
    diff = max(max_abs_diff(means4, covars4, opacities, t) for t in (0.0, 0.5, 1.0))
    figures[f"slice4d_speedup_vs_torch_slicing_{key}"] = torch_s / fused_s
    figures[f"slice4d_fused_seconds_{key}"] = fused_s
    figures[f"slice4d_torch_seconds_{key}"] = torch_s
    for method, seconds, kept in (("fused", fused_s, fused_kept), ("torch", torch_s, torch_kept)):
        rows.append(
            {"part": "slicing", "method": method, "n": args.n, "frames": args.frames, "total_s": seconds,
             "clock": args.clock if device.type == "cpu" else "wall",
             "ms_per_frame": 1e3 * seconds / args.frames, "mean_kept": kept}
        )  # fmt: skip
    rows[-2]["max_abs_diff_vs_torch"] = diff
    console.print(
        f"slice + cull, {args.n} Gaussians x {args.frames} times on {device}: fused {fused_s:.2f} s, "
        f"plain torch {torch_s:.2f} s ({torch_s / fused_s:.1f}x); max |Δ| {diff:.2e}, "
        f"{fused_kept:.0f} kept per frame"
    )
    del means4, covars4, opacities

    for n, w, h, frames in args.fps_cases:
        result = render_fps(n, w, h, frames, device, args.clock)
        figures[f"slice4d_fps_{size_label(w, h)}_{count_label(n)}_{frames}f"] = result["fps"]
        rows.append(
            {"part": "render", "n": n, "width": w, "height": h, "frames": frames, **result,
             "clock": args.clock if device.type == "cpu" else "wall"}
        )  # fmt: skip
        console.print(
            f"4D render {n} Gaussians at {w}x{h} on {device}: {result['fps']:.2f} FPS over {frames} frames"
        )
    n, w, h, frames = GPU_FPS_CASE
    gpu_key = f"slice4d_fps_{size_label(w, h)}_{count_label(n)}_{frames}f"
    if gpu_key not in figures:
        missing[gpu_key] = (
            "GPU figure: python bench/slice4d.py --device cuda"
            if device.type == "cpu"
            else "case not chosen with --fps-cases in this run"
        )
    if "slice4d_speedup_vs_torch_slicing_1m_300f" not in figures:
        missing["slice4d_speedup_vs_torch_slicing_1m_300f"] = (
            "not run at 1m Gaussians x 300 frames (--n, --frames)"
        )
    path = write_results("slice4d", device, figures, rows, missing)
    console.print(figures)
    console.print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
