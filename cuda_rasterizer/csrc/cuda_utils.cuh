// Small CUDA helpers shared by the *_cuda.cu kernel files: stream cast, launch-error check, grid sizing and
// warp/block reductions. No torch headers (see ../README.md): every kernel file compiles with a bare `nvcc -c`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace splat4d_raster {

constexpr int WARP_SIZE = 32;
constexpr unsigned FULL_MASK = 0xffffffffu;

// kernels.h passes streams as void* so that it stays free of CUDA includes.
inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Throws (ext.cpp turns this into a Python RuntimeError) when a CUDA call or a kernel launch failed.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("splat4d CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

inline unsigned int blocks_for(int64_t n, int threads) { return static_cast<unsigned int>((n + threads - 1) / threads); }

// Sum over the 32 lanes of a warp; the result is valid on lane 0. Every lane of the warp must call it.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1) v += __shfl_down_sync(FULL_MASK, v, offset);
  return v;
}

// dst[i] += sum over the block of v[i], for i < NV: a warp shuffle reduction, one partial per warp in shared memory,
// then thread i adds entry i with a single atomicAdd (one atomic per entry per block instead of one per thread,
// which matters when many blocks add into the same few addresses, e.g. per-camera gradients).
// Every thread of the block must call it (it contains __syncthreads). `s_partials` holds NV * (warps per block).
template <int NV>
__device__ __forceinline__ void block_atomic_add(const float (&v)[NV], float* s_partials, float* dst) {
  const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
  const int n_warps = blockDim.x / WARP_SIZE;
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const float s = warp_sum(v[i]);
    if (lane == 0) s_partials[warp * NV + i] = s;
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < NV) {
    float total = 0.f;
    for (int w = 0; w < n_warps; ++w) total += s_partials[w * NV + threadIdx.x];
    atomicAdd(dst + threadIdx.x, total);
  }
  __syncthreads();  // s_partials may be reused right after
}

#if defined(__CUDACC__)
// kernel<<<grid, block, 0, stream>>>(args...), skipped for an empty grid, then a launch-error check.
template <typename... KernelArgs, typename... Args>
void launch(const char* name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream,
            Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  kernel<<<grid, block, 0, stream>>>(static_cast<KernelArgs>(args)...);
  check_cuda(cudaGetLastError(), name);
}
#endif

}  // namespace splat4d_raster
