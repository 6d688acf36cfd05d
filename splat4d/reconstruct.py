"""A scene folder from start to finish: read the input, train, export the PLY, evaluate.

The folder `OUT` holds `config.yaml` (how it was made), `cameras.json`, `cache/` (SfM, undistorted images,
extracted frames), `checkpoints/`, `log.jsonl`, `point_cloud.ply` (3DGS layout), `metrics.json` and `eval/`
(photo | render | depth per test view). Running the same command again on the same folder resumes training from
the newest checkpoint; a folder that holds something else is never written into.

Under torchrun (`splat4d.distributed`) rank 0 alone reads the input and writes the folder: it hands the scene to the
other ranks, which train alongside it and write nothing.

Pipelines are passed in (`PipelineSpec`), so this module stays below `pipelines/` in the layering.
"""

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console

import splat4d
from splat4d.config_io import from_dict, to_dict, to_yaml
from splat4d.data import load_scene
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.blender import val_scene
from splat4d.data.dataset import ImageDataset, working_downscale
from splat4d.distributed import SINGLE, Ranks
from splat4d.errors import UsageError
from splat4d.evaluate import evaluate
from splat4d.gaussians import Gaussians4D
from splat4d.initialization import scene_extent
from splat4d.io.atomic import atomic_write_text
from splat4d.io.checkpoint import CheckpointError, latest_checkpoint, load_latest_checkpoint
from splat4d.io.ply import write_ply, write_ply_4d
from splat4d.pipeline import Pipeline, PipelineSpec, load_params
from splat4d.progress import make_console
from splat4d.scene_folder import (
    CONFIG_FILE,
    SceneFolderError,
    check_output_folder,
    claim,
    clear_outputs,
    is_empty,
    is_scene,
    read_record,
)
from splat4d.trainer import Trainer

_RESUME_IGNORED = {
    ("config", "trainer", "steps"),
    ("config", "trainer", "progress"),
    ("config", "trainer", "checkpoint_every"),
    ("config", "trainer", "dist_timeout"),
    ("config", "trainer", "batch_size"),  # the trainer checks views per step (ranks × batch size) itself
}
"""Settings that may change between a run and its resumption."""


def resolve_device(device: str) -> torch.device:
    """ "auto" → CUDA when this torch has it and a GPU is present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.version.cuda and torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not (torch.version.cuda and torch.cuda.is_available()):
        raise UsageError("--device cuda: this torch build has no CUDA or no GPU is visible; use --device cpu")
    return torch.device(device)


def _record(pipeline: str, preset: str, cfg: Any) -> dict[str, Any]:
    return {
        "splat4d_version": splat4d.__version__,
        "pipeline": pipeline,
        "preset": preset,
        "config": to_dict(cfg),
    }


def _differences(a: Any, b: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if (*prefix, key) not in _RESUME_IGNORED:
                out += _differences(a.get(key), b.get(key), (*prefix, key))
        return out
    return [] if a == b else [".".join(prefix)]


def check_run_settings(cfg: Any) -> None:
    """Refuse settings no run can use, naming the flag: before anything is read or written.

    Raises:
        UsageError: a count or size out of its range (steps, downscale, SfM and video settings).
    """
    checks = [
        ("--steps", cfg.trainer.steps, cfg.trainer.steps >= 1, "must be at least 1"),
        ("--data.downscale", cfg.data.downscale, cfg.data.downscale >= 1, "must be a positive integer"),
        ("--data.max-size", cfg.data.max_size, cfg.data.max_size in (None, 0) or cfg.data.max_size >= 16,
         "must be at least 16 pixels, or 0 for no limit"),
        ("--data.test-every", cfg.data.test_every, cfg.data.test_every >= 0, "must be 0 (no test split) or more"),
        ("--data.video.fps", cfg.data.video.fps, cfg.data.video.fps > 0, "must be positive"),
        ("--data.video.max-frames", cfg.data.video.max_frames, cfg.data.video.max_frames >= 1, "must be positive"),
        ("--data.sfm.max-num-features", cfg.data.sfm.max_num_features, cfg.data.sfm.max_num_features >= 1,
         "must be positive"),
        ("--data.sfm.max-image-size", cfg.data.sfm.max_image_size, cfg.data.sfm.max_image_size >= 1,
         "must be positive"),
        ("--data.sfm.min-registered-fraction", cfg.data.sfm.min_registered_fraction,
         0.0 <= cfg.data.sfm.min_registered_fraction <= 1.0, "must be in [0, 1]"),
        ("--data.multiview.frame-step", cfg.data.multiview.frame_step, cfg.data.multiview.frame_step >= 1,
         "must be a positive integer"),
        ("--trainer.checkpoint-every", cfg.trainer.checkpoint_every, cfg.trainer.checkpoint_every >= 1,
         "must be at least 1"),
        ("--trainer.batch-size", cfg.trainer.batch_size, cfg.trainer.batch_size >= 1, "must be at least 1"),
        ("--trainer.dist-timeout", cfg.trainer.dist_timeout, cfg.trainer.dist_timeout > 0, "must be positive"),
    ]  # fmt: skip
    for flag, value, ok, rule in checks:
        if not ok:
            raise UsageError(f"{flag}: {rule}, got {value}")
    views = getattr(cfg, "views", None)
    if views is not None and views < 1:
        raise UsageError(f"--views: must be at least 1, got {views}")


def check_output(
    out: Path, record: dict[str, Any], overwrite: bool, state_folders: tuple[str, ...] = ()
) -> bool:
    """Check, without writing anything, that `out` may hold this run (`splat4d.scene_folder`: absent, empty or a
    splat4d scene; a run there resumes only under the same settings). Returns True when a run is to be resumed: a
    checkpoint, or files in one of `state_folders` (a pipeline's own training state, `PipelineSpec`); never with
    `overwrite`.

    Raises:
        SceneFolderError: `out` is a file, a folder of something else, or holds a run with other settings.
    """
    out = Path(out)
    check_output_folder(out)
    resumable = has_training_state(out, state_folders)
    if overwrite:
        return False
    if is_scene(out) and resumable:
        stored = read_record(out)
        diffs = _differences(
            {k: v for k, v in stored.items() if k != "splat4d_version"},
            {k: v for k, v in record.items() if k != "splat4d_version"},
        )
        if diffs:
            raise SceneFolderError(
                f"{out}: holds a run with different settings ({', '.join(diffs[:4])}); "
                "rerun with the same settings to resume, or pass --overwrite to start over"
            )
    return resumable


def commit_output(
    out: Path, record: dict[str, Any], overwrite: bool, state_folders: tuple[str, ...] = ()
) -> None:
    """Take `out` for this run (after `check_output`, once the input has been read): mark it as a splat4d scene,
    with `overwrite` remove what an earlier run wrote there, and write the run's config."""
    out = Path(out)
    claim(out, splat4d.__version__)
    if overwrite:
        clear_outputs(out, state_folders)
    atomic_write_text(out / CONFIG_FILE, to_yaml(record))


def prepare_output(
    out: Path, record: dict[str, Any], overwrite: bool, state_folders: tuple[str, ...] = ()
) -> bool:
    """`check_output` then `commit_output` at once (for callers with no input to read in between)."""
    resumable = check_output(out, record, overwrite, state_folders)
    commit_output(out, record, overwrite, state_folders)
    return resumable


def has_training_state(out: Path, state_folders: tuple[str, ...] = ()) -> bool:
    """Whether `out` holds a run to resume: a checkpoint, or files in one of `state_folders`."""
    return latest_checkpoint(out / "checkpoints") is not None or any(
        (out / name).is_dir() and any((out / name).iterdir()) for name in state_folders
    )


def _remove_partial_output(out: Path, existed: bool) -> None:
    """Undo what a run that failed before it had anything to resume wrote into `out`: the whole folder when the
    run created it, else (it was empty) only its contents, so a folder the user made, a mount point or a link
    stays."""
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in Path(out).iterdir() if Path(out).is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def write_cameras_json(path: Path, scene: SceneData) -> None:
    """Every camera: image name, split, size, intrinsics and camera-to-world pose (OpenCV axes)."""
    train = set(scene.train_indices)
    cams = scene.cameras
    entries = [
        {
            "id": i,
            "image": scene.image_paths[i].name,
            "split": "train" if i in train else "test",
            "width": cams.widths[i],
            "height": cams.heights[i],
            "K": cams.Ks[i].tolist(),
            "T_world_cam": cams.T_world_cam[i].tolist(),
            **({"time": float(cams.times[i])} if cams.times is not None else {}),
        }
        for i in range(len(cams))
    ]
    doc = {"convention": "OpenCV camera axes (x right, y down, z forward); T_world_cam maps camera to world"}
    atomic_write_text(path, json.dumps({**doc, "cameras": entries}, indent=1) + "\n")


@dataclass
class Reconstruction:
    pipeline: Pipeline
    scene: SceneData
    metrics: dict[str, Any]


def reconstruct(
    spec: PipelineSpec,
    pipeline_name: str,
    preset: str,
    cfg: Any,
    out: Path,
    device: torch.device,
    overwrite: bool = False,
    callbacks: list | None = None,
    console: Console | None = None,
    on_built: Callable[[Pipeline, SceneData], None] | None = None,
    ranks: Ranks = SINGLE,
) -> Reconstruction:
    """Read `cfg.data`, train `spec`'s pipeline with `cfg`, write the scene folder `out`, evaluate it.

    `callbacks` run after every training step (`StepCallback`); `on_built(pipeline, scene)` runs once the data is
    read and the pipeline built, before training (the live viewer shows the scene from then on). Under torchrun
    (`ranks`), rank 0 reads the input, writes the folder and evaluates; the other ranks train alongside it and
    return their (identical) pipeline with empty metrics.

    Raises:
        UsageError: several ranks for a pipeline that trains its own way (the long pipeline).
    """
    console = console or make_console()
    if not ranks.is_main:
        console = Console(quiet=True)
    out = Path(out)
    if spec.train is not None and (on_built is not None or callbacks):
        raise SceneFolderError(
            f"pipeline {pipeline_name} trains its own way, which the live viewer cannot follow: drop --viewer and "
            f"run `splat4d view {out}` when it is done"
        )
    if spec.train is not None and ranks.distributed:
        raise UsageError(
            f"torchrun / --nproc: the {pipeline_name} pipeline streams its own training on one process; run it "
            "without torchrun and --nproc"
        )
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=Path(cfg.data.path).resolve()))

    def prepare() -> tuple[bool, SceneData, bool | None]:
        if not cfg.data.path.exists():
            raise DatasetError(f"{cfg.data.path}: does not exist")
        record = _record(pipeline_name, preset, cfg)
        # Nothing in `out` changes until the input has been read: a refused or interrupted run (a typo in the
        # input, Ctrl-C during SfM) leaves an existing scene as it was, even with --overwrite.
        resuming = check_output(out, record, overwrite, spec.state_folders)
        existed, was_empty = out.exists(), is_empty(out)
        try:
            scene = _load_scene(spec, cfg, out / "cache")
            commit_output(out, record, overwrite, spec.state_folders)
        except BaseException:
            if not existed or was_empty:  # the folder held nothing before: leave nothing half-made behind
                _remove_partial_output(out, existed)
            raise
        console.print(
            f"{cfg.data.path}: {len(scene.cameras)} images ({len(scene.train_indices)} train, "
            f"{len(scene.test_indices)} test) at {scene.cameras.describe_size()}, "
            f"{0 if scene.points is None else len(scene.points)} initial points"
        )
        write_cameras_json(out / "cameras.json", scene)
        # Whether this run made the folder (True), found it empty (False) or found a scene in it (None).
        made = None if existed and not was_empty else not existed
        return resuming, scene, made

    def train_and_evaluate() -> Reconstruction:
        if spec.train is not None:  # a method with its own training loop
            if not resuming:
                console.print(
                    f"training {pipeline_name} ({preset}) for {cfg.trainer.steps} steps on {device}"
                )
            pipeline, figures = spec.train(cfg, scene, out, device, console)
            metrics = evaluate_scene(pipeline, scene, cfg, out, device, extra=figures)
            return Reconstruction(pipeline, scene, metrics)
        train_data = ImageDataset(scene, scene.train_indices, run_downscale(scene, cfg), device)
        pipeline = spec.build(cfg, scene, device)
        if on_built is not None:
            on_built(pipeline, scene)
        trainer = Trainer(
            pipeline, cfg.strategy.build(), train_data, out, scene_extent(scene), cfg.trainer, cfg.optim,
            callbacks=callbacks, console=console, ranks=ranks,
        )  # fmt: skip
        if not resuming:
            on = f"{ranks.world_size} ranks ({device.type})" if ranks.distributed else str(device)
            console.print(
                f"training {pipeline_name} ({preset}) for {cfg.trainer.steps} steps on {on}, "
                f"at {train_data.cameras.describe_size()}"
            )
        result = trainer.train()
        if not ranks.is_main:
            return Reconstruction(pipeline, scene, {})
        if isinstance(pipeline.gaussians, Gaussians4D):  # the documented 4D extension of the 3DGS layout
            write_ply_4d(out / "point_cloud.ply", pipeline.gaussians)
        else:
            write_ply(out / "point_cloud.ply", pipeline.gaussians)
        metrics = evaluate_scene(
            pipeline, scene, cfg, out, device,
            extra={"steps": result.step, "train_seconds": result.seconds, "views_per_step": trainer.views_per_step,
                   "ranks": ranks.world_size},
        )  # fmt: skip
        return Reconstruction(pipeline, scene, metrics)

    resuming, scene, made = ranks.from_main(prepare, "waiting for rank 0 to read the input")
    try:
        return train_and_evaluate()
    except BaseException:
        # A run that stops before it has anything to resume (a failure while building or in its first steps)
        # leaves no half-made scene (a config.yaml and a cache) where there was none.
        if ranks.is_main and made is not None and not has_training_state(out, spec.state_folders):
            _remove_partial_output(out, existed=not made)
        raise


def _load_scene(spec: PipelineSpec, cfg: Any, workdir: Path) -> SceneData:
    """The scene as `spec`'s pipeline reads it (its own `load_scene` when it has one)."""
    if spec.load_scene is not None:
        return spec.load_scene(cfg, workdir)
    return load_scene(cfg.data, workdir)


EvalSplit = Literal["test", "val"]


def evaluate_scene(
    pipeline: Pipeline,
    scene: SceneData,
    cfg: Any,
    out: Path,
    device: torch.device,
    extra: dict | None = None,
    split: EvalSplit = "test",
) -> dict[str, Any]:
    """Evaluate on the test views (the training views when the scene has none, saying so), writing
    `out/metrics.json` and `out/eval/`; with split "val", on a Blender / D-NeRF scene's held-out val frames,
    writing `out/val/metrics.json` and `out/val/eval/`."""
    downscale = run_downscale(scene, cfg)
    if split == "val":
        scene, out, name = val_scene(scene), Path(out) / "val", "val"
    else:
        name = "test" if scene.test_indices else "train"
    indices = scene.test_indices or scene.train_indices
    data = ImageDataset(scene, indices, downscale, device)
    return evaluate(pipeline, data, out, extra={"split": name, "downscale": downscale, **(extra or {})})


def run_downscale(scene: SceneData, cfg: Any) -> int:
    """The downscale the run trains and evaluates `scene` at: `--data.downscale`, raised by `--data.max-size`
    (`splat4d.data.dataset.working_downscale`)."""
    return working_downscale(scene, cfg.data.downscale, cfg.data.max_size)


@dataclass
class TrainedScene:
    pipeline_name: str
    preset: str
    cfg: Any
    scene: SceneData
    pipeline: Pipeline
    step: int

    def refuse_streamed(self, out: Path, what: str) -> None:
        """Exit with a one-line error when the scene is streamed (the long pipeline's hierarchy): `what` (an
        export) needs every Gaussian at once, which a streamed scene never holds."""
        if getattr(self.pipeline, "stream", None) is not None:
            raise UsageError(
                f"{out}: a {self.pipeline_name} scene is a temporal hierarchy streamed from "
                f"{Path(out) / 'hierarchy'}; {what} needs the whole scene in memory (view it, or export video)"
            )


def load_trained(out: Path, pipelines: dict[str, PipelineSpec], device: torch.device) -> TrainedScene:
    """Rebuild the pipeline of scene folder `out` with the parameters of its newest checkpoint."""
    out = Path(out)
    config_path = out / CONFIG_FILE
    if out.is_dir() and not is_scene(out):
        raise SceneFolderError(
            f"{config_path}: not a splat4d run record; not a scene made by `splat4d reconstruct`"
        )
    record = read_record(out)
    name, preset = record.get("pipeline"), record.get("preset")
    if name not in pipelines:
        raise SceneFolderError(f"{config_path}: unknown pipeline {name!r}")
    spec = pipelines[name]
    try:
        cfg = from_dict(type(next(iter(spec.presets.values()))), record["config"], str(config_path))
    except (TypeError, ValueError) as exc:
        raise SceneFolderError(f"{config_path}: settings do not fit the {name} pipeline ({exc})") from None
    if spec.load is not None:
        scene = _load_scene(spec, cfg, out / "cache")
        pipeline, step = spec.load(cfg, scene, out, device)
        return TrainedScene(name, preset, cfg, scene, pipeline, step)
    found = load_latest_checkpoint(out / "checkpoints")
    if found is None:
        raise SceneFolderError(f"{out}: no checkpoint yet; train it with `splat4d reconstruct` first")
    path, payload = found
    scene = _load_scene(spec, cfg, out / "cache")
    pipeline = spec.build(cfg, scene, device)
    try:
        load_params(pipeline.gaussians.params, payload["params"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: does not fit the scene's {name} pipeline ({exc})") from exc
    return TrainedScene(name, preset, cfg, scene, pipeline, int(payload["step"]))
