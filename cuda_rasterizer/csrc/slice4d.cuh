// Per-Gaussian math of slice_4d, shared by the CPU (slice4d_cpu.cpp) and CUDA (slice4d_cuda.cu) kernels.
//
// A 4D Gaussian (mean mu in (x, y, z, t), covariance Sigma_4) conditioned on time t is a 3D Gaussian times a
// temporal marginal (Yang et al. 2024, "Real-time Photorealistic Dynamic Scene Representation and Rendering with
// 4D Gaussian Splatting"). With Sigma_4 = [[A, b], [b^T, s]] (A = Sigma_xyz 3x3, b = Sigma_xyz,t, s =
// Sigma_tt) and dt = t - mu_t:
//   mean3   = mu_xyz + b dt / s
//   covar3  = A - b b^T / s                         (Schur complement)
//   weight  = exp(-1/2 dt^2 / s)                     (unnormalised temporal marginal, 1 at t = mu_t)
//   opacity3 = opacity * weight
// Packing: covar4 = (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt), covar3 = (xx, xy, xz, yy, yz, zz), as in
// ../README.md ("slice_4d"). A Gaussian with s <= 0 has no temporal extent: it passes through unchanged in space
// with weight 0 (so opacity3 = 0), and its time entries get no gradient.
#pragma once

#include "math.cuh"

namespace splat4d_raster {

// Offsets of Sigma_xyz,t and Sigma_tt inside the packed 4x4; Sigma_xyz sits at (0, 1, 2, 4, 5, 7).
constexpr int S4D_XT = 3, S4D_YT = 6, S4D_ZT = 8, S4D_TT = 9;

// Forward of one Gaussian. Args: mean4 [4], covar4 [10], opacity, t. Outputs: mean3 [3], covar3 [6], opacity3,
// weight.
template <typename T>
S4D_HD void slice4d_fwd(const T* mean4, const T* covar4, T opacity, T t, T* mean3, T* covar3, T* opacity3,
                        T* weight) {
  const T s = covar4[S4D_TT];
  const T b[3] = {covar4[S4D_XT], covar4[S4D_YT], covar4[S4D_ZT]};
  const bool has_time = s > T(0);
  const T inv_s = has_time ? T(1) / s : T(0);
  const T dt = t - mean4[3];
  // Conditional mean and covariance (Gaussian conditioning on the last coordinate).
  for (int i = 0; i < 3; ++i) mean3[i] = mean4[i] + b[i] * dt * inv_s;
  covar3[0] = covar4[0] - b[0] * b[0] * inv_s;
  covar3[1] = covar4[1] - b[0] * b[1] * inv_s;
  covar3[2] = covar4[2] - b[0] * b[2] * inv_s;
  covar3[3] = covar4[4] - b[1] * b[1] * inv_s;
  covar3[4] = covar4[5] - b[1] * b[2] * inv_s;
  covar3[5] = covar4[7] - b[2] * b[2] * inv_s;
  const T w = has_time ? exp(T(-0.5) * dt * dt * inv_s) : T(0);
  *weight = w;
  *opacity3 = opacity * w;
}

// Backward of slice4d_fwd for one Gaussian. Args as slice4d_fwd plus the cotangents v_mean3 [3], v_covar3 [6],
// v_opacity3, v_weight. Writes (overwrites) v_mean4 [4], v_covar4 [10], v_opacity.
template <typename T>
S4D_HD void slice4d_bwd(const T* mean4, const T* covar4, T opacity, T t, const T* v_mean3, const T* v_covar3,
                        T v_opacity3, T v_weight, T* v_mean4, T* v_covar4, T* v_opacity) {
  const T s = covar4[S4D_TT];
  const T b[3] = {covar4[S4D_XT], covar4[S4D_YT], covar4[S4D_ZT]};
  const bool has_time = s > T(0);
  const T inv_s = has_time ? T(1) / s : T(0);
  const T dt = t - mean4[3];

  // The spatial block passes straight through: mean3 = mu_xyz + ..., covar3 = A - ... (entry by entry, packed).
  for (int i = 0; i < 3; ++i) v_mean4[i] = v_mean3[i];
  v_covar4[0] = v_covar3[0];
  v_covar4[1] = v_covar3[1];
  v_covar4[2] = v_covar3[2];
  v_covar4[4] = v_covar3[3];
  v_covar4[5] = v_covar3[4];
  v_covar4[7] = v_covar3[5];
  if (!has_time) {
    v_mean4[3] = T(0);
    v_covar4[S4D_XT] = v_covar4[S4D_YT] = v_covar4[S4D_ZT] = v_covar4[S4D_TT] = T(0);
    *v_opacity = T(0);
    return;
  }
  const T w = exp(T(-0.5) * dt * dt * inv_s);

  // covar3 = A - b b^T / s. With G the symmetric matrix of the packed cotangent (diagonal g_ii, off-diagonal
  // g_ij / 2): dL/db = -2 G b / s, and dL/ds (from covar3) = b^T G b / s^2.
  const T G[3][3] = {{v_covar3[0], T(0.5) * v_covar3[1], T(0.5) * v_covar3[2]},
                     {T(0.5) * v_covar3[1], v_covar3[3], T(0.5) * v_covar3[4]},
                     {T(0.5) * v_covar3[2], T(0.5) * v_covar3[4], v_covar3[5]}};
  T Gb[3];
  for (int i = 0; i < 3; ++i) Gb[i] = G[i][0] * b[0] + G[i][1] * b[1] + G[i][2] * b[2];
  const T bGb = b[0] * Gb[0] + b[1] * Gb[1] + b[2] * Gb[2];
  // mean3 = mu_xyz + b dt / s: dL/db += v_mean3 dt / s, dL/dmu_t = -(v_mean3 . b) / s,
  // dL/ds += -(v_mean3 . b) dt / s^2.
  const T vm_b = v_mean3[0] * b[0] + v_mean3[1] * b[1] + v_mean3[2] * b[2];
  T v_b[3];
  for (int i = 0; i < 3; ++i) v_b[i] = v_mean3[i] * dt * inv_s - T(2) * Gb[i] * inv_s;
  T v_s = bGb * inv_s * inv_s - vm_b * dt * inv_s * inv_s;
  T v_mu_t = -vm_b * inv_s;

  // weight = exp(-dt^2 / (2 s)), opacity3 = opacity * weight: the total cotangent of weight is
  // v_weight + opacity v_opacity3; d weight / d mu_t = weight dt / s, d weight / d s = weight dt^2 / (2 s^2).
  const T v_w = v_weight + opacity * v_opacity3;
  v_mu_t += v_w * w * dt * inv_s;
  v_s += v_w * w * T(0.5) * dt * dt * inv_s * inv_s;

  v_mean4[3] = v_mu_t;
  v_covar4[S4D_XT] = v_b[0];
  v_covar4[S4D_YT] = v_b[1];
  v_covar4[S4D_ZT] = v_b[2];
  v_covar4[S4D_TT] = v_s;
  *v_opacity = v_opacity3 * w;
}

}  // namespace splat4d_raster
