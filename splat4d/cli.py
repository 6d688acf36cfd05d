"""The `splat4d` command: each subcommand is a dataclass with a `main()`.

This is the composition root: the one core module allowed to import `pipelines` and `viewer`, and only inside
subcommands' `main()`.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import tyro

from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, load_recipe, write_sample_scene
from splat4d.export.hierarchy import HierarchyExport
from splat4d.export.mesh import MeshExport
from splat4d.export.splats import PlyExport
from splat4d.export.video import VideoExport
from splat4d.mesh_metrics import EvalMesh

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "static.json"


@dataclass
class Sample:
    """Generate a procedural sample scene (ray-traced analytic shapes with photo textures) as a nerfstudio dataset."""

    out: tyro.conf.Positional[Path]
    """Output folder (must be empty or absent unless --overwrite)."""
    dynamic: bool = False
    """Moving objects; each frame carries a time."""
    views: int | None = None
    """Number of views (static / monocular) — overrides the recipe."""
    recipe: Path | None = None
    """JSON recipe (see assets/samples/); the defaults of SampleConfig when absent."""
    config: Annotated[SampleConfig, tyro.conf.arg(name="cfg")] = field(default_factory=SampleConfig)
    """Fine-grained settings, used when no recipe is given."""
    overwrite: bool = False

    def main(self) -> None:
        cfg = load_recipe(self.recipe) if self.recipe is not None else self.config
        if self.dynamic:
            cfg.dynamic = True
        if self.views is not None:
            cfg.n_views = self.views
        path = write_sample_scene(cfg, self.out, overwrite=self.overwrite)
        print(f"wrote {path}")


@dataclass
class Demo:
    """Generate the bundled sample scene and reconstruct it on this machine (what `make demo` runs)."""

    out: Path = Path("out/demo")
    """Output folder: the photos go to OUT/photos, the reconstructed scene to OUT/scene."""
    recipe: Path = DEFAULT_RECIPE
    preset: Literal["fast", "default", "quality"] = "fast"
    """Training preset (fast: a few minutes on a 2-core CPU)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def main(self) -> None:
        photos = self.out / "photos"
        print(f"generating the sample scene in {photos} ...")
        write_sample_scene(load_recipe(self.recipe), photos, overwrite=True)
        scene = self.out / "scene"
        Reconstruct(input=photos, out=scene, preset=self.preset, device=self.device, overwrite=True).main()
        print(
            f"to look at it: the held-out views side by side (photo | render | depth) are in {scene / 'eval'}/; "
            f"{scene / 'point_cloud.ply'} opens in 3DGS viewers such as SuperSplat"
        )


def _sparse_priors() -> type:
    """The sparse pipeline's `PriorsConfig`, imported when the command line is built (this module imports
    `pipelines` only inside functions)."""
    from pipelines.sparse_view.priors import PriorsConfig

    return PriorsConfig


@dataclass
class Reconstruct:
    """Photos, a video or a posed dataset → a trained, evaluated Gaussian-splat scene in OUT.

    INPUT may be a folder of photos or a video (posed with pycolmap, cached in OUT/cache), a COLMAP workspace, a
    nerfstudio transforms.json folder or a Blender/NeRF-synthetic folder; the format is detected (or set with
    --data.format). OUT receives config.yaml, cameras.json, checkpoints/, point_cloud.ply (3DGS layout),
    metrics.json and eval/. Rerunning the same command resumes from the newest checkpoint (Ctrl-C saves one).
    """

    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT")]
    """Photos folder, video file, or dataset folder."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("scene")
    """Output scene folder."""
    pipeline: Literal["static", "dynamic", "long", "sparse"] = "static"
    """Reconstruction method: static (3DGS), dynamic (4D Gaussians; every image needs a capture time), long (the
    dynamic model trained streamed through a temporal hierarchy, memory flat in the video's length; OUT gets
    store/ and hierarchy/ instead of checkpoints/ and point_cloud.ply) or sparse (3 to 9 posed photos;
    co-regularised fields, optional learned priors: --priors.*)."""
    preset: Literal["fast", "mesh", "default", "quality"] = "default"
    """fast: minutes on a CPU (static 1.2k steps, dynamic 2k, sparse 1k); mesh (static only): fast plus
    depth-normal consistency and flattening, for `splat4d export mesh`; default: 30k steps (sparse 10k); quality
    (static only): 30k steps with 3DGS-as-MCMC."""
    steps: int | None = None
    """Override the preset's number of steps (its schedules are scaled to match)."""
    views: int | None = None
    """Sparse pipeline: train on this many of the dataset's training views, picked by farthest-point sampling of
    the camera centres from the first one (LLFF datasets: evenly spaced, the published protocol; see
    `--set view_rule=...`), and evaluate on its held-out views."""
    priors: Annotated[Any, tyro.conf.arg(constructor_factory=_sparse_priors)] = None
    """Sparse pipeline: learned priors (`pip install 'splat4d[gen]'`; off unless a model is named), e.g.
    --priors.depth.model depth-anything/Depth-Anything-V2-Small-hf --priors.diffusion.model
    stabilityai/stable-diffusion-2-1-base; they replace the preset's (which have none)."""
    strategy: Literal["preset", "default", "mcmc"] = "preset"
    """Densification: the preset's, 3DGS adaptive density control, or 3DGS-as-MCMC."""
    set: tuple[str, ...] = ()
    """Override any setting of the pipeline's config (after the preset and the flags above), as NAME=VALUE with
    dotted names as in OUT/config.yaml, e.g. `--set co_reg.pseudo_weight=2 drop_rate=0.3 init.random_points=5000`
    (sparse) or `--set temporal_opacity_weight=0` (dynamic); values are read as YAML (0.3, true, null, [1, 1, 1])."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    """How the input is read (path comes from INPUT)."""
    overwrite: bool = False
    """Start over in an OUT that already holds a run (its checkpoints and results are deleted)."""
    progress: bool = True
    """Show progress bars."""
    viewer: bool = False
    """Watch training live in the browser (see `splat4d view --help`); pause/resume it from there."""
    viewer_host: str = "127.0.0.1"
    """Address the live viewer listens on (only this machine by default)."""
    viewer_port: int = 8080
    viewer_wait: bool = True
    """With --viewer: keep the viewer open after training until Ctrl-C."""
    nproc: int = 1
    """Train data-parallel on this many processes of this machine (one GPU each with CUDA), started through
    torchrun's launcher: the same as `torchrun --standalone --nproc-per-node N -m splat4d reconstruct ...`. For
    several machines run torchrun on each (see the README). A run resumes with the same ranks × batch size."""
    batch_size: int | None = None
    """Views per step on each process, their gradients averaged (default: the preset's, 1)."""

    def main(self) -> None:
        import dataclasses

        from pipelines import PIPELINES
        from splat4d.config_io import with_override
        from splat4d.distributed import launch, session, torchrun_env
        from splat4d.errors import EXIT_INTERRUPTED, UsageError
        from splat4d.reconstruct import check_run_settings, reconstruct, resolve_device
        from splat4d.strategy import STRATEGIES
        from splat4d.trainer import TrainingInterrupted

        spec = PIPELINES[self.pipeline]
        if self.preset not in spec.presets:
            raise UsageError(
                f"--preset {self.preset}: the {self.pipeline} pipeline has no such preset "
                f"(it has {', '.join(spec.presets)})"
            )
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"--steps: must be at least 1, got {self.steps}")
        cfg = spec.presets[self.preset]
        if self.strategy != "preset":
            if self.pipeline != "static":
                raise UsageError("--strategy: applies to the static pipeline only")
            cfg = dataclasses.replace(cfg, strategy=STRATEGIES[self.strategy])
        if self.steps is not None:
            cfg = spec.with_steps(cfg, self.steps)
        if self.views is not None:
            if self.pipeline != "sparse":
                raise UsageError("--views: applies to the sparse pipeline only")
            cfg = dataclasses.replace(cfg, views=self.views)
        if self.priors is not None:
            if self.pipeline == "sparse":
                cfg = dataclasses.replace(cfg, priors=self.priors)
            elif self.priors.enabled:
                raise UsageError("--priors: applies to the sparse pipeline only")
        trainer = dataclasses.replace(cfg.trainer, progress=self.progress)
        if self.batch_size is not None:
            if self.batch_size < 1:
                raise UsageError(f"--batch-size: must be at least 1, got {self.batch_size}")
            trainer = dataclasses.replace(trainer, batch_size=self.batch_size)
        data = dataclasses.replace(self.data, path=self.input)
        if data.max_size is None:  # not given: the preset's limit (fast: 512 px), where it has one
            data = dataclasses.replace(data, max_size=cfg.data.max_size)
        cfg = dataclasses.replace(cfg, data=data, trainer=trainer)
        for assignment in self.set:
            cfg = with_override(cfg, assignment)
        check_run_settings(cfg)
        device = resolve_device(self.device)
        env = torchrun_env()
        if self.nproc < 1:
            raise UsageError(f"--nproc: must be at least 1, got {self.nproc}")
        if spec.train is not None and (self.nproc > 1 or (env is not None and env.world_size > 1)):
            raise UsageError(
                f"--nproc / torchrun: the {self.pipeline} pipeline streams its own training on one process; run it "
                "without them"
            )
        if self.nproc > 1 and env is None:  # start the ranks, each of which runs this same command line
            if sys.argv[1:2] != ["reconstruct"]:
                raise UsageError("--nproc: applies on the command line (`splat4d reconstruct ... --nproc N`)")
            status = launch(self.nproc, sys.argv[1:])
            if status:
                raise SystemExit(status)
            return
        if env is not None and self.nproc > 1 and self.nproc != env.local_world_size:
            raise UsageError(
                f"--nproc {self.nproc}: torchrun started {env.local_world_size} processes on this machine; "
                "drop --nproc when starting with torchrun"
            )
        with session(device, cfg.trainer.dist_timeout) as (ranks, device):
            live = None
            if self.viewer and ranks.is_main:  # the live viewer follows rank 0
                from viewer import LiveViewer, ViewerConfig

                live = LiveViewer(
                    ViewerConfig(host=self.viewer_host, port=self.viewer_port), device, cfg.trainer.steps
                )
                print(f"live viewer: {live.app.url}")
            try:
                result = reconstruct(
                    spec,
                    self.pipeline,
                    self.preset,
                    cfg,
                    self.out,
                    device,
                    self.overwrite,
                    callbacks=None if live is None else [live.training],
                    on_built=None if live is None else live.on_built,
                    ranks=ranks,
                )
            except TrainingInterrupted:
                if live is not None:
                    live.close()
                if not ranks.is_main:  # rank 0 says where the checkpoint is
                    raise SystemExit(EXIT_INTERRUPTED) from None
                raise
            except BaseException:
                if live is not None:
                    live.close()
                raise
        if not ranks.is_main:  # rank 0 reports
            return
        m = result.metrics
        print(
            f"{self.out}: {m['num_gaussians']:,} Gaussians; {m['split']} PSNR {m['psnr']:.2f} dB, "
            f"SSIM {m['ssim']:.3f} over {m['num_views']} views\n"
            f"  point cloud  {self.out / 'point_cloud.ply'}\n  metrics      {self.out / 'metrics.json'}\n"
            f"  renders      {self.out / 'eval'}/"
        )
        if live is not None:
            live.finish(m["steps"], result.pipeline)
            if self.viewer_wait:
                print(f"training done; the viewer stays at {live.app.url} until Ctrl-C")
                live.app.wait()
            else:
                live.close()


@dataclass
class View:
    """Look at a scene in the browser: a scene folder made by `splat4d reconstruct`, or a 3DGS / 4D PLY file.

    Opens a viser web app at http://localhost:PORT. Server-side rendering (splat4d's rasterizer on this machine's
    CPU or GPU, sharp while the camera is still, coarser while it moves) in RGB, depth or alpha, or viser's WebGL
    splats in the browser; a time slider with play/pause and frame stepping for 4D scenes; the training cameras
    as frustums (click one to look through it). Several browser tabs can watch at once.
    """

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder, a hierarchy folder (`splat4d export hierarchy`, streamed), or a .ply file."""
    host: str = "127.0.0.1"
    """Address to listen on. Only this machine can connect by default; 0.0.0.0 opens it to the network."""
    port: int = 8080
    """Port (the next free one is used when it is taken)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    render_path: Literal["server", "browser"] = "server"
    """Initial render path (switchable in the GUI)."""
    max_resolution: int = 1024
    """Longer side of the frames rendered when the camera is still."""

    def main(self) -> None:
        from pipelines import PIPELINES
        from splat4d.reconstruct import resolve_device
        from viewer import SceneSource, ViewerApp, ViewerConfig, load_view_scene

        device = resolve_device(self.device)
        scene = load_view_scene(self.scene, PIPELINES, device)
        cfg = ViewerConfig(
            host=self.host, port=self.port, render_path=self.render_path, max_resolution=self.max_resolution
        )
        app = ViewerApp(SceneSource(scene), cfg, device)
        print(f"{self.scene}: {scene.num_gaussians:,} Gaussians; viewer at {app.url} (Ctrl-C to stop)")
        app.wait()


@dataclass
class Eval:
    """Render the test views of a scene made by `splat4d reconstruct`; write OUT/metrics.json (PSNR, SSIM; LPIPS
    is reported as unavailable: its backbone weights are never downloaded) and OUT/eval/*.png (photo | render |
    depth). With --split val, a Blender / D-NeRF scene's val frames instead, into OUT/val/."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder written by `splat4d reconstruct`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    split: Literal["test", "val"] = "test"
    """test: the dataset's held-out test views. val: a Blender / D-NeRF dataset's `transforms_val.json` frames
    (held out of training unless --data.train-on-val), written to SCENE/val/. Deformable-GS reports that D-NeRF's
    lego test frames disagree with its training frames on the bucket's angle and scores that scene on val."""

    def main(self) -> None:
        from pipelines import PIPELINES
        from splat4d.reconstruct import evaluate_scene, load_trained, resolve_device

        device = resolve_device(self.device)
        trained = load_trained(self.scene, PIPELINES, device)
        m = evaluate_scene(
            trained.pipeline,
            trained.scene,
            trained.cfg,
            self.scene,
            device,
            {"steps": trained.step},
            self.split,
        )
        print(
            f"{self.scene}: {m['split']} PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} over {m['num_views']} views"
        )


def run_reporting_errors(fn: Callable[[], Any]) -> Any:
    """Run a command under the error policy (`splat4d.errors`): expected failures end in one line `error: ...` on
    stderr and exit status 2, interrupted runs in one line and 130; bugs keep their traceback. With
    SPLAT4D_DEBUG=1 expected failures show their traceback too."""
    from splat4d.errors import EXIT_INTERRUPTED, EXIT_USER, UserError, describe_os_error, one_line
    from splat4d.trainer import TrainingInterrupted

    debug = os.environ.get("SPLAT4D_DEBUG", "") not in ("", "0")
    try:
        return fn()
    except UserError as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_USER)
    except TrainingInterrupted as exc:
        _fail(f"{exc}; rerun the same command to resume", EXIT_INTERRUPTED, prefix="\n")
    except KeyboardInterrupt as exc:
        _fail(one_line(str(exc)) or "interrupted", EXIT_INTERRUPTED, prefix="\n")
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None or debug:
            raise
        _fail(message, EXIT_USER)


def _fail(message: str, status: int, prefix: str = "") -> NoReturn:
    label = "error: " if status != 130 else ""
    print(f"{prefix}{label}{message}", file=sys.stderr)
    raise SystemExit(status) from None


def _with_pipelines(command: type) -> type:
    """`command` whose `main()` is handed the pipeline registry, imported here (the composition root) so that the
    export modules in the core never import `pipelines`."""

    def main(self):
        from pipelines import PIPELINES

        written = command.main(self, PIPELINES)
        for path in written if isinstance(written, list) else [written]:
            print(f"wrote {path}")
        return written

    return dataclass(type(command.__name__, (command,), {"main": main, "__doc__": command.__doc__}))


Export = (
    Annotated[_with_pipelines(PlyExport), tyro.conf.subcommand("ply")]
    | Annotated[_with_pipelines(VideoExport), tyro.conf.subcommand("video")]
    | Annotated[_with_pipelines(MeshExport), tyro.conf.subcommand("mesh")]
    | Annotated[_with_pipelines(HierarchyExport), tyro.conf.subcommand("hierarchy")]
)
"""`splat4d export ply|video|mesh|hierarchy SCENE`."""


@dataclass
class ExportCommand:
    """Write a scene as splat files (ply), a video along a camera path (video), a triangle mesh (mesh) or a
    temporal hierarchy for streaming (hierarchy)."""

    what: Annotated[Export, tyro.conf.OmitSubcommandPrefixes, tyro.conf.OmitArgPrefixes]

    def main(self) -> Any:
        return self.what.main()


COMMANDS = {
    "sample": Sample,
    "demo": Demo,
    "reconstruct": Reconstruct,
    "eval": Eval,
    "view": View,
    "export": ExportCommand,
    "eval-mesh": EvalMesh,
}


def entrypoint() -> None:
    """`splat4d`: parse the command line (tyro: bad flags exit with status 2), then run the command under the error
    policy, SIGTERM stopping it as Ctrl-C does."""
    from splat4d.interrupts import terminate_as_interrupt

    command = tyro.extras.subcommand_cli_from_dict(
        COMMANDS, description="splat4d: photos and videos to Gaussian splats."
    )
    with terminate_as_interrupt():
        run_reporting_errors(command.main)
