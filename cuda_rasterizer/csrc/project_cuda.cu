// Projection of 3D Gaussians into every camera (EWA splatting, Zwicker et al. 2001; 3DGS eq. 5), CUDA float32.
// The per-Gaussian math is math.cuh's project_fwd / project_bwd, shared with project_cpu.cpp; this file only maps
// it onto threads and reduces the gradients. Contract: ../README.md ("project") and kernels.h.
#include <cuda_runtime.h>

#include "cuda_utils.cuh"
#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {
namespace {

constexpr int PROJECT_THREADS = 256;

// Number of entries of dL/dT_cam_world that project_bwd can make non-zero: rows 0..2 of the 4x4 (the last row
// (0, 0, 0, 1) is constant). They are contiguous in the row-major [4, 4] layout.
constexpr int V_T_ENTRIES = 12;

// One thread per (camera, Gaussian), idx = c * N + n.
__global__ void __launch_bounds__(PROJECT_THREADS)
    project_fwd_kernel(const float* __restrict__ means,        // [N, 3]
                       const float* __restrict__ covars,       // [N, 6]
                       const float* __restrict__ opacities,    // [N]
                       const float* __restrict__ T_cam_world,  // [C, 4, 4]
                       const float* __restrict__ Ks,           // [C, 3, 3]
                       int64_t C, int64_t N, ProjectSettings<float> s,
                       float* __restrict__ means2d,          // [C, N, 2]
                       float* __restrict__ conics,           // [C, N, 3]
                       float* __restrict__ depths,           // [C, N]
                       int32_t* __restrict__ radii,          // [C, N, 2]
                       float* __restrict__ opacities_out) {  // [C, N]
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= C * N) return;
  const int64_t c = idx / N, n = idx % N;

  // Copy the camera into registers (constant indices after inlining); neighbouring threads share it via L1.
  float Tcw[16], K[9];
  for (int i = 0; i < 16; ++i) Tcw[i] = T_cam_world[c * 16 + i];
  for (int i = 0; i < 9; ++i) K[i] = Ks[c * 9 + i];

  float mean2d[2], conic[3], depth, op;
  int32_t radius[2];
  if (project_fwd(means + n * 3, covars + n * 6, opacities[n], Tcw, K, s.width, s.height, s.eps2d, s.near_plane,
                  s.far_plane, s.antialiased, mean2d, conic, &depth, radius, &op)) {
    means2d[idx * 2 + 0] = mean2d[0];
    means2d[idx * 2 + 1] = mean2d[1];
    conics[idx * 3 + 0] = conic[0];
    conics[idx * 3 + 1] = conic[1];
    conics[idx * 3 + 2] = conic[2];
    depths[idx] = depth;
    radii[idx * 2 + 0] = radius[0];
    radii[idx * 2 + 1] = radius[1];
    opacities_out[idx] = op;
  } else {
    // Culled: all-zero outputs (README). Written explicitly so the kernel does not rely on pre-zeroed buffers.
    means2d[idx * 2 + 0] = 0.f;
    means2d[idx * 2 + 1] = 0.f;
    conics[idx * 3 + 0] = 0.f;
    conics[idx * 3 + 1] = 0.f;
    conics[idx * 3 + 2] = 0.f;
    depths[idx] = 0.f;
    radii[idx * 2 + 0] = 0;
    radii[idx * 2 + 1] = 0;
    opacities_out[idx] = 0.f;
  }
}

// One thread per Gaussian, looping over the cameras.
//   Per-Gaussian gradients (v_means, v_covars, v_opacities) are sums over cameras: each thread owns its Gaussian,
//   accumulates in registers and writes once, so there are no atomics and the result is deterministic.
//   Per-camera gradients (v_T_cam_world) are sums over Gaussians: block-reduced (warp shuffles, then shared memory),
//   then one atomicAdd per entry per block and camera.
// Culled (camera, Gaussian) pairs (radii == 0) receive no gradient (README).
__global__ void __launch_bounds__(PROJECT_THREADS)
    project_bwd_kernel(const float* __restrict__ means, const float* __restrict__ covars,
                       const float* __restrict__ opacities, const float* __restrict__ T_cam_world,
                       const float* __restrict__ Ks, int64_t C, int64_t N, ProjectSettings<float> s,
                       const int32_t* __restrict__ radii,          // [C, N, 2]
                       const float* __restrict__ v_means2d,        // [C, N, 2]
                       const float* __restrict__ v_conics,         // [C, N, 3]
                       const float* __restrict__ v_depths,         // [C, N]
                       const float* __restrict__ v_opacities_out,  // [C, N]
                       float* __restrict__ v_means,                // [N, 3]
                       float* __restrict__ v_covars,               // [N, 6]
                       float* __restrict__ v_opacities,            // [N]
                       float* __restrict__ v_T_cam_world) {        // [C, 4, 4]
  __shared__ float s_partials[(PROJECT_THREADS / WARP_SIZE) * V_T_ENTRIES];

  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool in_range = n < N;  // out-of-range threads stay alive: they take part in the block reductions

  float mean[3] = {0.f, 0.f, 0.f}, covar[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, opacity = 0.f;
  if (in_range) {
    for (int i = 0; i < 3; ++i) mean[i] = means[n * 3 + i];
    for (int i = 0; i < 6; ++i) covar[i] = covars[n * 6 + i];
    opacity = opacities[n];
  }
  float acc_mean[3] = {0.f, 0.f, 0.f}, acc_covar[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, acc_opacity = 0.f;

  for (int64_t c = 0; c < C; ++c) {
    const int64_t cn = c * N + n;
    const bool visible = in_range && radii[cn * 2 + 0] > 0 && radii[cn * 2 + 1] > 0;
    float v_T[16];
    for (int i = 0; i < 16; ++i) v_T[i] = 0.f;
    if (visible) {
      float Tcw[16], K[9];
      for (int i = 0; i < 16; ++i) Tcw[i] = T_cam_world[c * 16 + i];
      for (int i = 0; i < 9; ++i) K[i] = Ks[c * 9 + i];
      float v_mean[3], v_covar[6], v_opacity;
      project_bwd(mean, covar, opacity, Tcw, K, s.width, s.height, s.eps2d, s.antialiased, v_means2d + cn * 2,
                  v_conics + cn * 3, v_depths[cn], v_opacities_out[cn], v_mean, v_covar, &v_opacity, v_T);
      for (int i = 0; i < 3; ++i) acc_mean[i] += v_mean[i];
      for (int i = 0; i < 6; ++i) acc_covar[i] += v_covar[i];
      acc_opacity += v_opacity;
    }
    // Block-uniform condition: skip the reduction when no thread of the block sees this camera.
    if (v_T_cam_world != nullptr && __syncthreads_or(visible)) {
      float v_T_rows[V_T_ENTRIES];
      for (int i = 0; i < V_T_ENTRIES; ++i) v_T_rows[i] = v_T[i];
      block_atomic_add(v_T_rows, s_partials, v_T_cam_world + c * 16);
    }
  }

  if (in_range) {
    for (int i = 0; i < 3; ++i) v_means[n * 3 + i] = acc_mean[i];
    for (int i = 0; i < 6; ++i) v_covars[n * 6 + i] = acc_covar[i];
    v_opacities[n] = acc_opacity;
  }
}

}  // namespace

void project_fwd_cuda(const float* means, const float* covars, const float* opacities, const float* T_cam_world,
                      const float* Ks, int64_t C, int64_t N, const ProjectSettings<float>& s, float* means2d,
                      float* conics, float* depths, int32_t* radii, float* opacities_out, void* stream) {
  launch("project_fwd_kernel", project_fwd_kernel, dim3(blocks_for(C * N, PROJECT_THREADS)), dim3(PROJECT_THREADS),
         as_stream(stream), means, covars, opacities, T_cam_world, Ks, C, N, s, means2d, conics, depths, radii,
         opacities_out);
}

void project_bwd_cuda(const float* means, const float* covars, const float* opacities, const float* T_cam_world,
                      const float* Ks, int64_t C, int64_t N, const ProjectSettings<float>& s, const int32_t* radii,
                      const float* v_means2d, const float* v_conics, const float* v_depths,
                      const float* v_opacities_out, float* v_means, float* v_covars, float* v_opacities,
                      float* v_T_cam_world, void* stream) {
  launch("project_bwd_kernel", project_bwd_kernel, dim3(blocks_for(N, PROJECT_THREADS)), dim3(PROJECT_THREADS),
         as_stream(stream), means, covars, opacities, T_cam_world, Ks, C, N, s, radii, v_means2d, v_conics,
         v_depths, v_opacities_out, v_means, v_covars, v_opacities, v_T_cam_world);
}

}  // namespace splat4d_raster
