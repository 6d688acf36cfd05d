"""Ablation of the dynamic pipeline's levers for one moving camera: each lever alone, switched on (or off) against
the `fast` preset, on the procedural monocular scene and the real D-NeRF lego, at a reduced size so that the whole
table fits a CPU session (`--downscale`, `--steps`; the full-size figures are bench/dynamic.py's). Writes
bench/results/dynamic-ablation-<device>.json (format: ../shared/BENCH.md): one row per (scene, lever) and figures
`ablation_<scene>_<lever>_psnr`.

    flock /tmp/splat4d_bench.lock python bench/dynamic_ablation.py --device cpu
    python bench/dynamic_ablation.py --device cpu --scenes monocular --levers baseline lifespan_floor

Levers (pipelines/dynamic/config.py and regularizers.py say what each does):
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import RESULTS, device_name, write_results
from dynamic import DNERF, _data, run_scene

from splat4d.data.synthetic import load_recipe
from splat4d.reconstruct import resolve_device

REPO = Path(__file__).resolve().parent.parent
BASES: dict[str, tuple[str, ...]] = {
    "original": (
        "motion_sparsity_weight=0",
        "lifespan_floor=0",
        "strategy.split_in_time=True",
        "rigidity_weight=0",
    ),
    "sparsity_floor": ("strategy.split_in_time=True", "rigidity_weight=0"),
    "space_only_growth": ("rigidity_weight=0",),
    "rigidity": (),
}
"""What every lever is measured against (`--base`), as `--set` assignments on today's fast preset:
original: the preset before this ablation made motion sparsity, the lifespan floor and growth in space only
defaults (figures `ablation_<scene>_<lever>_psnr`); sparsity_floor: the preset with motion sparsity and the
lifespan floor on, growth in space and time (figures `ablation_sparsity_floor_<scene>_<lever>_psnr`);
space_only_growth: the preset with sparsity, the floor and growth in space only, before local rigidity became the
monocular default (`ablation_space_only_growth_...`); each of these turns local rigidity off, as it was then.
rigidity: the preset as it is, local rigidity on for monocular captures (`ablation_rigidity_...`)."""
LEVERS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "no_temporal_opacity": ("temporal_opacity_weight=0",),
    "no_motion_smoothness": ("motion_smoothness_weight=0",),
    "motion_smoothness_x30": ("motion_smoothness_weight=0.03",),
    "motion_sparsity": ("motion_sparsity_weight=0.01",),
    "motion_sparsity_x3": ("motion_sparsity_weight=0.03",),
    "lifespan_floor": ("lifespan_floor=0.06",),
    "time_copies_8": ("init.time_copies=8", "init.init_time_scale=0.125"),
    "time_copies_1": ("init.time_copies=1", "init.init_time_scale=0.5"),
    "sparsity_and_floor": ("motion_sparsity_weight=0.01", "lifespan_floor=0.06"),
    "space_only_growth": ("strategy.split_in_time=False",),
    "still_copy": ("init.still_copy=True",),
    "space_only_growth_and_still_copy": ("strategy.split_in_time=False", "init.still_copy=True"),
    "rigidity": ("rigidity_weight=0.01",),
    "rigidity_x10": ("rigidity_weight=0.1",),
    "rigidity_instead_of_smoothness": ("rigidity_weight=0.01", "motion_smoothness_weight=0"),
    "baseline_seed1": ("trainer.seed=1",),
    "motion_sparsity_seed1": ("motion_sparsity_weight=0.01", "trainer.seed=1"),
    "rigidity_x10_seed1": ("rigidity_weight=0.1", "trainer.seed=1"),
    "lifespan_floor_0p15": ("lifespan_floor=0.15",),
    "lifespan_floor_0p3": ("lifespan_floor=0.3",),
}
"""Lever name → the `--set` assignments that switch it, each applied after the base's; the `_seed1` rows
repeat a lever with another seed of the view order and densification draws, to show the run-to-run noise."""
__doc__ += "".join(f"    {name}: {' '.join(sets) or '(the base alone)'}\n" for name, sets in LEVERS.items())
SCENES = ("monocular", "multiview", *DNERF)


def figure_key(scene: str, lever: str, base: str = "original") -> str:
    return f"ablation_{'' if base == 'original' else base + '_'}{scene}_{lever}_psnr"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenes", nargs="+", default=["monocular", *DNERF], choices=SCENES)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--steps", type=int, default=1200, help="training steps (the fast preset's scaled)")
    parser.add_argument("--downscale", type=int, default=2, help="train and score at 1/k of the resolution")
    parser.add_argument(
        "--base", default="original", choices=list(BASES), help="what the levers are measured against"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    path = RESULTS / f"dynamic-ablation-{device_name(device)}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    figures, rows = dict(old.get("figures", {})), list(old.get("rows", []))
    recipe = load_recipe(REPO / "assets" / "samples" / "dynamic.json")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for scene in args.scenes:
            if scene in DNERF and not DNERF[scene].is_dir():
                print(f"{DNERF[scene]} not found: {scene} skipped", file=sys.stderr)
                continue
            for lever in args.levers:
                data = _data(scene, recipe, work, args.downscale)
                sets = BASES[args.base] + LEVERS[lever]
                row = run_scene(scene, data, args.steps, device, work, "dynamic", sets)
                row.update(lever=lever, base=args.base, downscale=args.downscale)
                rows = [r for r in rows if (r.get("scene"), r.get("lever"), r.get("base", "original"))
                        != (row["scene"], lever, args.base)]  # fmt: skip
                rows.append(row)
                figures[figure_key(scene, lever, args.base)] = round(row["test_psnr"], 3)
                print(f"{scene} {lever}: {row['test_psnr']:.2f} dB, {row['num_gaussians']} G, "
                      f"{row['train_seconds']} s", flush=True)  # fmt: skip
                # written after every run: a long table survives an interrupted session
                path = write_results("dynamic-ablation", device, figures, rows, {})
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
