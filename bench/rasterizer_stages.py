"""Per-stage rasterizer benchmark: where the time of one render + backward goes, splat4d and gsplat side by side.

    python bench/rasterizer_stages.py --device cuda                   # cuda kernels and gsplat 1.5.3, default cases
    python bench/rasterizer_stages.py --device cpu --cases 10k@256 100k@800 --threads 1 --clock process

The scenes are bench/rasterizer.py's (`make_scene`: random Gaussians in the view frustum, SH degree 3, one camera);
the default cases are 10k@256x256, 100k@800x800 and 1m@1920x1080. Each stage is timed on its own, its inputs
computed beforehand by the stages before it, and reported as the median of `--repeats` (CUDA events after a device
sync on the GPU; perf_counter on the CPU, or with `--clock process` the process's CPU time, which other jobs on a
shared machine do not inflate: the committed CPU figures use it with one thread). Backward stages run their forward untimed first and time
`torch.autograd.grad` with a fixed random cotangent. Stages:

    project        covariances from quaternions and scales + EWA projection (`cr.quat_scale_to_covar` +
                   `cr.project`; gsplat: `fully_fused_projection` given quats and scales)
    project_bwd    its backward, from (means2d, conics, opacities) to (means, quats, scales, opacities)
    sh             colours from degree-3 SH (`cr.eval_sh`; gsplat: `spherical_harmonics` with the visibility mask
                   that `gsplat.rasterization` passes)
    sh_bwd         its backward, to the directions and coefficients
    intersect      tile/Gaussian pairs and their depth sort (`cr.intersect_tiles`; gsplat: `isect_tiles` +
                   `isect_offset_encode`)
    rasterize_fwd  alpha compositing given the precomputed pairs (`cr.rasterize`; gsplat: `rasterize_to_pixels`)
    rasterize_bwd  autograd backward of the rasterize output alone, to means2d, conics, colours and opacities
    chain_fwd      the whole forward from the leaves (means, quats, scales, opacities, SH) to the image, torch glue
                   (view directions, +0.5 and clamp of the colours) included
    chain_bwd      the whole backward from the image to the leaves, through the torch glue

Backends: `cpu` and `cuda` are splat4d's kernels; `gsplat` (CUDA only) is gsplat's matching calls on the same
inputs, each pipeline feeding its own intermediate results forward (so each rasterizes its own tile pairs).

Writes bench/results/rasterizer-stages-<device>.json (format: ../shared/BENCH.md). Figure keys, with <case> such as
`10k_256x256` or `1m_1920x1080` (N with k/m suffix, then width x height):

    stage_ms.<case>.<backend>.<stage>     median milliseconds of one stage
    pairs.<case>.<backend>                number of (tile, Gaussian) pairs the intersection produced
    speedup_vs_gsplat.<case>.<stage>      gsplat ms / splat4d cuda ms (> 1: splat4d is faster), CUDA only
    pairs_vs_gsplat.<case>                splat4d pairs / gsplat pairs, CUDA only

Figures that could not be measured (gsplat without CUDA, a default case not chosen) are listed under "missing".
"""

import argparse
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import add_cpu_timing_arguments, cpu_timer, write_results
from rasterizer import Scene, make_scene
from rich.console import Console
from rich.table import Table

import cuda_rasterizer as cr

DEFAULT_CASES = ((10_000, 256, 256), (100_000, 800, 800), (1_000_000, 1920, 1080))
STAGES = (
    "project",
    "project_bwd",
    "sh",
    "sh_bwd",
    "intersect",
    "rasterize_fwd",
    "rasterize_bwd",
    "chain_fwd",
    "chain_bwd",
)
SH_DEGREE = 3
TILE_SIZE = 16


@dataclass(frozen=True)
class Stage:
    """One timed stage: `run(prepare())`, where only `run` is timed (`prepare` builds a fresh autograd graph)."""

    run: Callable[[Any], Any]
    prepare: Callable[[], Any] = lambda: None


@dataclass(frozen=True)
class Pipeline:
    """The stages of one backend on one scene, and the tile/Gaussian pair count its intersection produced."""

    stages: dict[str, Stage]
    pairs: int
    visible: int


def case_name(n: int, width: int, height: int) -> str:
    """`10k_256x256`, `1m_1920x1080`, `500_64x48`: the <case> part of the figure keys."""
    if n % 1_000_000 == 0:
        label = f"{n // 1_000_000}m"
    elif n % 1_000 == 0:
        label = f"{n // 1_000}k"
    else:
        label = str(n)
    return f"{label}_{width}x{height}"


def parse_case(spec: str) -> tuple[int, int, int]:
    """`10k@256` (square), `1m@1920x1080` or `500@64x48` -> (N, width, height)."""
    m = re.fullmatch(r"(\d+)([km]?)@(\d+)(?:x(\d+))?", spec.strip().lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"case {spec!r} is not N@WIDTHxHEIGHT (e.g. 10k@256, 1m@1920x1080)")
    n = int(m[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[m[2]]
    width = int(m[3])
    return n, width, int(m[4]) if m[4] else width


def fixed_randn(*shape: int, device: torch.device, seed: int, scale: float = 1.0) -> torch.Tensor:
    """The same random cotangent for every backend and repeat."""
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).to(device)


def camera_centres(scene: Scene) -> torch.Tensor:
    return torch.linalg.inv(scene.T_cam_world)[:, :3, 3]


def fresh_leaves(scene: Scene) -> list[torch.Tensor]:
    """(means, quats, scales, opacities, sh) as new leaves that require grad."""
    params = (scene.means, scene.quats, scene.scales, scene.opacities, scene.sh)
    return detached_leaves(*params)


def detached_leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """New autograd leaves sharing the tensors' storage (no copy)."""
    return [t.detach().requires_grad_(True) for t in tensors]


def grad_stage(
    forward: Callable[[], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]], cotangents
) -> Stage:
    """A backward stage: `forward()` -> (inputs, outputs) untimed, then the timed `autograd.grad`."""

    def run(graph: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]) -> None:
        inputs, outputs = graph
        torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)

    return Stage(run, forward)


def splat4d_pipeline(scene: Scene, backend: str, v_image: torch.Tensor) -> Pipeline:
    """splat4d's staged ops (`backend` "cpu" or "cuda") on `scene`, as bench/rasterizer.py chains them."""
    settings = cr.RasterSettings(width=scene.width, height=scene.height, check_finite=False)
    T, Ks, device = scene.T_cam_world, scene.Ks, scene.means.device
    C, N = T.shape[0], scene.means.shape[0]
    centres = camera_centres(scene)

    def project(means, quats, scales, opacities) -> cr.Projected:
        covars = cr.quat_scale_to_covar(quats, scales)
        return cr.project(means, covars, opacities, T, Ks, settings, backend)

    def sh_colours(dirs, sh) -> torch.Tensor:
        return cr.eval_sh(SH_DEGREE, dirs, sh, backend)

    def chain(leaves: list[torch.Tensor]) -> torch.Tensor:
        means, quats, scales, opacities, sh = leaves
        proj = project(means, quats, scales, opacities)
        dirs = means[None] - centres[:, None]
        colours = torch.clamp_min(sh_colours(dirs, sh) + 0.5, 0.0)
        out = cr.rasterize(
            proj.means2d, proj.conics, colours, proj.opacities, proj.depths, proj.radii, settings,
            backend=backend,
        )  # fmt: skip
        return out.colors

    # Intermediate results that the later stages take as inputs.
    means, quats, scales, opacities, sh = fresh_leaves(scene)
    with torch.no_grad():
        proj = project(means, quats, scales, opacities)
        dirs = means[None] - centres[:, None]
        colours = torch.clamp_min(sh_colours(dirs, sh) + 0.5, 0.0)
        isect = cr.intersect_tiles(proj.means2d, proj.radii, proj.depths, settings, backend)
    raster_inputs = (proj.means2d, proj.conics, colours, proj.opacities)

    def rasterize(means2d, conics, colours, opacities) -> torch.Tensor:
        return cr.rasterize(
            means2d,
            conics,
            colours,
            opacities,
            proj.depths,
            proj.radii,
            settings,
            isect=isect,
            backend=backend,
        ).colors

    def project_graph():
        leaves = fresh_leaves(scene)[:4]
        out = project(*leaves)
        return leaves, (out.means2d, out.conics, out.opacities)

    def sh_graph():
        leaves = detached_leaves(dirs, sh)
        return leaves, (sh_colours(*leaves),)

    def rasterize_graph():
        leaves = detached_leaves(*raster_inputs)
        return leaves, (rasterize(*leaves),)

    def chain_graph():
        leaves = fresh_leaves(scene)
        return leaves, (chain(leaves),)

    project_cotangents = (
        fixed_randn(C, N, 2, device=device, seed=1),
        fixed_randn(C, N, 3, device=device, seed=2, scale=1e-2),
        fixed_randn(C, N, device=device, seed=3),
    )
    stages = {
        "project": Stage(lambda leaves: project(*leaves), lambda: fresh_leaves(scene)[:4]),
        "project_bwd": grad_stage(project_graph, project_cotangents),
        "sh": Stage(lambda leaves: sh_colours(*leaves), lambda: detached_leaves(dirs, sh)),
        "sh_bwd": grad_stage(sh_graph, (fixed_randn(C, N, 3, device=device, seed=4),)),
        "intersect": Stage(
            lambda _: cr.intersect_tiles(proj.means2d, proj.radii, proj.depths, settings, backend)
        ),
        "rasterize_fwd": Stage(lambda leaves: rasterize(*leaves), lambda: detached_leaves(*raster_inputs)),
        "rasterize_bwd": grad_stage(rasterize_graph, (v_image,)),
        "chain_fwd": Stage(chain, lambda: fresh_leaves(scene)),
        "chain_bwd": grad_stage(chain_graph, (v_image,)),
    }
    visible = int((proj.radii > 0).all(-1).sum())
    return Pipeline(stages, int(isect.flatten_ids.numel()), visible)


def gsplat_pipeline(scene: Scene, v_image: torch.Tensor) -> Pipeline:
    """gsplat 1.5.3's matching calls on the same scene, chained as `gsplat.rasterization` chains them."""
    import gsplat

    T, Ks, W, H, device = scene.T_cam_world, scene.Ks, scene.width, scene.height, scene.means.device
    C, N = T.shape[0], scene.means.shape[0]
    tiles_w, tiles_h = (W + TILE_SIZE - 1) // TILE_SIZE, (H + TILE_SIZE - 1) // TILE_SIZE
    centres = camera_centres(scene)

    def project(means, quats, scales, opacities):
        # (radii, means2d, depths, conics, compensations); opacities tighten the footprint, as in rasterization().
        return gsplat.fully_fused_projection(
            means, None, quats, scales, T, Ks, W, H, eps2d=0.3, opacities=opacities
        )

    def sh_colours(dirs, sh, masks) -> torch.Tensor:
        return gsplat.spherical_harmonics(SH_DEGREE, dirs, sh[None].expand(C, -1, -1, -1), masks=masks)

    def intersect(means2d, radii, depths):
        _, isect_ids, flatten_ids = gsplat.isect_tiles(means2d, radii, depths, TILE_SIZE, tiles_w, tiles_h)
        return flatten_ids, gsplat.isect_offset_encode(isect_ids, C, tiles_w, tiles_h)

    def rasterize(means2d, conics, colours, opacities, offsets, flatten_ids) -> torch.Tensor:
        image, _ = gsplat.rasterize_to_pixels(
            means2d, conics, colours, opacities, W, H, TILE_SIZE, offsets, flatten_ids
        )
        return image

    def chain(leaves: list[torch.Tensor]) -> torch.Tensor:
        means, quats, scales, opacities, sh = leaves
        radii, means2d, depths, conics, _ = project(means, quats, scales, opacities)
        dirs = means[None] - centres[:, None]
        colours = torch.clamp_min(sh_colours(dirs, sh, (radii > 0).all(-1)) + 0.5, 0.0)
        flatten_ids, offsets = intersect(means2d, radii, depths)
        return rasterize(means2d, conics, colours, opacities[None].expand(C, -1), offsets, flatten_ids)

    means, quats, scales, opacities, sh = fresh_leaves(scene)
    with torch.no_grad():
        radii, means2d, depths, conics, _ = project(means, quats, scales, opacities)
        masks = (radii > 0).all(-1)
        dirs = means[None] - centres[:, None]
        colours = torch.clamp_min(sh_colours(dirs, sh, masks) + 0.5, 0.0)
        flatten_ids, offsets = intersect(means2d, radii, depths)
    raster_inputs = (means2d, conics, colours, opacities[None].expand(C, -1).contiguous())

    def project_graph():
        leaves = fresh_leaves(scene)[:4]
        _, means2d_, _, conics_, _ = project(*leaves)
        return leaves, (means2d_, conics_)

    def sh_graph():
        leaves = detached_leaves(dirs, sh)
        return leaves, (sh_colours(*leaves, masks),)

    def rasterize_graph():
        leaves = detached_leaves(*raster_inputs)
        return leaves, (rasterize(*leaves, offsets, flatten_ids),)

    def chain_graph():
        leaves = fresh_leaves(scene)
        return leaves, (chain(leaves),)

    # gsplat's projection has no opacity output (opacities go straight to rasterize_to_pixels).
    project_cotangents = (
        fixed_randn(C, N, 2, device=device, seed=1),
        fixed_randn(C, N, 3, device=device, seed=2, scale=1e-2),
    )
    stages = {
        "project": Stage(lambda leaves: project(*leaves), lambda: fresh_leaves(scene)[:4]),
        "project_bwd": grad_stage(project_graph, project_cotangents),
        "sh": Stage(lambda leaves: sh_colours(*leaves, masks), lambda: detached_leaves(dirs, sh)),
        "sh_bwd": grad_stage(sh_graph, (fixed_randn(C, N, 3, device=device, seed=4),)),
        "intersect": Stage(lambda _: intersect(means2d, radii, depths)),
        "rasterize_fwd": Stage(
            lambda leaves: rasterize(*leaves, offsets, flatten_ids), lambda: detached_leaves(*raster_inputs)
        ),
        "rasterize_bwd": grad_stage(rasterize_graph, (v_image,)),
        "chain_fwd": Stage(chain, lambda: fresh_leaves(scene)),
        "chain_bwd": grad_stage(chain_graph, (v_image,)),
    }
    return Pipeline(stages, int(flatten_ids.numel()), int(masks.sum()))


def median_ms(stage: Stage, device: torch.device, repeats: int, warmup: int, clock: str = "wall") -> float:
    """Median time of `stage.run` in ms: CUDA events after a device sync (so earlier queued work and the untimed
    `prepare` are excluded, host launch overhead included); on the CPU perf_counter (`clock="wall"`) or the
    process's CPU time (`clock="process"`, see `--clock`)."""
    timer = cpu_timer(clock, device)
    for _ in range(warmup):
        stage.run(stage.prepare())
    times = []
    for _ in range(repeats):
        arg = stage.prepare()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            stage.run(arg)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = timer()
            stage.run(arg)
            times.append((timer() - t0) * 1e3)
        del arg
    return statistics.median(times)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cr.has_cuda() else "cpu")
    parser.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        default=list(DEFAULT_CASES),
        metavar="N@WxH",
        help="cases to run, e.g. 10k@256 100k@800 1m@1920x1080 (default: those three)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("cpu", "cuda", "gsplat"),
        default=None,
        help="default: cpu on the CPU; cuda and gsplat on a GPU",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per stage (default: 20 cuda, 3 cpu)"
    )
    add_cpu_timing_arguments(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cr.has_cuda():
        parser.error("--device cuda needs torch with CUDA and a visible GPU")
    if args.backends is None:
        args.backends = ["cuda", "gsplat"] if args.device == "cuda" else ["cpu"]
    if args.device == "cpu" and "cuda" in args.backends:
        parser.error("the cuda backend needs --device cuda")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    warmup = 5 if device.type == "cuda" else 1

    figures: dict[str, float | int] = {}
    missing: dict[str, str] = {}
    rows: list[dict] = []
    for n, w, h in args.cases:
        case = case_name(n, w, h)
        scene = make_scene(n, w, h, device)
        v_image = fixed_randn(1, h, w, 3, device=device, seed=0)
        for backend in args.backends:
            if backend == "gsplat" and device.type != "cuda":
                continue
            try:
                pipeline = (
                    gsplat_pipeline(scene, v_image)
                    if backend == "gsplat"
                    else splat4d_pipeline(scene, backend, v_image)
                )
                stage_ms = {
                    name: median_ms(stage, device, repeats, warmup, args.clock)
                    for name, stage in pipeline.stages.items()
                }
            except Exception as e:
                # gsplat is the baseline, not the subject: a failed import or JIT build is recorded, not fatal.
                if backend != "gsplat":
                    raise
                missing[f"stage_ms.{case}.gsplat"] = f"gsplat failed: {type(e).__name__}: {e}"[:300]
                continue
            for name, ms in stage_ms.items():
                figures[f"stage_ms.{case}.{backend}.{name}"] = ms
            figures[f"pairs.{case}.{backend}"] = pipeline.pairs
            rows.append(
                {"case": case, "n": n, "width": w, "height": h, "backend": backend, "repeats": repeats,
                 "clock": "cuda events" if device.type == "cuda" else args.clock,
                 "pairs": pipeline.pairs, "visible": pipeline.visible, "stage_ms": stage_ms}
            )  # fmt: skip
        if f"pairs.{case}.gsplat" in figures and f"pairs.{case}.cuda" in figures:
            for name in STAGES:
                figures[f"speedup_vs_gsplat.{case}.{name}"] = (
                    figures[f"stage_ms.{case}.gsplat.{name}"] / figures[f"stage_ms.{case}.cuda.{name}"]
                )
            figures[f"pairs_vs_gsplat.{case}"] = (
                figures[f"pairs.{case}.cuda"] / figures[f"pairs.{case}.gsplat"]
            )
        elif device.type == "cpu":
            gpu = "needs a CUDA GPU: python bench/rasterizer_stages.py --device cuda"
            missing[f"stage_ms.{case}.cuda"] = gpu
            missing[f"stage_ms.{case}.gsplat"] = "gsplat's kernels run on CUDA only; " + gpu
            missing[f"speedup_vs_gsplat.{case}"] = gpu
        else:
            missing[f"speedup_vs_gsplat.{case}"] = "needs both the cuda and gsplat backends in one run"
        pipeline = scene = None
    for n, w, h in DEFAULT_CASES:
        if (n, w, h) not in args.cases:
            missing[f"stage_ms.{case_name(n, w, h)}"] = "case not chosen with --cases in this run"
    path = write_results("rasterizer-stages", device, figures, rows, missing)
    _print_table(rows, figures, path)
    return path


def _print_table(rows: list[dict], figures: dict, path: Path) -> None:
    console = Console()
    for case in dict.fromkeys(row["case"] for row in rows):
        case_rows = [row for row in rows if row["case"] == case]
        table = Table(title=f"rasterizer stages, {case} (median ms)")
        table.add_column("stage")
        for row in case_rows:
            table.add_column(row["backend"], justify="right")
        has_ratio = f"pairs_vs_gsplat.{case}" in figures
        if has_ratio:
            table.add_column("gsplat / cuda", justify="right")
        for name in STAGES:
            cells = [f"{row['stage_ms'][name]:.2f}" for row in case_rows]
            if has_ratio:
                cells.append(f"{figures[f'speedup_vs_gsplat.{case}.{name}']:.2f}x")
            table.add_row(name, *cells)
        table.add_row("pairs", *[str(row["pairs"]) for row in case_rows], *([""] if has_ratio else []))
        console.print(table)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
