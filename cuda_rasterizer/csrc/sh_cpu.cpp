// Spherical-harmonics colours (forward and backward) on the CPU: OpenMP loops over sh_fwd / sh_bwd of math.cuh.
#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {

// Loops over fewer items than this run on one thread: waking the OpenMP team costs more than the work.
constexpr int64_t MIN_PARALLEL_ITEMS = 2048;

template <typename T>
void sh_fwd_cpu(int degree, const T* dirs, const T* coeffs, int64_t C, int64_t N, int64_t K, int64_t D, T* colors) {
#pragma omp parallel for schedule(static) if (C * N >= MIN_PARALLEL_ITEMS)
  for (int64_t i = 0; i < C * N; ++i) {
    const int64_t n = i % N;
    sh_fwd(degree, dirs + i * 3, coeffs + n * K * D, static_cast<int>(D), colors + i * D);
  }
}

template <typename T>
void sh_bwd_cpu(int degree, const T* dirs, const T* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                const T* v_colors, T* v_coeffs, T* v_dirs) {
  // dL/dcoeffs[n] sums over cameras, so threads split the Gaussians and each walks all cameras of its own: no two
  // threads write the same v_coeffs row, and the summation order is fixed.
#pragma omp parallel for schedule(static) if (C * N >= MIN_PARALLEL_ITEMS)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = c * N + n;
      sh_bwd(degree, dirs + i * 3, coeffs + n * K * D, static_cast<int>(D), v_colors + i * D, v_coeffs + n * K * D,
             v_dirs + i * 3);
    }
  }
}

#define S4D_INSTANTIATE(T)                                                                                   \
  template void sh_fwd_cpu<T>(int, const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*);              \
  template void sh_bwd_cpu<T>(int, const T*, const T*, int64_t, int64_t, int64_t, int64_t, const T*, T*, T*);
S4D_INSTANTIATE(float)
S4D_INSTANTIATE(double)
#undef S4D_INSTANTIATE

}  // namespace splat4d_raster
