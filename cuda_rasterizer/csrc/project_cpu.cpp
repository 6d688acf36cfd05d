// Projection of 3D Gaussians to 2D (forward and backward) on the CPU: OpenMP loops over the per-Gaussian math of
// math.cuh, the same functions the CUDA kernels call.
#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {

// Loops over fewer items than this run on one thread: waking the OpenMP team costs more than the work.
constexpr int64_t MIN_PARALLEL_ITEMS = 2048;

namespace {

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace

template <typename T>
void project_fwd_cpu(const T* means, const T* covars, const T* opacities, const T* T_cam_world, const T* Ks,
                     int64_t C, int64_t N, const ProjectSettings<T>& s, T* means2d, T* conics, T* depths,
                     int32_t* radii, T* opacities_out) {
  // Every (camera, Gaussian) pair is independent; culled pairs keep the caller's zeros.
#pragma omp parallel for schedule(static) if (C * N >= MIN_PARALLEL_ITEMS)
  for (int64_t i = 0; i < C * N; ++i) {
    const int64_t c = i / N, n = i % N;
    project_fwd(means + n * 3, covars + n * 6, opacities[n], T_cam_world + c * 16, Ks + c * 9, s.width, s.height,
                s.eps2d, s.near_plane, s.far_plane, s.antialiased, means2d + i * 2, conics + i * 3, depths + i,
                radii + i * 2, opacities_out + i);
  }
}

template <typename T>
void project_bwd_cpu(const T* means, const T* covars, const T* opacities, const T* T_cam_world, const T* Ks,
                     int64_t C, int64_t N, const ProjectSettings<T>& s, const int32_t* radii, const T* v_means2d,
                     const T* v_conics, const T* v_depths, const T* v_opacities_out, T* v_means, T* v_covars,
                     T* v_opacities, T* v_T_cam_world) {
  // Per-Gaussian gradients sum over cameras and per-camera gradients sum over Gaussians. Threads split the
  // Gaussians, so each owns its v_means / v_covars / v_opacities rows; v_T_cam_world goes to a per-thread buffer
  // that is reduced in thread order afterwards (deterministic for a fixed thread count).
  const int n_threads = num_threads();
  std::vector<T> v_T_local(static_cast<size_t>(n_threads) * C * 16, T(0));
#pragma omp parallel num_threads(n_threads) if (C * N >= MIN_PARALLEL_ITEMS)
  {
    T* v_T_mine = v_T_local.data() + static_cast<size_t>(thread_id()) * C * 16;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      T v_mean_sum[3] = {T(0), T(0), T(0)};
      T v_covar_sum[6] = {T(0), T(0), T(0), T(0), T(0), T(0)};
      T v_opacity_sum = T(0);
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = c * N + n;
        if (radii[i * 2] <= 0 || radii[i * 2 + 1] <= 0) continue;  // culled: no gradient
        T v_mean[3], v_covar[6], v_opacity, v_T[16];
        project_bwd(means + n * 3, covars + n * 6, opacities[n], T_cam_world + c * 16, Ks + c * 9, s.width,
                    s.height, s.eps2d, s.antialiased, v_means2d + i * 2, v_conics + i * 3, v_depths[i],
                    v_opacities_out[i], v_mean, v_covar, &v_opacity, v_T);
        for (int k = 0; k < 3; ++k) v_mean_sum[k] += v_mean[k];
        for (int k = 0; k < 6; ++k) v_covar_sum[k] += v_covar[k];
        v_opacity_sum += v_opacity;
        for (int k = 0; k < 16; ++k) v_T_mine[c * 16 + k] += v_T[k];
      }
      for (int k = 0; k < 3; ++k) v_means[n * 3 + k] = v_mean_sum[k];
      for (int k = 0; k < 6; ++k) v_covars[n * 6 + k] = v_covar_sum[k];
      v_opacities[n] = v_opacity_sum;
    }
  }
  for (int t = 0; t < n_threads; ++t)
    for (int64_t k = 0; k < C * 16; ++k) v_T_cam_world[k] += v_T_local[static_cast<size_t>(t) * C * 16 + k];
}

#define S4D_INSTANTIATE(T)                                                                                          \
  template void project_fwd_cpu<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,             \
                                   const ProjectSettings<T>&, T*, T*, T*, int32_t*, T*);                           \
  template void project_bwd_cpu<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,             \
                                   const ProjectSettings<T>&, const int32_t*, const T*, const T*, const T*,        \
                                   const T*, T*, T*, T*, T*);
S4D_INSTANTIATE(float)
S4D_INSTANTIATE(double)
#undef S4D_INSTANTIATE

}  // namespace splat4d_raster
