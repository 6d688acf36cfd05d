#!/usr/bin/env bash
# Runs the CUDA kernels without a GPU: compiles cuda_rasterizer/csrc/*_cuda.cu unchanged with g++ against a host
# emulation of the CUDA runtime (scripts/cuda_emulation/include: fibers for the threads of a block, real barrier
# and warp-shuffle semantics, a std::stable_sort stand-in for cub's radix sort), then compares every *_cuda entry
# point with the CPU kernels on random scenes (scripts/cuda_emulation/test_kernels.cpp).
# It checks indexing, batching, synchronisation and reductions, not GPU timing or GPU floating point.
#
# Usage: scripts/check_cuda_emulated.sh          (SANITIZE=1 adds -fsanitize=address,undefined)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
csrc="$repo_root/cuda_rasterizer/csrc"
emu="$repo_root/scripts/cuda_emulation"
cxx="${CXX:-g++}"

flags=(-std=c++20 -O2 -g -U_FORTIFY_SOURCE -Wall -Wno-unknown-pragmas -fopenmp -I "$emu/include" -I "$csrc")
if [[ "${SANITIZE:-0}" == 1 ]]; then
  flags+=(-fsanitize=address,undefined -fno-omit-frame-pointer)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=0}"
fi

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT

start=$(date +%s)
objs=()
for src in "$csrc"/*_cuda.cu "$csrc"/*_cpu.cpp "$emu/test_kernels.cpp"; do
  obj="$build/$(basename "$src").o"
  if [[ "$src" == *.cu ]]; then
    "$cxx" "${flags[@]}" -x c++ -c "$src" -o "$obj" &
  else
    "$cxx" "${flags[@]}" -c "$src" -o "$obj" &
  fi
  objs+=("$obj")
done
wait_failed=0
for job in $(jobs -p); do wait "$job" || wait_failed=1; done
if [[ $wait_failed -ne 0 ]]; then
  echo "CUDA emulation check FAILED to build" >&2
  exit 1
fi
"$cxx" "${flags[@]}" "${objs[@]}" -o "$build/test_kernels"
echo "built in $(( $(date +%s) - start ))s"

start=$(date +%s)
"$build/test_kernels"
echo "ran in $(( $(date +%s) - start ))s"
