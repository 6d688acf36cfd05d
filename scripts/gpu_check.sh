#!/usr/bin/env bash
# `make gpu-check`: everything the CUDA path needs checked, in one run on a fresh GPU machine, into one folder.
#
#   1. environment (GPU, torch, nvcc) and the bring-along wheels (.gpu-carry/wheels/*.whl, installed offline);
#   2. builds splat4d's extension for this GPU (TORCH_CUDA_ARCH_LIST from the device), while gsplat's JIT extension
#      builds in the background (it takes minutes; only the benches need it);
#   3. `pytest -m cuda` (CPU and CUDA kernels side by side in one process included);
#   4. compute-sanitizer memcheck and racecheck on scripts/gpu_kernels_once.py: one small forward and backward
#      through every CUDA kernel, 3D and 4D;
#   5. bench/rasterizer.py against gsplat, the per-stage bench (bench/rasterizer_stages.py) and the 4D slicing
#      bench (bench/slice4d.py);
#   6. a short training on NeRF-synthetic lego at 400x400 (3000 steps of the default preset): it/s and PSNR.
#
# Results (8 files) go to $GPU_CHECK_OUT (default: gpu-check-results/): summary.md (the machine, then one line per
# step: pass/fail and its time), build.log (builds and bench output), pytest-cuda.txt, sanitizers.txt, train.txt,
# and the benches' results JSON (bench/results/{rasterizer,rasterizer-stages,slice4d}-<gpu>.json, also left in
# bench/results/ to commit). Every step runs even when an earlier one failed; the exit status is 1
# when any failed. Target: under 6 minutes on an H200.
#
# Environment: PYTHON (default python3), GPU_CHECK_OUT, LEGO (default ../shared/data/nerf_synthetic_lego, else
# .gpu-carry/nerf_synthetic_lego), MAX_JOBS (default 8), TRAIN_STEPS (default 3000), SKIP_GSPLAT=1.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="${PYTHON:-python3}"
out="${GPU_CHECK_OUT:-$repo/gpu-check-results}"
carry="$repo/.gpu-carry"
export MAX_JOBS="${MAX_JOBS:-8}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
mkdir -p "$out"
summary="$out/summary.md"
echo "# gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo 'no git'))" >"$summary"
failed=0
start_all=$(date +%s)

# step NAME LOG COMMAND...: run COMMAND with its output appended to LOG, and record pass/fail and time.
step() {
  local name="$1" log="$2" t0 rc
  shift 2
  t0=$(date +%s)
  echo "== $name" | tee -a "$log"
  "$@" >>"$log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0))
  if [[ $rc -eq 0 ]]; then
    echo "- ok   $name (${dt}s)" | tee -a "$summary"
  else
    echo "- FAIL $name (${dt}s, exit $rc; see $(basename "$log"))" | tee -a "$summary"
    failed=1
  fi
  return $rc
}

# 1. Environment and wheels.
touch "$out/.start"
{
  echo '```' 
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$py" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  command -v nvcc >/dev/null && nvcc --version | tail -2
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | head -1
  echo '```'
} >>"$summary" 2>&1
if compgen -G "$carry/wheels/*.whl" >/dev/null; then
  step "install bring-along wheels" "$out/build.log" "$py" -m pip install --no-index --no-deps --quiet "$carry"/wheels/*.whl
fi
"$py" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || {
  echo "- FAIL no CUDA GPU visible to torch; nothing else can run" | tee -a "$summary"
  exit 1
}
arch="$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}"
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS" >>"$summary"
export PATH="$PATH:${CUDA_HOME:-/usr/local/cuda}/bin"  # compute-sanitizer lives beside nvcc

# 2. Builds: gsplat's in the background, ours in the foreground.
gsplat_pid=""
if [[ "${SKIP_GSPLAT:-0}" != 1 ]] && "$py" -c "import gsplat" 2>/dev/null; then
  ("$py" -c "import gsplat.cuda._backend as b; assert b._C is not None, 'gsplat JIT build failed'" \
    >"$out/.gsplat-build.log" 2>&1) &
  gsplat_pid=$!
fi
step "build splat4d's extension (sm_${arch/./})" "$out/build.log" \
  "$py" -c "import cuda_rasterizer._backend as b; b._load(True); print('built')"

# 3. Tests.
step "pytest -m cuda" "$out/pytest-cuda.txt" "$py" -m pytest -q -m cuda -p no:cacheprovider tests

# 4. Sanitizers on every kernel, forward and backward.
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    step "compute-sanitizer $tool" "$out/sanitizers.txt" \
      compute-sanitizer --tool "$tool" --error-exitcode 3 "$py" scripts/gpu_kernels_once.py --device cuda
  done
else
  echo "- FAIL compute-sanitizer not found" | tee -a "$summary"
  failed=1
fi

# 5. Benches (gsplat side by side once its build is done).
if [[ -n "$gsplat_pid" ]]; then
  if wait "$gsplat_pid"; then
    echo "- ok   gsplat JIT build (background)" >>"$summary"
  else
    echo "- FAIL gsplat JIT build: $(tail -1 "$out/.gsplat-build.log")" | tee -a "$summary"
  fi
fi
cat "$out/.gsplat-build.log" >>"$out/build.log" 2>/dev/null
rm -f "$out/.gsplat-build.log"
step "bench/rasterizer.py --device cuda" "$out/build.log" "$py" bench/rasterizer.py --device cuda
step "bench/rasterizer_stages.py --device cuda" "$out/build.log" "$py" bench/rasterizer_stages.py --device cuda
step "bench/slice4d.py --device cuda" "$out/build.log" "$py" bench/slice4d.py --device cuda

# 6. A short training on lego.
lego="${LEGO:-}"
for candidate in "$repo/../shared/data/nerf_synthetic_lego" "$carry/nerf_synthetic_lego"; do
  [[ -z "$lego" && -d "$candidate" ]] && lego="$candidate"
done
if [[ -n "$lego" ]]; then
  work="$(mktemp -d)"
  step "train lego 400x400, ${TRAIN_STEPS:-3000} steps" "$out/train.txt" \
    "$py" -m splat4d reconstruct "$lego" -o "$work/lego" --preset default --steps "${TRAIN_STEPS:-3000}" \
    --data.downscale 2 --device cuda --no-progress &&
    "$py" -c "import json, sys; m = json.load(open(sys.argv[1])); m.pop('views', None); print(json.dumps(m, indent=1))" \
      "$work/lego/metrics.json" >>"$out/train.txt"
  rm -rf "$work"
else
  echo "- FAIL no lego data (../shared/data/nerf_synthetic_lego or .gpu-carry/nerf_synthetic_lego)" | tee -a "$summary"
  failed=1
fi

# The benches' results (named after the GPU by bench/common.py), written during this run.
find bench/results -name '*.json' -newer "$out/.start" -exec cp {} "$out/" \;
rm -f "$out/.start"
echo "total $(($(date +%s) - start_all))s; results in $out" | tee -a "$summary"
exit $failed
