"""`Pipeline`: what the trainer, evaluation and the viewer talk to, whatever the reconstruction method.

A pipeline owns the scene model (its `gaussians`, whose `params` the optimisers and densification strategy edit)
and knows how to compute one training step's loss and how to render a view. Everything else (batches, optimisers,
learning rates, densification hooks, checkpoints, progress, logs) is the trainer's.
"""

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.dataset import Batch
from splat4d.render import RenderOutput, RenderSettings


class StepResult(NamedTuple):
    loss: Tensor
    """Scalar loss to back-propagate."""
    logs: dict[str, float]
    """Named scalars for the log and progress bar (e.g. l1, dssim, psnr)."""
    info: dict[str, Any]
    """The render's `info` (means2d in the graph, radii, ...), for the densification strategy."""


@runtime_checkable
class Pipeline(Protocol):
    gaussians: torch.nn.Module
    """The scene model; `gaussians.params` is a ParameterDict of per-Gaussian tensors."""

    def train_step(self, batch: Batch, step: int) -> StepResult: ...

    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput: ...

    def settings(self) -> RenderSettings:
        """How this pipeline's scenes are rendered for viewing (background, antialiasing, ...), so that other code
        (the viewer rendering a snapshot of `gaussians`) renders them the same way as `render_view`."""
        ...

    # Optional: `bind_views(dataset: ImageDataset) -> None`. When a pipeline defines it, the trainer calls it with
    # the dataset it draws batches from, before the first step and whenever that dataset changes (coarse-to-fine),
    # so that losses comparing a batch with other training images (multi-view consistency) can read them.


def load_params(params: torch.nn.ParameterDict, tensors: dict[str, Tensor]) -> None:
    """Replace every parameter with the stored tensor (the number of Gaussians may differ from the current one)."""
    if set(params.keys()) != set(tensors.keys()):
        raise ValueError(
            f"stored parameters {sorted(tensors)} do not match the model's {sorted(params.keys())}"
        )
    device = next(iter(params.values())).device
    for name, value in tensors.items():
        params[name] = torch.nn.Parameter(value.to(device))


class PipelineSpec(NamedTuple):
    """One entry of the `pipelines.PIPELINES` registry."""

    description: str
    presets: dict[str, Any]
    """Preset name → full config (a dataclass with at least `data`, `trainer`, `optim` and `strategy` fields)."""
    build: Any
    """`build(cfg, scene: SceneData, device) -> Pipeline`."""
    with_steps: Any
    """`with_steps(cfg, steps) -> cfg`: the config with its schedule stretched or squeezed to `steps`."""
    load_scene: Any = None
    """Optional `load_scene(cfg, workdir) -> SceneData`, used instead of `splat4d.data.load_scene(cfg.data,
    workdir)` by both `reconstruct` and `load_trained` (so a scene folder is read back as it was trained): for a
    method that refuses some inputs before they are read, or trains on a subset of the views."""
    train: Any = None
    """Optional `train(cfg, scene, out, device, console) -> (pipeline, figures)`, used by `reconstruct` instead of
    `build` and the shared trainer, for a method that trains its own way (the long-video pipeline streams a
    temporal hierarchy); `figures` (steps, train_seconds, ...) go into metrics.json."""
    load: Any = None
    """With `train`: `load(cfg, scene, out, device) -> (pipeline, step)` reads a trained scene folder back, used by
    `load_trained` instead of `build` and the newest checkpoint."""
    state_folders: tuple[str, ...] = ()
    """With `train`: the scene folder's subfolders that its training writes (its resumable state, the trained
    scene). A run found in them is resumed only under the same settings, as a checkpoint is, and `--overwrite`
    removes them."""
