"""Loading of the compiled kernels: the only module that builds or imports the C++/CUDA extension.

The extension is JIT-built with `torch.utils.cpp_extension.load` on the first op call (never at import time) and
cached by torch under `$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions`), so later processes load it in
about a second. CUDA sources are compiled in only when torch itself has CUDA and a GPU is visible.
"""

import functools
import os
import shutil
import warnings
from pathlib import Path
from typing import Literal

import torch

Backend = Literal["reference", "cpu", "cuda"]

CSRC = Path(__file__).parent / "csrc"
CPU_SOURCES = (
    "ext.cpp",
    "project_cpu.cpp",
    "sh_cpu.cpp",
    "intersect_cpu.cpp",
    "rasterize_cpu.cpp",
    "slice4d_cpu.cpp",
)
CUDA_SOURCES = ("project_cuda.cu", "sh_cuda.cu", "intersect_cuda.cu", "rasterize_cuda.cu", "slice4d_cuda.cu")


class ExtensionUnavailableError(RuntimeError):
    """The compiled kernels could not be built or loaded."""


def has_cuda() -> bool:
    """Whether torch was built with CUDA and a GPU is visible."""
    return torch.version.cuda is not None and torch.cuda.is_available()


@functools.cache
def _load(with_cuda: bool) -> None:
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise ExtensionUnavailableError(
            "no C++ compiler found (install g++ or set $CXX) to build the cpu backend of cuda_rasterizer"
        )
    sources = [str(CSRC / s) for s in CPU_SOURCES]
    cflags = ["-O3", "-fopenmp", "-std=c++17"]
    cuda_flags: list[str] = []
    if with_cuda:
        sources += [str(CSRC / s) for s in CUDA_SOURCES]
        cflags.append("-DWITH_CUDA")
        cuda_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-DWITH_CUDA", "--use_fast_math"]
    try:
        cpp_extension.load(
            name="splat4d_raster_cuda" if with_cuda else "splat4d_raster_cpu",
            sources=sources,
            extra_cflags=cflags,
            extra_cuda_cflags=cuda_flags,
            extra_ldflags=["-fopenmp"],
            extra_include_paths=[str(CSRC)],
            is_python_module=False,
            verbose=os.environ.get("SPLAT4D_VERBOSE_BUILD") == "1",
        )
    except (RuntimeError, OSError, ImportError) as exc:  # compiler errors surface as RuntimeError
        raise ExtensionUnavailableError(f"building the cuda_rasterizer extension failed: {exc}") from exc


def ops() -> "torch._ops._OpNamespace":
    """The compiled op namespace `torch.ops.splat4d_raster`, building the extension on first use."""
    _load(has_cuda())
    return torch.ops.splat4d_raster


@functools.cache
def _warn_fallback(reason: str) -> None:
    warnings.warn(
        f"cuda_rasterizer: falling back to the slow reference backend ({reason})",
        RuntimeWarning,
        stacklevel=3,
    )


def resolve(backend: Backend | None, device: torch.device) -> Backend:
    """Pick the backend for tensors on `device`: the kernels for that device unless one is forced.

    If the CPU kernels cannot be built, warns once and returns "reference".
    """
    if backend is None:
        backend = "cuda" if device.type == "cuda" else "cpu"
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {device}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {device}")
    if backend in ("cpu", "cuda"):
        try:
            ops()
        except ExtensionUnavailableError as exc:
            if backend == "cuda":
                raise
            _warn_fallback(str(exc).splitlines()[0])
            return "reference"
    return backend
