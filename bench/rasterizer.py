"""Rasterizer benchmark: forward and forward+backward time per backend, and gsplat side by side on CUDA.

    python bench/rasterizer.py --device cpu          # reference vs cpu kernels (CI machine: 2 cores)
    python bench/rasterizer.py --device cuda         # cuda kernels vs gsplat 1.5.3 on the same scenes

Writes bench/results/rasterizer-<device>.json (format: ../shared/BENCH.md) and prints a table. Figures:
`cpu_speedup_vs_reference_256_20k` (fwd+bwd), `cuda_speedup_vs_gsplat_1080p_1m` (fwd+bwd),
`cuda_max_abs_diff_vs_gsplat_1080p_1m`, `cuda_speedup_vs_gsplat_800_100k`.
"""

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import write_results
from rich.console import Console
from rich.table import Table

import cuda_rasterizer as cr


@dataclass
class Scene:
    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    T_cam_world: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int


def make_scene(n: int, width: int, height: int, device: torch.device, seed: int = 0) -> Scene:
    """N random Gaussians filling the view frustum between depth 2 and 8, sized a few pixels each."""
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    z = 2 + 6 * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * width / f * z
    y = (torch.rand(n, generator=g) - 0.5) * height / f * z
    means = torch.stack([x, y, z], -1)
    # World-space size so that the projected sigma is about (0.5 .. 4) px * sqrt(1e5 / n), i.e. similar coverage.
    px = torch.exp(torch.empty(n, 3).uniform_(math.log(0.5), math.log(4.0), generator=g)) * math.sqrt(1e5 / n)
    scales = px * z[:, None] / f * math.sqrt(width * height / 640_000)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    sh = torch.randn(n, 16, 3, generator=g) * 0.2
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return Scene(
        *(t.to(device) for t in (means, quats, scales, opacities, sh, torch.eye(4)[None], K[None])),
        width,
        height,
    )


def splat4d_pipeline(scene: Scene, backend: str) -> Callable[[bool], torch.Tensor]:
    settings = cr.RasterSettings(width=scene.width, height=scene.height, check_finite=False)
    params = [scene.means, scene.quats, scene.scales, scene.opacities, scene.sh]

    def run(backward: bool) -> torch.Tensor:
        leaves = [p.detach().requires_grad_(backward) for p in params]
        means, quats, scales, opac, sh = leaves
        covars = cr.quat_scale_to_covar(quats, scales)
        proj = cr.project(means, covars, opac, scene.T_cam_world, scene.Ks, settings, backend)
        dirs = means[None] - torch.linalg.inv(scene.T_cam_world)[:, None, :3, 3]
        colors = torch.clamp_min(cr.eval_sh(3, dirs, sh, backend) + 0.5, 0)
        out = cr.rasterize(
            proj.means2d,
            proj.conics,
            colors,
            proj.opacities,
            proj.depths,
            proj.radii,
            settings,
            backend=backend,
        )
        if backward:
            out.colors.sum().backward()
        return out.colors

    return run


def gsplat_pipeline(scene: Scene) -> Callable[[bool], torch.Tensor]:
    import gsplat

    params = [scene.means, scene.quats, scene.scales, scene.opacities, scene.sh]

    def run(backward: bool) -> torch.Tensor:
        means, quats, scales, opac, sh = [p.detach().requires_grad_(backward) for p in params]
        colors, _, _ = gsplat.rasterization(
            means,
            quats,
            scales,
            opac,
            sh,
            scene.T_cam_world,
            scene.Ks,
            scene.width,
            scene.height,
            sh_degree=3,
        )
        if backward:
            colors.sum().backward()
        return colors

    return run


def time_it(
    fn: Callable[[bool], torch.Tensor], backward: bool, device: torch.device, reps: int, warmup: int
) -> float:
    """Median wall time in ms (CUDA events on GPU)."""
    for _ in range(warmup):
        fn(backward)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(backward)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(backward)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


CASES = [
    (10_000, 256, 256),
    (20_000, 256, 256),
    (100_000, 800, 800),
    (100_000, 1920, 1080),
    (1_000_000, 1920, 1080),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if cr.has_cuda() else "cpu")
    parser.add_argument(
        "--reps", type=int, default=None, help="timed runs per case (default: 50 cuda, 3 cpu)"
    )
    parser.add_argument("--quick", action="store_true", help="only the smallest cases")
    args = parser.parse_args()
    device = torch.device(args.device)
    reps = args.reps or (50 if device.type == "cuda" else 3)
    warmup = 10 if device.type == "cuda" else 1

    if device.type == "cuda":
        backends = ["cuda", "gsplat"]
        limits = {"cuda": 10**9, "gsplat": 10**9}
    else:
        backends = ["reference", "cpu"]
        # Dense reference cost ~ N x pixels; skip beyond ~2e9 Gaussian-pixel evaluations.
        limits = {"reference": 2e9, "cpu": 2.2e11}
    cases = CASES[:2] if args.quick else CASES

    rows, figures, missing = [], {}, {}
    results: dict[tuple, dict[str, float]] = {}
    for n, w, h in cases:
        scene = make_scene(n, w, h, device)
        images = {}
        for backend in backends:
            if n * w * h > limits[backend]:
                continue
            fn = gsplat_pipeline(scene) if backend == "gsplat" else splat4d_pipeline(scene, backend)
            with torch.no_grad():
                images[backend] = fn(False)
            b_reps = reps if backend != "reference" else 1
            fwd = time_it(
                lambda b, fn=fn: _no_grad_if(fn, b), False, device, b_reps, warmup if b_reps > 1 else 0
            )
            fwd_bwd = time_it(fn, True, device, b_reps, warmup if b_reps > 1 else 0)
            results[(n, w, h, backend)] = {"fwd": fwd, "fwd_bwd": fwd_bwd}
            rows.append(
                {"n": n, "width": w, "height": h, "backend": backend, "fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd}
            )
        if len(images) == 2:
            a, b = images.values()
            rows[-1]["max_abs_diff_vs_" + backends[0]] = float((a - b).abs().max())
            if device.type == "cuda" and (n, w, h) == (1_000_000, 1920, 1080):
                figures["cuda_max_abs_diff_vs_gsplat_1080p_1m"] = rows[-1]["max_abs_diff_vs_cuda"]

    def ratio(key: tuple, base: str, ours: str) -> float | None:
        if (*key, base) in results and (*key, ours) in results:
            return results[(*key, base)]["fwd_bwd"] / results[(*key, ours)]["fwd_bwd"]
        return None

    if device.type == "cpu":
        r = ratio((20_000, 256, 256), "reference", "cpu")
        if r is not None:
            figures["cpu_speedup_vs_reference_256_20k"] = r
        for key in ("cuda_speedup_vs_gsplat_1080p_1m", "cuda_max_abs_diff_vs_gsplat_1080p_1m"):
            missing[key] = "needs a CUDA GPU: run `python bench/rasterizer.py --device cuda` on one"
    else:
        for key, name in [((1_000_000, 1920, 1080), "1080p_1m"), ((100_000, 800, 800), "800_100k")]:
            r = ratio(key, "gsplat", "cuda")
            if r is not None:
                figures[f"cuda_speedup_vs_gsplat_{name}"] = r
            else:
                missing[f"cuda_speedup_vs_gsplat_{name}"] = "case not run"
    path = write_results("rasterizer", device, figures, rows, missing)

    table = Table(title=f"rasterizer on {device}")
    for col in ("N", "size", "backend", "fwd ms", "fwd+bwd ms"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            str(row["n"]), f"{row['width']}x{row['height']}", row["backend"],
            f"{row['fwd_ms']:.2f}", f"{row['fwd_bwd_ms']:.2f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(figures)
    console.print(f"wrote {path}")


def _no_grad_if(fn: Callable[[bool], torch.Tensor], backward: bool) -> torch.Tensor:
    with torch.no_grad():
        return fn(backward)


if __name__ == "__main__":
    main()
