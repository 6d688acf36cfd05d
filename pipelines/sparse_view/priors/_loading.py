"""How the priors' models are found and placed: the optional dependencies (imported on first use, with one line
saying how to install them when missing), local-only loading, and the device's dtype."""

import importlib
import os
from pathlib import Path
from types import ModuleType

import torch

INSTALL = "pip install 'splat4d[gen]'"
"""The extra that brings diffusers, transformers and safetensors."""


def import_extra(module: str) -> ModuleType:
    """`module` (diffusers or transformers), or an ImportError whose one line says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the sparse pipeline's learned priors need {module}: {INSTALL}") from None


def local_files_only(name_or_path: str) -> bool:
    """Whether to load `name_or_path` without asking the Hub: it is a local folder, or HF_HUB_OFFLINE is set."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return offline or Path(name_or_path).expanduser().is_dir()


def model_dtype(device: torch.device, half_precision: bool) -> torch.dtype:
    """float16 on a GPU when asked, float32 otherwise (CPU kernels of half-precision convolutions are slow or
    missing)."""
    return torch.float16 if half_precision and device.type == "cuda" else torch.float32
