#!/usr/bin/env bash
# Compile-only check of the CUDA kernels (`make check-cuda`): runs `nvcc -c` on every cuda_rasterizer/csrc/*.cu for
# sm_80 and sm_90, with host warnings on, and fails on the first error. Needs no GPU and no CUDA build of torch:
# the .cu files include no torch headers (see ECOSYSTEM.md section 1). Exits 0 with a notice when nvcc is absent.
#
# Usage: scripts/check_cuda.sh [file.cu ...]      (default: all of cuda_rasterizer/csrc/*.cu)
# Environment: CUDA_HOME (where to look for bin/nvcc first), NVCC_EXTRA_FLAGS (appended, e.g. "-Xptxas -v" to
# print register and shared-memory use, or "-Werror all-warnings"), CHECK_CUDA_JOBS (files compiled in parallel,
# default: the number of CPUs).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
csrc="$repo_root/cuda_rasterizer/csrc"

nvcc=""
for candidate in "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc "$(command -v nvcc || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    nvcc="$candidate"
    break
  fi
done
if [[ -z "$nvcc" ]]; then
  echo "nvcc not found: skipping CUDA compile check (looked in \$CUDA_HOME/bin, /usr/local/cuda/bin and PATH)"
  exit 0
fi

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  shopt -s nullglob
  files=("$csrc"/*.cu)
  shopt -u nullglob
fi
if [[ ${#files[@]} -eq 0 ]]; then
  echo "error: no .cu files under $csrc" >&2
  exit 1
fi

flags=(-c -std=c++17 -O3 --expt-relaxed-constexpr
       -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
       -Xcompiler -Wall -I "$csrc")
# shellcheck disable=SC2206  # NVCC_EXTRA_FLAGS is meant to be word-split
extra=(${NVCC_EXTRA_FLAGS:-})
jobs="${CHECK_CUDA_JOBS:-$(nproc 2>/dev/null || echo 2)}"

echo "nvcc: $nvcc ($("$nvcc" --version | grep -o 'release [0-9.]*' || echo 'unknown version'))"
echo "flags: ${flags[*]} ${extra[*]}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Compile one file into $tmp; record its log, exit status and wall time.
compile_one() {
  local src="$1" name
  name="$(basename "$src" .cu)"
  local start end rc=0
  start=$(date +%s.%N)
  "$nvcc" "${flags[@]}" "${extra[@]}" "$src" -o "$tmp/$name.o" >"$tmp/$name.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  echo "$rc" >"$tmp/$name.rc"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }' >"$tmp/$name.time"
}

total_start=$(date +%s.%N)
running=0
for src in "${files[@]}"; do
  compile_one "$src" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
total_end=$(date +%s.%N)

failed=0
for src in "${files[@]}"; do
  name="$(basename "$src" .cu)"
  rc="$(cat "$tmp/$name.rc" 2>/dev/null || echo 1)"
  if [[ "$rc" == 0 ]]; then
    printf '  ok    %-22s %6ss\n' "$(basename "$src")" "$(cat "$tmp/$name.time")"
    # Warnings (and -Xptxas -v output) are shown even when the file compiled.
    if [[ -s "$tmp/$name.log" ]]; then sed 's/^/        /' "$tmp/$name.log"; fi
  else
    printf '  FAIL  %-22s %6ss\n' "$(basename "$src")" "$(cat "$tmp/$name.time" 2>/dev/null || echo '?')"
    sed 's/^/        /' "$tmp/$name.log"
    failed=$((failed + 1))
  fi
done
printf 'total %.1fs wall for %d file(s), %d job(s) in parallel\n' \
  "$(awk -v s="$total_start" -v e="$total_end" 'BEGIN { print e - s }')" "${#files[@]}" "$jobs"

if [[ $failed -gt 0 ]]; then
  echo "CUDA compile check FAILED: $failed of ${#files[@]} file(s)" >&2
  exit 1
fi
echo "CUDA compile check passed"

# The torch binding (ext.cpp) compiled WITH_CUDA, syntax only: the CPU wheel of torch ships the c10/ATen CUDA headers
# but not the generated c10/cuda/impl/cuda_cmake_macros.h, so a one-line stand-in is provided in a temp dir.
python="${PYTHON:-$repo_root/.venv/bin/python}"
if [[ $# -eq 0 && -x "$python" ]] && "$python" -c "import torch" 2>/dev/null; then
  mkdir -p "$tmp/shim/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$tmp/shim/c10/cuda/impl/cuda_cmake_macros.h"
  mapfile -t torch_inc < <("$python" -c "from torch.utils.cpp_extension import include_paths; print('\n'.join(include_paths()))")
  inc=()
  for p in "${torch_inc[@]}"; do inc+=(-isystem "$p"); done
  cuda_inc="$(dirname "$(dirname "$nvcc")")/include"
  start=$(date +%s)
  if "${CXX:-c++}" -std=c++17 -fsyntax-only -Wall -DWITH_CUDA "${inc[@]}" -isystem "$tmp/shim" -isystem "$cuda_inc" \
      -I "$csrc" "$csrc/ext.cpp"; then
    echo "  ok    ext.cpp WITH_CUDA (syntax) $(($(date +%s) - start))s"
  else
    echo "CUDA binding check FAILED: ext.cpp does not compile WITH_CUDA" >&2
    exit 1
  fi
fi
