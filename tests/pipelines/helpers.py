"""Helpers for the pipeline tests: a short dynamic-pipeline training on any input folder."""

import dataclasses
from pathlib import Path

import torch

from pipelines import PIPELINES
from pipelines.dynamic.config import PRESETS, with_steps
from splat4d.data.config import DataConfig
from splat4d.reconstruct import Reconstruction, reconstruct


def train_dynamic(data: Path | DataConfig, out: Path, steps: int, random_points: int) -> Reconstruction:
    """The dynamic pipeline's `fast` preset squeezed to `steps`, on the CPU, without progress bars, on the input
    folder or file `data` (or that data configuration)."""
    cfg = with_steps(PRESETS["fast"], steps)
    cfg = dataclasses.replace(
        cfg,
        data=data if isinstance(data, DataConfig) else DataConfig(path=data),
        trainer=dataclasses.replace(cfg.trainer, progress=False),
        init=dataclasses.replace(cfg.init, random_points=random_points),
    )
    return reconstruct(PIPELINES["dynamic"], "dynamic", "fast", cfg, out, torch.device("cpu"))
