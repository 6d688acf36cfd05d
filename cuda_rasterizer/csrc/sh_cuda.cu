// Spherical-harmonics colours (real SH basis of 3DGS, degrees 0..3), CUDA float32. The per-Gaussian math is
// math.cuh's sh_fwd / sh_bwd, shared with the CPU path. Contract: ../README.md ("eval_sh") and kernels.h.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_utils.cuh"
#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {
namespace {

constexpr int SH_THREADS = 256;

// The kernels are instantiated per degree (0..3): with a compile-time degree the basis arrays of sh_basis stay in
// registers instead of a local-memory stack frame.

// One thread per (camera, Gaussian), idx = c * N + n: colors[c, n] = sum_k Y_k(dirs[c, n]) coeffs[n, k].
template <int DEGREE>
__global__ void __launch_bounds__(SH_THREADS)
    sh_fwd_kernel(const float* __restrict__ dirs,    // [C, N, 3]
                  const float* __restrict__ coeffs,  // [N, K, D]
                  int64_t C, int64_t N, int64_t K, int64_t D,
                  float* __restrict__ colors) {  // [C, N, D]
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= C * N) return;
  const int64_t n = idx % N;
  sh_fwd(DEGREE, dirs + idx * 3, coeffs + n * K * D, static_cast<int>(D), colors + idx * D);
}

// One thread per Gaussian, looping over the cameras. dL/dcoeffs[n] is a sum over cameras: the thread that owns
// Gaussian n accumulates it in place (sh_bwd adds into v_coeffs), so there are no atomics and the sum is
// deterministic. dL/ddirs[c, n] is written per camera.
template <int DEGREE>
__global__ void __launch_bounds__(SH_THREADS)
    sh_bwd_kernel(const float* __restrict__ dirs, const float* __restrict__ coeffs, int64_t C,
                  int64_t N, int64_t K, int64_t D,
                  const float* __restrict__ v_colors,  // [C, N, D]
                  float* __restrict__ v_coeffs,        // [N, K, D], pre-zeroed, accumulated
                  float* __restrict__ v_dirs) {        // [C, N, 3]
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t idx = c * N + n;
    sh_bwd(DEGREE, dirs + idx * 3, coeffs + n * K * D, static_cast<int>(D), v_colors + idx * D, v_coeffs + n * K * D,
           v_dirs + idx * 3);
  }
}

void check_degree(int degree) {
  if (degree < 0 || degree > 3)
    throw std::runtime_error("eval_sh (CUDA): degree must be in 0..3, got " + std::to_string(degree));
}

}  // namespace

void sh_fwd_cuda(int degree, const float* dirs, const float* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                 float* colors, void* stream) {
  check_degree(degree);
  const dim3 grid(blocks_for(C * N, SH_THREADS)), block(SH_THREADS);
  const cudaStream_t s = as_stream(stream);
  auto kernel = degree == 0 ? sh_fwd_kernel<0> : degree == 1 ? sh_fwd_kernel<1> : degree == 2 ? sh_fwd_kernel<2>
                                                                                                : sh_fwd_kernel<3>;
  launch("sh_fwd_kernel", kernel, grid, block, s, dirs, coeffs, C, N, K, D, colors);
}

void sh_bwd_cuda(int degree, const float* dirs, const float* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                 const float* v_colors, float* v_coeffs, float* v_dirs, void* stream) {
  check_degree(degree);
  const dim3 grid(blocks_for(N, SH_THREADS)), block(SH_THREADS);
  const cudaStream_t s = as_stream(stream);
  auto kernel = degree == 0 ? sh_bwd_kernel<0> : degree == 1 ? sh_bwd_kernel<1> : degree == 2 ? sh_bwd_kernel<2>
                                                                                                : sh_bwd_kernel<3>;
  launch("sh_bwd_kernel", kernel, grid, block, s, dirs, coeffs, C, N, K, D, v_colors, v_coeffs, v_dirs);
}

}  // namespace splat4d_raster
