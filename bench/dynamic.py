"""Dynamic scenes: train the dynamic pipeline (4D Gaussians, the "fast" preset's schedule stretched to STEPS) on
the procedural dynamic sample, as multi-view video (10 fixed cameras on a 90° arc × 12 frames, the central camera
held out, as N3DV's cam00; read as images with the sample's points, and as an N3DV folder of H.264 videos with no
points, so the pipeline triangulates the first frames) and as one moving camera (D-NeRF style images with known
poses, and the same frames as one video posed by pycolmap; every 8th frame held out), and on the real D-NeRF lego
scene of ../shared/data (its `train` frames, scored on its `test` frames, on white as D-NeRF evaluates), and write
the figures into bench/results/dynamic-<device>.json (format: ../shared/BENCH.md), keeping the figures of the
scenes not run and the hierarchy figures that bench/hierarchy.py writes there.

    python bench/dynamic.py --device cpu
    python bench/dynamic.py --device cpu --scenes monocular
    python bench/dynamic.py --device cpu --scenes multiview --pipeline long
    python bench/dynamic.py --device cpu --scenes dnerf_lego_partial --out /tmp/dnerf   # keeps the trained scene

Figures: procedural_multiview_psnr, procedural_multiview_video_psnr, procedural_monocular_psnr,
procedural_monocular_video_psnr (held-out views; target ≥ 27 dB on the CPU within 15 minutes of training), with
their training seconds; with `--pipeline long`, the same scenes through the long-video pipeline (streamed through a
temporal hierarchy), as procedural_<scene>_long_psnr. D-NeRF: dnerf_lego_partial_psnr, _ssim (the 18 test frames;
target ≥ 25 dB), _psnr_in_span (the test frames whose time lies within the training frames' times), _val_psnr and
_val_ssim (the held-out `val` frames, one fixed camera sweeping time: Deformable-GS reports that the lego's test
frames disagree with its training frames on the bucket's angle and scores that scene on val), _seconds and
_num_gaussians, trained for DNERF_STEPS (a CPU-budget schedule). Rows: SSIM, #Gaussians, render FPS of the test
views; for the video, how many frames SfM registered and how far it put the camera centres from the truth.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import torch
from common import RESULTS, device_name, write_results
from rich.console import Console

from pipelines import PIPELINES
from splat4d.config_io import with_override
from splat4d.data.config import DataConfig, MultiviewVideoConfig, VideoConfig
from splat4d.data.dataset import ImageDataset
from splat4d.data.n3dv_sample import encode_video, write_n3dv_sample
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import load_recipe, write_sample_scene
from splat4d.geometry import similarity_residuals
from splat4d.reconstruct import evaluate_scene, reconstruct, resolve_device

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PART = "training"
"""Rows of this bench carry part = "training" (bench/hierarchy.py's carry part = "hierarchy")."""
SCENES = {
    # A forward-facing rig, as N3DV's (18-21 cameras about a metre apart): 10 cameras over a 90° arc (10° apart),
    # 12 synchronised frames each; the central camera is held out, as N3DV holds out its central cam00. Measured
    # on the way here (fast preset, 1000 steps): holding out camera 0 at the end of the arc tests extrapolation
    # (20.2 dB on a 6-camera rig, 26.8 dB on its training views), the centre camera of that rig 25.1 dB; 4 cameras
    # spread over 360° leave the held-out camera's side of the room unseen by the others (17.1 dB).
    "multiview": {
        "layout": "multiview",
        "n_cameras": 10,
        "n_frames": 12,
        "arc_degrees": 90.0,
        "test_camera": 5,
    },
    "monocular": {},
}
N3DV = {"multiview_video": "multiview"}
"""Scenes read from an N3DV-layout re-encoding of another scene's sample (`splat4d.data.n3dv_sample`: one H.264
video per camera, poses_bounds.npy, no point cloud, so the pipeline triangulates the first frames at the known
poses, `pipelines.dynamic.scene`), same held-out camera."""
VIDEO = {"monocular_video": "monocular"}
"""Scenes read from one H.264 video of another scene's frames in time order (the moving camera's film): frames
kept at VIDEO_FPS (all of them), posed by pycolmap (`splat4d.data.sfm`), timed by their place in the video, every
8th posed frame held out. The rows also give how far SfM put the camera centres from the truth."""
VIDEO_FPS = 8.0
DNERF = {"dnerf_lego_partial": SHARED / "dnerf_lego_partial"}
"""Real D-NeRF scenes (Pumarola et al. 2021) read from ../shared/data as they are: trained on `train` only and scored
on `test`, the RGBA images composited onto white by the Blender reader, as bench/quality.py's NeRF-synthetic lego
and D-NeRF's own evaluation do. The lego copy is partial (34 of 50 training frames, times 0.16-0.95; its README)."""


STEPS = 2400
"""The fast preset's schedule stretched to as many steps as fit the 15-minute CPU budget on 2 cores. Measured at
160×120 on the 10-camera rig: 800 steps 26.7 dB, 1600 steps 28.9 dB on the held-out camera, while more Gaussians
(grow_grad2d 1e-4), 2 or 8 time copies, or no regularisers each moved it by less than 0.4 dB. At 320×240, 2600
steps gave 28.54 dB but took 918 s (193k Gaussians by the end), just over the budget."""
DNERF_STEPS = 3000
"""D-NeRF scenes: a CPU-budget schedule, the fast preset's stretched to 3000 steps (1008 s of training at 400×400
on 2 cores for the lego), not the 30k-step default schedule (hours on this CPU)."""


def _render_fps(pipeline, scene, device: torch.device, downscale: int = 1) -> float:
    data = ImageDataset(scene, scene.test_indices or scene.train_indices, downscale, device)
    pipeline.render_view(data[0].cameras)  # warm-up
    t0 = time.perf_counter()
    for i in range(len(data)):
        pipeline.render_view(data[i].cameras)
    return len(data) / (time.perf_counter() - t0)


def scene_label(name: str) -> str:
    """The scene's name in rows and figure keys: `procedural_<scene>` for the procedural sample, the D-NeRF
    scene's folder name for it."""
    return name if name in DNERF else f"procedural_{name}"


def figure_key(name: str, pipeline: str) -> str:
    """The scene's label for the dynamic pipeline, `<label>_long` for the long-video one."""
    return scene_label(name) + ("" if pipeline == "dynamic" else f"_{pipeline}")


def default_steps(name: str) -> int:
    """Training steps when `--steps` is not given: DNERF_STEPS for a D-NeRF scene, STEPS for the others."""
    return DNERF_STEPS if name in DNERF else STEPS


def _training_span(scene) -> tuple[float, float]:
    """The earliest and latest capture time of `scene`'s training views."""
    train = [float(scene.cameras.times[i]) for i in scene.train_indices]
    return min(train), max(train)


def in_span(scene) -> list[bool]:
    """For each test view of `scene` (in `scene.test_indices` order, as metrics.json lists them), whether its time
    lies within the training views' times [min, max]: interpolation in time rather than extrapolation."""
    lo, hi = _training_span(scene)
    return [lo <= float(scene.cameras.times[i]) <= hi for i in scene.test_indices]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _time_span_row(scene, views: list[dict]) -> dict:
    """The row's time-span columns: the training span, the test times and the PSNR of the test views inside it."""
    inside = in_span(scene)
    kept = [v["psnr"] for v, ok in zip(views, inside, strict=True) if ok]
    outside = [v["psnr"] for v, ok in zip(views, inside, strict=True) if not ok]
    return {
        "train_time_span": [round(t, 4) for t in _training_span(scene)],
        "test_times": [round(float(scene.cameras.times[i]), 4) for i in scene.test_indices],
        "test_psnr_per_view": [round(v["psnr"], 3) for v in views],
        "num_test_views_in_span": len(kept),
        "test_psnr_in_span": _mean(kept),
        "test_psnr_out_of_span": _mean(outside),
    }


def _val_row(pipeline, scene, cfg, out: Path, device: torch.device) -> dict:
    """The row's val columns: the trained scene scored on the held-out val frames (written to out/val/)."""
    m = evaluate_scene(pipeline, scene, cfg, out, device, split="val")
    return {
        "val_psnr": m["psnr"],
        "val_ssim": m["ssim"],
        "num_val_views": m["num_views"],
        "val_times": [round(float(t), 4) for t in scene.metadata["val_cameras"].times],
        "val_psnr_per_view": [round(v["psnr"], 3) for v in m["views"]],
    }


def scene_figures(name: str, pipeline: str, row: dict) -> dict:
    """The figures of one scene's row: PSNR and training seconds; for a D-NeRF scene also SSIM, the in-span PSNR,
    the Gaussian count and the val frames' PSNR and SSIM."""
    key = figure_key(name, pipeline)
    figures = {f"{key}_psnr": round(row["test_psnr"], 3), f"{key}_seconds": row["train_seconds"]}
    if name in DNERF:
        figures[f"{key}_ssim"] = round(row["test_ssim"], 4)
        if row["test_psnr_in_span"] is not None:
            figures[f"{key}_psnr_in_span"] = round(row["test_psnr_in_span"], 3)
        figures[f"{key}_num_gaussians"] = row["num_gaussians"]
        figures[f"{key}_val_psnr"] = round(row["val_psnr"], 3)
        figures[f"{key}_val_ssim"] = round(row["val_ssim"], 4)
    return figures


def run_scene(
    name: str,
    data: DataConfig,
    steps: int | None,
    device: torch.device,
    work: Path,
    pipeline: str,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Train scene `name` (read with `data`) for `steps` (None: the preset's) into `work/name`, the config changed
    by `overrides` (`NAME=VALUE`, as `splat4d reconstruct --set`); its row."""
    spec = PIPELINES[pipeline]
    cfg = spec.presets["fast"] if steps is None else spec.with_steps(spec.presets["fast"], steps)
    for assignment in overrides:
        cfg = with_override(cfg, assignment)
    cfg = dataclasses.replace(cfg, data=data, trainer=dataclasses.replace(cfg.trainer, progress=False))
    result = reconstruct(
        spec, pipeline, "fast", cfg, work / name, device, overwrite=True, console=Console(quiet=True)
    )
    m = result.metrics
    row = {
        "part": PART,
        "scene": scene_label(name),
        "pipeline": pipeline,
        "command": "python " + " ".join(sys.argv),
        "preset": "fast",
        "overrides": list(overrides),
        "steps": m["steps"],
        "train_seconds": round(m["train_seconds"], 1),
        "test_psnr": m["psnr"],
        "test_ssim": m["ssim"],
        "num_test_views": m["num_views"],
        "num_gaussians": m["num_gaussians"],
        "images": len(result.scene.cameras),
        "initial_points": 0 if result.scene.points is None else len(result.scene.points),
        "resolution": [
            result.scene.cameras.width // m["downscale"],
            result.scene.cameras.height // m["downscale"],
        ],
        "render_fps": round(_render_fps(result.pipeline, result.scene, device, m["downscale"]), 2),
    }
    if name in DNERF:
        row["schedule"] = (
            f"CPU-budget: the fast preset's schedule scaled to {m['steps']} steps (not the 30k-step default)"
        )
        row["background"] = "white"
        row["split_counts"] = result.scene.metadata.get("split_counts")
        row.update(_time_span_row(result.scene, m["views"]))
        row.update(_val_row(result.pipeline, result.scene, cfg, work / name, device))
    if pipeline == "long":
        row["hierarchy_depth"] = m["hierarchy_depth"]
        row["resident_gaussians_max"] = m["resident_gaussians_max"]
    if name in VIDEO:
        row["sfm_registered"] = len(result.scene.cameras)
        row["sfm_centre_error_m_median"] = round(
            _sfm_centre_error(result.scene, data.path.parent / f"{VIDEO[name]}-photos"), 3
        )
    print(row, flush=True)
    return row


def _time_order(scene) -> list[int]:
    """The views of a monocular sample in capture-time order: the frames of its video."""
    return sorted(range(len(scene.cameras)), key=lambda i: float(scene.cameras.times[i]))


def _sfm_centre_error(scene, sample: Path) -> float:
    """Median distance (metres) of the SfM camera centres from the sample's after a similarity alignment; frame k
    of the video is the sample's k-th view in time order."""
    truth = read_nerfstudio(sample)
    order = _time_order(truth)
    kept = [order[int(Path(p).stem.split("_")[1])] for p in scene.image_paths]
    return float(similarity_residuals(scene.cameras.centers, truth.cameras.centers[kept]).median())


def _data(name: str, recipe, work: Path, downscale: int = 1) -> DataConfig:
    """Where scene `name` is read from: the D-NeRF folder, its sample (written once), or that sample as N3DV
    videos."""
    if name in DNERF:
        return DataConfig(path=DNERF[name], downscale=downscale)
    base = N3DV.get(name) or VIDEO.get(name) or name
    photos = work / f"{base}-photos"
    if not photos.is_dir():
        write_sample_scene(dataclasses.replace(recipe, **SCENES[base]), photos, progress=False)
    if name in VIDEO:
        truth = read_nerfstudio(photos)
        video = work / f"{name}.mp4"
        frames = [iio.imread(truth.image_paths[i])[..., :3] for i in _time_order(truth)]
        encode_video(video, frames, fps=round(VIDEO_FPS))
        return DataConfig(path=video, video=VideoConfig(fps=VIDEO_FPS), downscale=downscale)
    if name not in N3DV:
        return DataConfig(path=photos, downscale=downscale)
    videos = write_n3dv_sample(photos, work / f"{name}-n3dv")
    test_camera = SCENES[base].get("test_camera", 0)
    return DataConfig(
        path=videos, multiview=MultiviewVideoConfig(test_cameras=(test_camera,)), downscale=downscale
    )


FIGURE_SUFFIXES = ("psnr", "seconds", "ssim", "psnr_in_span", "num_gaussians", "val_psnr", "val_ssim")
"""What follows a scene's key in its figures (`scene_figures`); a run replaces all of them for the scenes it ran."""
OBSOLETE_MISSING = ("dnerf_psnr",)
"""Missing-figure entries of earlier versions of this bench, written before a D-NeRF scene was in ../shared/data;
dropped from the results file when it is rewritten."""


def _merge_and_write(
    device: torch.device, scenes: list[str], pipeline: str, figures: dict, rows: list, missing: dict
) -> Path:
    """Write the figures and rows of `scenes`, keeping the results file's others (other scenes, the other
    pipeline, bench/hierarchy.py's)."""
    path = RESULTS / f"dynamic-{device_name(device)}.json"
    if path.is_file():
        old = json.loads(path.read_text())
        mine = {f"{figure_key(s, pipeline)}_{k}" for s in scenes for k in FIGURE_SUFFIXES}
        for key, value in old.get("figures", {}).items():
            if key not in mine:
                figures.setdefault(key, value)
        for key, why in old.get("missing", {}).items():
            if key not in mine and key not in OBSOLETE_MISSING:
                missing.setdefault(key, why)
        replaced = {scene_label(s) for s in scenes}
        keep = [r for r in old.get("rows", []) if r.get("part") != PART or r.get("scene") not in replaced
                or r.get("pipeline", "dynamic") != pipeline]  # fmt: skip
        rows[:0] = keep
    missing = {key: why for key, why in missing.items() if key not in figures}
    return write_results("dynamic", device, figures, rows, missing)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    every = [*SCENES, *N3DV, *VIDEO, *DNERF]
    parser.add_argument("--scenes", nargs="+", default=every, choices=every)
    parser.add_argument(
        "--steps", type=int, default=None,
        help=f"training steps (the fast preset's schedule scaled); default {STEPS}, {DNERF_STEPS} for D-NeRF",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline", default="dynamic", choices=["dynamic", "long"],
        help="long: the long-video pipeline (streamed through a temporal hierarchy); figures *_long_psnr",
    )  # fmt: skip
    parser.add_argument(
        "--downscale", type=int, default=1, help="train and score at 1/k of the resolution (quick checks)"
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="keep the trained scene folders (OUT/<scene>) and the samples here (default: a temporary folder)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    figures, rows, missing, ran = {}, [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if args.out is None else args.out
        work.mkdir(parents=True, exist_ok=True)
        recipe = load_recipe(REPO / "assets" / "samples" / "dynamic.json")
        for name in args.scenes:
            if name in DNERF and not DNERF[name].is_dir():
                key = figure_key(name, args.pipeline)
                missing.update({f"{key}_{k}": f"{DNERF[name]} not found" for k in FIGURE_SUFFIXES})
                continue
            steps = args.steps if args.steps is not None else default_steps(name)
            data = _data(name, recipe, work, args.downscale)
            row = run_scene(name, data, steps, device, work, args.pipeline)
            rows.append(row)
            figures.update(scene_figures(name, args.pipeline, row))
            ran.append(name)
    path = _merge_and_write(device, ran, args.pipeline, figures, rows, missing)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
