"""Reconstruction quality and time: train and evaluate the static pipeline on the procedural sample scene and on
the real scenes in ../shared/data, writing bench/results/quality-<device>.json (format: ../shared/BENCH.md).

    python bench/quality.py --device cpu                 # all scenes
    python bench/quality.py --device cpu --scenes procedural
    flock /tmp/splat4d_bench.lock python bench/quality.py --device cpu --scenes sceaux_fast   # timed: one at a time

Figures: procedural_psnr / procedural_seconds (the `make demo` settings: preset "fast"; target ≥ 28 dB in ≤ 5 min
on 2 CPU cores), lego_psnr / lego_seconds (NeRF-synthetic lego at 400×400, compared with the published 3DGS result),
sceaux_registered_images / sceaux_train_psnr (11 raw JPEGs → pycolmap SfM → training, quality on the training
photos), sceaux_fast_seconds / sceaux_fast_psnr / sceaux_fast_ssim (the same 11 photos run as a user runs them,
`splat4d reconstruct <photos> -o out --preset fast`: the preset's working resolution and the default held-out
split, every 8th photo (0 and 8 of 11); seconds are the whole command, SfM + training + evaluation, and its row
splits them).

Running some scenes keeps the committed figures, missing entries and rows of the others.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import tyro
from common import RESULTS, device_name, machine, write_results
from rich.console import Console

import splat4d.reconstruct
from pipelines import PIPELINES
from splat4d.cli import Reconstruct
from splat4d.data.config import DataConfig
from splat4d.data.dataset import downscaled_size, remaining_downscale
from splat4d.data.synthetic import load_recipe, write_sample_scene
from splat4d.reconstruct import reconstruct, resolve_device

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PUBLISHED_3DGS_LEGO_PSNR = 35.78
"""3DGS (Kerbl et al. 2023), per-scene table of the supplement: lego, 30k steps, at 800×800."""
SCEAUX_IMAGES = SHARED / "sceaux_castle" / "images"
SCENES = ("procedural", "lego", "sceaux", "sceaux_fast")
"""Every scene, in the order of the results file; a figure key belongs to the longest scene name it starts with."""


def _run(
    name: str, data: DataConfig, preset: str, steps: int | None, device: torch.device, work: Path
) -> dict:
    spec = PIPELINES["static"]
    cfg = spec.presets[preset]
    if steps is not None:
        cfg = spec.with_steps(cfg, steps)
    cfg = dataclasses.replace(cfg, data=data, trainer=dataclasses.replace(cfg.trainer, progress=False))
    t0 = time.perf_counter()
    result = reconstruct(
        spec, "static", preset, cfg, work / name, device, overwrite=True, console=Console(quiet=True)
    )
    wall = time.perf_counter() - t0
    m = result.metrics
    row = {
        "scene": name,
        "command": "python " + " ".join(sys.argv),
        "preset": preset,
        "steps": m["steps"],
        "train_seconds": round(m["train_seconds"], 1),
        "wall_seconds": round(wall, 1),
        "test_psnr": m["psnr"],  # on the training views when split == "train"
        "test_ssim": m["ssim"],
        "split": m["split"],
        "num_test_views": m["num_views"],
        "num_gaussians": m["num_gaussians"],
        "images": len(result.scene.cameras),
        "resolution": [
            result.scene.cameras.width // data.downscale,
            result.scene.cameras.height // data.downscale,
        ],
    }
    print(row, flush=True)
    return {"row": row, "result": result}


def _cli_reconstruct(argv: list[str], timings: dict) -> tuple[splat4d.reconstruct.Reconstruction, float]:
    """Run `splat4d reconstruct ARGV` in this process, through the command line's own parser and code path, and
    return its result (captured from `splat4d.reconstruct.reconstruct`) and wall seconds. `timings` receives the
    seconds spent reading the input (`_load_scene`: SfM, undistortion) and evaluating (`evaluate_scene`)."""
    module = splat4d.reconstruct
    command = tyro.cli(Reconstruct, args=argv)
    originals = {name: getattr(module, name) for name in ("_load_scene", "evaluate_scene", "reconstruct")}
    captured = {}

    def timed(name: str, key: str):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

        return wrapper

    def capture(*args, **kwargs):
        captured["result"] = originals["reconstruct"](*args, **kwargs)
        return captured["result"]

    try:
        module._load_scene = timed("_load_scene", "input_seconds")
        module.evaluate_scene = timed("evaluate_scene", "eval_seconds")
        module.reconstruct = capture  # the command imports it from the module when it runs
        t0 = time.perf_counter()
        command.main()
        wall = time.perf_counter() - t0
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)
    return captured["result"], wall


def sceaux_fast_argv(images: Path, out: Path, device: torch.device, steps: int | None = None) -> list[str]:
    """The command a user types for their photos with the fast preset (`--steps` only for smoke runs)."""
    smoke = [] if steps is None else ["--steps", str(steps)]
    return [str(images), "-o", str(out), "--preset", "fast", "--device", device.type, *smoke]


def sceaux_fast_row(
    result: splat4d.reconstruct.Reconstruction, wall: float, timings: dict, argv: list[str]
) -> dict:
    """The bench row of a fast-preset run of the Sceaux photos from what the command produced."""
    m, scene = result.metrics, result.scene
    factor = remaining_downscale(scene, m["downscale"])
    sizes = sorted({downscaled_size(w, h, factor) for w, h in scene.cameras.sizes})
    train = round(m["train_seconds"], 1)
    inputs, evals = round(timings["input_seconds"], 1), round(timings["eval_seconds"], 1)
    return {
        "scene": "sceaux_fast",
        "command": "python " + " ".join(sys.argv),
        "reconstruct": "splat4d reconstruct " + " ".join(argv),
        "preset": "fast",
        "steps": m["steps"],
        "wall_seconds": round(wall, 1),
        "sfm_seconds": inputs,  # reading the photos: SfM, upright copies, undistortion
        "train_seconds": train,
        "eval_seconds": evals,
        "other_seconds": round(wall - inputs - train - evals, 1),  # building, loading images, writing the PLY
        "test_psnr": m["psnr"],
        "test_ssim": m["ssim"],
        "split": m["split"],
        "num_test_views": m["num_views"],
        "held_out": [scene.image_paths[i].name for i in scene.test_indices],
        "views": [{k: v[k] for k in ("name", "psnr", "ssim")} for v in m.get("views", [])],
        "held_out_indices": list(scene.test_indices),
        "num_gaussians": m["num_gaussians"],
        "images": len(scene.cameras),
        "input_images": scene.metadata.get("num_input_images", len(scene.cameras)),
        "downscale": m["downscale"],
        "full_resolution": [list(s) for s in sorted(set(scene.cameras.sizes))],
        "resolution": [list(s) for s in sizes],
    }


def sceaux_fast_figures(row: dict) -> dict:
    """The stable figures of a `sceaux_fast` row."""
    return {
        "sceaux_fast_seconds": row["wall_seconds"],
        "sceaux_fast_psnr": round(row["test_psnr"], 3),
        "sceaux_fast_ssim": round(row["test_ssim"], 4),
    }


def run_sceaux_fast(images: Path, device: torch.device, work: Path, steps: int | None = None) -> dict:
    """`splat4d reconstruct <images> -o out --preset fast` as a user runs it, timed end to end."""
    argv = sceaux_fast_argv(images, work / "sceaux_fast", device, steps)
    timings: dict = {}
    load = os.getloadavg()
    result, wall = _cli_reconstruct(argv, timings)
    row = sceaux_fast_row(result, wall, timings, argv)
    # Others' processes on the machine slow a timed run down: the 1-minute load average before and after says so.
    row["load_average_1min"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    row["machine"] = machine()  # the file's own "machine" is the latest run's, which may be another scene's
    row["train_seconds_by_step"] = _seconds_by_step(work / "sceaux_fast" / "log.jsonl", every=100)
    print(row, flush=True)
    return row


def _seconds_by_step(log: Path, every: int) -> dict[str, float]:
    """Training seconds elapsed at every `every`-th step, from the trainer's log.jsonl (where the time goes: the
    fast preset's first steps run at half resolution, densification grows the Gaussians until its stop step)."""
    out = {}
    for line in log.read_text().splitlines() if log.is_file() else []:
        entry = json.loads(line)
        if "seconds" in entry and entry.get("step", 0) % every == 0:
            out[str(entry["step"])] = round(entry["seconds"], 1)
    return out


def scene_of(key: str) -> str | None:
    """The scene a figure key belongs to: the longest name in SCENES it starts with (`sceaux_fast_psnr` is
    sceaux_fast's, `sceaux_train_psnr` sceaux's); None for none."""
    return max((s for s in SCENES if key == s or key.startswith(s + "_")), key=len, default=None)


def merge_other_scenes(old: dict, scenes: list[str], figures: dict, rows: list, missing: dict) -> None:
    """Add the results in `old` (a results document) of the scenes not run now to this run's figures, rows and
    missing entries, in place, in the order of SCENES."""
    for key, value in old.get("figures", {}).items():
        if scene_of(key) not in scenes:
            figures.setdefault(key, value)
    for key, why in old.get("missing", {}).items():
        if scene_of(key) not in scenes and key not in figures:
            missing.setdefault(key, why)
    rows[:0] = [r for r in old.get("rows", []) if r.get("scene") not in scenes]

    def order(name: str | None) -> int:
        return SCENES.index(name) if name in SCENES else len(SCENES)

    rows.sort(key=lambda r: order(r.get("scene")))
    for d in (figures, missing):
        items = sorted(d.items(), key=lambda kv: order(scene_of(kv[0])))
        d.clear()
        d.update(items)


def _keep_other_scenes(
    device: torch.device, scenes: list[str], figures: dict, rows: list, missing: dict
) -> None:
    """Running some scenes keeps the committed results of the others (each row records its own command)."""
    path = RESULTS / f"quality-{device_name(device)}.json"
    if path.is_file():
        merge_other_scenes(json.loads(path.read_text()), scenes, figures, rows, missing)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES))
    parser.add_argument("--lego-steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--lego-preset", default="fast")
    parser.add_argument(
        "--sceaux-fast-steps", type=int, default=None, help="smoke runs only (default: the preset's)"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    figures, rows, missing = {}, [], {}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "procedural" in args.scenes:
            scene = write_sample_scene(
                load_recipe(REPO / "assets" / "samples" / "static.json"), work / "sample"
            )
            out = _run("procedural", DataConfig(path=scene), "fast", None, device, work)
            rows.append(out["row"])
            figures["procedural_psnr"] = round(out["row"]["test_psnr"], 3)
            figures["procedural_seconds"] = out["row"]["train_seconds"]

        lego = SHARED / "nerf_synthetic_lego"
        if "lego" in args.scenes and lego.is_dir():
            out = _run("lego", DataConfig(path=lego), args.lego_preset, args.lego_steps, device, work)
            out["row"]["published_3dgs_psnr_800px"] = PUBLISHED_3DGS_LEGO_PSNR
            out["row"]["gap_db"] = round(PUBLISHED_3DGS_LEGO_PSNR - out["row"]["test_psnr"], 2)
            rows.append(out["row"])
            figures["lego_psnr"] = round(out["row"]["test_psnr"], 3)
            figures["lego_seconds"] = out["row"]["train_seconds"]
        elif "lego" in args.scenes:
            missing["lego_psnr"] = missing["lego_seconds"] = f"{lego} not found"

        sceaux = SCEAUX_IMAGES
        if "sceaux" in args.scenes and sceaux.is_dir():
            # All 11 photos train (too few to hold some out); quality is measured on them.
            data = DataConfig(path=sceaux, downscale=2, test_every=0)
            out = _run("sceaux", data, "fast", None, device, work)
            out["row"]["input_images"] = len(list(sceaux.glob("*.jpg")))
            rows.append(out["row"])
            figures["sceaux_registered_images"] = out["row"]["images"]
            figures["sceaux_train_psnr"] = round(out["row"]["test_psnr"], 3)
        elif "sceaux" in args.scenes:
            missing["sceaux_registered_images"] = missing["sceaux_train_psnr"] = f"{sceaux} not found"

        if "sceaux_fast" in args.scenes and sceaux.is_dir():
            row = run_sceaux_fast(sceaux, device, work, args.sceaux_fast_steps)
            rows.append(row)
            figures.update(sceaux_fast_figures(row))
        elif "sceaux_fast" in args.scenes:
            for key in ("sceaux_fast_seconds", "sceaux_fast_psnr", "sceaux_fast_ssim"):
                missing[key] = f"{sceaux} not found"

    _keep_other_scenes(device, args.scenes, figures, rows, missing)
    path = write_results("quality", device, figures, rows, missing)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
