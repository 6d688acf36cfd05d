// slice_4d on the GPU, float32: one thread per Gaussian running slice4d.cuh's slice4d_fwd / slice4d_bwd, the same
// math as the CPU path. Contract: ../README.md ("slice_4d") and kernels.h.
#include <cuda_runtime.h>

#include "cuda_utils.cuh"
#include "kernels.h"
#include "slice4d.cuh"

namespace splat4d_raster {
namespace {

constexpr int SLICE4D_THREADS = 256;

__global__ void __launch_bounds__(SLICE4D_THREADS)
    slice4d_fwd_kernel(const float* __restrict__ means4,     // [N, 4]
                       const float* __restrict__ covars4,    // [N, 10]
                       const float* __restrict__ opacities,  // [N]
                       float t, int64_t N,
                       float* __restrict__ means3,      // [N, 3]
                       float* __restrict__ covars3,     // [N, 6]
                       float* __restrict__ opacities3,  // [N]
                       float* __restrict__ weights) {   // [N]
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  slice4d_fwd(means4 + n * 4, covars4 + n * 10, opacities[n], t, means3 + n * 3, covars3 + n * 6, opacities3 + n,
              weights + n);
}

// Every gradient is per Gaussian (t is not differentiated): plain writes, no atomics.
__global__ void __launch_bounds__(SLICE4D_THREADS)
    slice4d_bwd_kernel(const float* __restrict__ means4, const float* __restrict__ covars4,
                       const float* __restrict__ opacities, float t, int64_t N,
                       const float* __restrict__ v_means3,      // [N, 3]
                       const float* __restrict__ v_covars3,     // [N, 6]
                       const float* __restrict__ v_opacities3,  // [N]
                       const float* __restrict__ v_weights,     // [N]
                       float* __restrict__ v_means4,            // [N, 4]
                       float* __restrict__ v_covars4,           // [N, 10]
                       float* __restrict__ v_opacities) {       // [N]
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  slice4d_bwd(means4 + n * 4, covars4 + n * 10, opacities[n], t, v_means3 + n * 3, v_covars3 + n * 6,
              v_opacities3[n], v_weights[n], v_means4 + n * 4, v_covars4 + n * 10, v_opacities + n);
}

}  // namespace

void slice4d_fwd_cuda(const float* means4, const float* covars4, const float* opacities, float t, int64_t N,
                      float* means3, float* covars3, float* opacities3, float* weights, void* stream) {
  launch("slice4d_fwd_kernel", slice4d_fwd_kernel, dim3(blocks_for(N, SLICE4D_THREADS)), dim3(SLICE4D_THREADS),
         as_stream(stream), means4, covars4, opacities, t, N, means3, covars3, opacities3, weights);
}

void slice4d_bwd_cuda(const float* means4, const float* covars4, const float* opacities, float t, int64_t N,
                      const float* v_means3, const float* v_covars3, const float* v_opacities3,
                      const float* v_weights, float* v_means4, float* v_covars4, float* v_opacities, void* stream) {
  launch("slice4d_bwd_kernel", slice4d_bwd_kernel, dim3(blocks_for(N, SLICE4D_THREADS)), dim3(SLICE4D_THREADS),
         as_stream(stream), means4, covars4, opacities, t, N, v_means3, v_covars3, v_opacities3, v_weights, v_means4,
         v_covars4, v_opacities);
}

}  // namespace splat4d_raster
