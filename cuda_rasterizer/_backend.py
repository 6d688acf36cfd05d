"""Loading of the compiled kernels: the only module that builds or imports the C++/CUDA extension.

The extension is JIT-built with `torch.utils.cpp_extension.load` on the first op call (never at import time) and
cached by torch under `$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions`), so later processes load it in
about a second. CUDA sources are compiled in only when torch itself has CUDA and a GPU is visible. A build says so
on stderr, in one line before and one after, since it pauses the first render for a while.
"""

import functools
import os
import shutil
import sys
import time
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


BUILD_SECONDS = {False: 20, True: 60}
"""Rough JIT build time of the CPU-only and of the CPU+CUDA extension, for the line shown while it builds. Seen: the
CPU build in 11 s on 2 idle cores (ninja's log), the CUDA one in 19 s on 16 cores for one architecture
(`TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=8`); more cores' worth of other work, or every architecture, take longer."""


class ExtensionUnavailableError(RuntimeError):
    """The compiled kernels could not be built or loaded."""


def has_cuda() -> bool:
    """Whether torch was built with CUDA and a GPU is visible."""
    return torch.version.cuda is not None and torch.cuda.is_available()


def _extension_name(with_cuda: bool) -> str:
    return "splat4d_raster_cuda" if with_cuda else "splat4d_raster_cpu"


def needs_build(with_cuda: bool) -> bool:
    """Whether loading the extension will compile it: torch's cached library is missing or older than one of the
    sources or headers in csrc/ that it is built from (the .cu files only with CUDA). torch also rebuilds when the
    compiler flags change; that is not foreseen."""
    from torch.utils import cpp_extension

    name = _extension_name(with_cuda)
    try:
        folder = Path(cpp_extension._get_build_directory(name, verbose=False))
    except (AttributeError, OSError, RuntimeError):  # a private torch helper: may move
        return True
    library = folder / f"{name}{getattr(cpp_extension, 'LIB_EXT', '.so')}"
    if not library.is_file():
        return True
    built = library.stat().st_mtime
    inputs = [p for p in CSRC.iterdir() if p.is_file() and (with_cuda or p.suffix != ".cu")]
    return any(source.stat().st_mtime > built for source in inputs)


def build_message(with_cuda: bool) -> str:
    """The line shown while the kernels compile."""
    kind = "C++/CUDA" if with_cuda else "C++"
    return (
        f"cuda_rasterizer: compiling the {kind} rasterizer kernels (first use, about {BUILD_SECONDS[with_cuda]} s; "
        "cached for later runs) ..."
    )


def _cpu_vector_flags() -> list[str]:
    """AVX2/FMA code generation where this CPU has it, so the CPU kernel's 8-lane loops become single instructions.

    torch reports the widest vector ISA it detected at runtime; a CPU without AVX2 gets the portable build (SSE2 on
    x86-64, NEON on ARM by default), which is correct, only slower. `-fno-trapping-math` (always on) is what lets GCC
    vectorise the branch-free selects in those loops.
    """
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")()
    return ["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else []


@functools.cache
def _load(with_cuda: bool) -> None:
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise ExtensionUnavailableError(
            "no C++ compiler found (install g++ or set $CXX) to build the cpu backend of cuda_rasterizer"
        )
    sources = [str(CSRC / s) for s in CPU_SOURCES]
    cflags = ["-O3", "-fopenmp", "-std=c++17", "-fno-trapping-math", *_cpu_vector_flags()]
    cuda_flags: list[str] = []
    if with_cuda:
        sources += [str(CSRC / s) for s in CUDA_SOURCES]
        cflags.append("-DWITH_CUDA")
        cuda_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-DWITH_CUDA", "--use_fast_math"]
    building = needs_build(with_cuda)
    if building:
        print(build_message(with_cuda), file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        cpp_extension.load(
            name=_extension_name(with_cuda),
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
    if building:
        print(
            f"cuda_rasterizer: kernels compiled in {time.monotonic() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )


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
