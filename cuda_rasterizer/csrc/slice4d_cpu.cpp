// slice_4d on the CPU: OpenMP loops over the per-Gaussian slice4d_fwd / slice4d_bwd of slice4d.cuh.
// Contract: ../README.md ("slice_4d") and kernels.h.
#include "kernels.h"
#include "slice4d.cuh"

namespace splat4d_raster {

template <typename T>
void slice4d_fwd_cpu(const T* means4, const T* covars4, const T* opacities, T t, int64_t N, T* means3, T* covars3,
                     T* opacities3, T* weights) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    slice4d_fwd(means4 + n * 4, covars4 + n * 10, opacities[n], t, means3 + n * 3, covars3 + n * 6, opacities3 + n,
                weights + n);
  }
}

template <typename T>
void slice4d_bwd_cpu(const T* means4, const T* covars4, const T* opacities, T t, int64_t N, const T* v_means3,
                     const T* v_covars3, const T* v_opacities3, const T* v_weights, T* v_means4, T* v_covars4,
                     T* v_opacities) {
  // Every gradient is per Gaussian (t is not differentiated), so each iteration writes only its own rows.
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    slice4d_bwd(means4 + n * 4, covars4 + n * 10, opacities[n], t, v_means3 + n * 3, v_covars3 + n * 6,
                v_opacities3[n], v_weights[n], v_means4 + n * 4, v_covars4 + n * 10, v_opacities + n);
  }
}

#define S4D_INSTANTIATE(T)                                                                                        \
  template void slice4d_fwd_cpu<T>(const T*, const T*, const T*, T, int64_t, T*, T*, T*, T*);                     \
  template void slice4d_bwd_cpu<T>(const T*, const T*, const T*, T, int64_t, const T*, const T*, const T*, const T*, \
                                   T*, T*, T*);
S4D_INSTANTIATE(float)
S4D_INSTANTIATE(double)
#undef S4D_INSTANTIATE

}  // namespace splat4d_raster
