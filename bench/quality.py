"""Reconstruction quality and time: train and evaluate the static pipeline on the procedural sample scene and on
the real scenes in ../shared/data, writing bench/results/quality-<device>.json (format: ../shared/BENCH.md).

    python bench/quality.py --device cpu                 # all scenes
    python bench/quality.py --device cpu --scenes procedural

Figures: procedural_psnr / procedural_seconds (the `make demo` settings: preset "fast"; target ≥ 28 dB in ≤ 5 min
on 2 CPU cores), lego_psnr / lego_seconds (NeRF-synthetic lego at 400×400, compared with the published 3DGS result),
sceaux_registered_images / sceaux_train_psnr (11 raw JPEGs → pycolmap SfM → training).
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, device_name, write_results
from rich.console import Console

from pipelines import PIPELINES
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import load_recipe, write_sample_scene
from splat4d.reconstruct import reconstruct, resolve_device

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PUBLISHED_3DGS_LEGO_PSNR = 35.78
"""3DGS (Kerbl et al. 2023), per-scene table of the supplement: lego, 30k steps, at 800×800."""


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


def _keep_other_scenes(
    device: torch.device, scenes: list[str], figures: dict, rows: list, missing: dict
) -> None:
    """Running some scenes keeps the committed results of the others (each row records its own command)."""
    path = RESULTS / f"quality-{device_name(device)}.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    for key, value in old.get("figures", {}).items():
        if key.split("_")[0] not in scenes:
            figures.setdefault(key, value)
    for key, why in old.get("missing", {}).items():
        if key.split("_")[0] not in scenes:
            missing.setdefault(key, why)
    rows[:0] = [r for r in old.get("rows", []) if r.get("scene") not in scenes]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenes", nargs="+", default=["procedural", "lego", "sceaux"])
    parser.add_argument("--lego-steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--lego-preset", default="fast")
    args = parser.parse_args()
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

        sceaux = SHARED / "sceaux_castle" / "images"
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

    _keep_other_scenes(device, args.scenes, figures, rows, missing)
    path = write_results("quality", device, figures, rows, missing)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
