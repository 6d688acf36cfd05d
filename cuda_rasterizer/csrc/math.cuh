// Per-Gaussian math shared by the CPU (*_cpu.cpp) and CUDA (*_cuda.cu) kernels.
//
// Everything here is a small inline function on raw arrays, templated on the scalar type so the CPU path runs in
// float64 for gradcheck and the CUDA path in float32. No torch headers: kernel files including this compile with a
// bare `nvcc -c` in seconds. The conventions are those of ../README.md (OpenCV cameras, packed covariances
// (xx, xy, xz, yy, yz, zz), packed conics (a, b, c) of [[a, b], [b, c]]).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "constants.h"

#if defined(__CUDACC__)
#define S4D_HD __host__ __device__ __forceinline__
#else
#define S4D_HD inline
#endif

namespace splat4d_raster {

#if !defined(__CUDACC__)
// Host compilers resolve an unqualified exp(float) to the C function ::exp(double); these bring in the float
// overloads so the float CPU path computes in float like the CUDA one. nvcc already declares them globally.
using std::ceil;
using std::exp;
using std::floor;
using std::log;
using std::sqrt;
#endif

template <typename T>
S4D_HD T clampv(T x, T lo, T hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// ---------------------------------------------------------------------------------------------------------------
// Projection (EWA splatting, Zwicker et al. 2001; 3DGS eq. 5). One Gaussian, one camera.
// ---------------------------------------------------------------------------------------------------------------

// Camera-frame quantities of one Gaussian, computed once and reused by forward and backward.
template <typename T>
struct CamGaussian {
  T p[3];      // camera-frame mean, p = R mu + t
  T cov_c[6];  // camera-frame covariance R Sigma R^T, packed
  T cov2d[3];  // J cov_c J^T before dilation, packed (xx, xy, yy)
  T J[6];      // 2x3 Jacobian (row-major) of the clamped perspective map
  bool x_clamped, y_clamped;  // whether tx / ty hit the guard band (then d tx / d p = 0 for that axis)
};

// Rotate a packed symmetric 3x3 matrix: out = R S R^T. R is row-major 3x3 (the top-left of T_cam_world).
template <typename T>
S4D_HD void rotate_covar(const T* R, const T* S, T* out) {
  const T s[3][3] = {{S[0], S[1], S[2]}, {S[1], S[3], S[4]}, {S[2], S[4], S[5]}};
  T RS[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) RS[i][j] = R[i * 3 + 0] * s[0][j] + R[i * 3 + 1] * s[1][j] + R[i * 3 + 2] * s[2][j];
  T o[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) o[i][j] = RS[i][0] * R[j * 3 + 0] + RS[i][1] * R[j * 3 + 1] + RS[i][2] * R[j * 3 + 2];
  out[0] = o[0][0];
  out[1] = o[0][1];
  out[2] = o[0][2];
  out[3] = o[1][1];
  out[4] = o[1][2];
  out[5] = o[2][2];
}

// T_cam_world is row-major 4x4: R = rows 0..2, cols 0..2; t = column 3.
template <typename T>
S4D_HD void cam_gaussian(const T* mean, const T* covar, const T* T_cam_world, const T* K, int width, int height,
                         CamGaussian<T>& g) {
  const T R[9] = {T_cam_world[0], T_cam_world[1], T_cam_world[2], T_cam_world[4], T_cam_world[5],
                  T_cam_world[6], T_cam_world[8], T_cam_world[9], T_cam_world[10]};
  for (int i = 0; i < 3; ++i)
    g.p[i] = R[i * 3 + 0] * mean[0] + R[i * 3 + 1] * mean[1] + R[i * 3 + 2] * mean[2] + T_cam_world[i * 4 + 3];
  rotate_covar(R, covar, g.cov_c);

  const T fx = K[0], fy = K[4], cx = K[2], cy = K[5];
  const T z = g.p[2];
  const T tan_x = T(0.5) * T(width) / fx, tan_y = T(0.5) * T(height) / fy;
  const T lim_xp = (T(width) - cx) / fx + T(FOV_GUARD) * tan_x;
  const T lim_xn = cx / fx + T(FOV_GUARD) * tan_x;
  const T lim_yp = (T(height) - cy) / fy + T(FOV_GUARD) * tan_y;
  const T lim_yn = cy / fy + T(FOV_GUARD) * tan_y;
  const T rx = g.p[0] / z, ry = g.p[1] / z;
  g.x_clamped = rx < -lim_xn || rx > lim_xp;
  g.y_clamped = ry < -lim_yn || ry > lim_yp;
  const T tx = z * clampv(rx, -lim_xn, lim_xp);
  const T ty = z * clampv(ry, -lim_yn, lim_yp);
  const T iz = T(1) / z, iz2 = iz * iz;
  g.J[0] = fx * iz;
  g.J[1] = T(0);
  g.J[2] = -fx * tx * iz2;
  g.J[3] = T(0);
  g.J[4] = fy * iz;
  g.J[5] = -fy * ty * iz2;

  // cov2d = J cov_c J^T (2x2); J has zeros at [0][1] and [1][0].
  const T* c = g.cov_c;
  const T JC0[3] = {g.J[0] * c[0] + g.J[2] * c[2], g.J[0] * c[1] + g.J[2] * c[4], g.J[0] * c[2] + g.J[2] * c[5]};
  const T JC1[3] = {g.J[4] * c[1] + g.J[5] * c[2], g.J[4] * c[3] + g.J[5] * c[4], g.J[4] * c[4] + g.J[5] * c[5]};
  g.cov2d[0] = JC0[0] * g.J[0] + JC0[2] * g.J[2];
  g.cov2d[1] = JC0[1] * g.J[4] + JC0[2] * g.J[5];
  g.cov2d[2] = JC1[1] * g.J[4] + JC1[2] * g.J[5];
}

// Forward projection of one Gaussian into one camera. Returns false (and writes nothing) when the Gaussian is
// culled; the caller then leaves all outputs at zero.
//
// Args: mean [3], covar [6], opacity, T_cam_world [16] (row-major), K [9] (row-major).
// Outputs: mean2d [2], conic [3], depth, radius [2], opacity_out.
template <typename T>
S4D_HD bool project_fwd(const T* mean, const T* covar, T opacity, const T* T_cam_world, const T* K, int width,
                        int height, T eps2d, T near_plane, T far_plane, bool antialiased, T* mean2d, T* conic,
                        T* depth, int32_t* radius, T* opacity_out) {
  const T z = T_cam_world[8] * mean[0] + T_cam_world[9] * mean[1] + T_cam_world[10] * mean[2] + T_cam_world[11];
  if (!(z >= near_plane && z <= far_plane)) return false;
  CamGaussian<T> g;
  cam_gaussian(mean, covar, T_cam_world, K, width, height, g);

  // Low-pass dilation (3DGS: +0.3 px on the diagonal) and the Mip-Splatting opacity compensation (eq. 9).
  const T a = g.cov2d[0] + eps2d, b = g.cov2d[1], c = g.cov2d[2] + eps2d;
  const T det = a * c - b * b;
  if (!(det > T(0))) return false;
  T op = opacity;
  if (antialiased) {
    const T det_raw = g.cov2d[0] * g.cov2d[2] - g.cov2d[1] * g.cov2d[1];
    const T ratio = det_raw / det;
    op = opacity * (ratio > T(0) ? sqrt(ratio) : T(0));
  }
  if (!(op >= T(ALPHA_MIN))) return false;

  // Opacity-aware extent: alpha >= ALPHA_MIN only where d^2 <= 2 ln(op / ALPHA_MIN) (see ../README.md).
  const T d2 = T(2) * log(op / T(ALPHA_MIN));
  const T ext = sqrt(d2 > T(0) ? d2 : T(0));
  const int32_t rx = static_cast<int32_t>(ceil(ext * sqrt(a)));
  const int32_t ry = static_cast<int32_t>(ceil(ext * sqrt(c)));
  const T iz = T(1) / g.p[2];
  const T mx = K[0] * g.p[0] * iz + K[2];
  const T my = K[4] * g.p[1] * iz + K[5];
  if (rx <= 0 || ry <= 0) return false;
  if (mx + rx <= T(0) || mx - rx >= T(width) || my + ry <= T(0) || my - ry >= T(height)) return false;

  mean2d[0] = mx;
  mean2d[1] = my;
  conic[0] = c / det;
  conic[1] = -b / det;
  conic[2] = a / det;
  *depth = g.p[2];
  radius[0] = rx;
  radius[1] = ry;
  *opacity_out = op;
  return true;
}

// Backward of project_fwd for one Gaussian that was *not* culled (radius > 0).
// Given dL/d{mean2d, conic, depth, opacity_out}, writes (not accumulates) dL/d{mean [3], covar [6], opacity} and
// dL/dT_cam_world [16] (row-major; the last row gets zero). Restates the forward formulas it differentiates.
//
// Symmetric matrices are differentiated as functions of their packed entries: an off-diagonal entry such as
// covar[1] = Sigma_xy = Sigma_yx gets twice the (symmetrised) matrix gradient.
template <typename T>
S4D_HD void project_bwd(const T* mean, const T* covar, T opacity, const T* T_cam_world, const T* K, int width,
                        int height, T eps2d, bool antialiased, const T* v_mean2d, const T* v_conic, T v_depth,
                        T v_opacity_out, T* v_mean, T* v_covar, T* v_opacity, T* v_T_cam_world) {
  CamGaussian<T> g;
  cam_gaussian(mean, covar, T_cam_world, K, width, height, g);
  const T R[9] = {T_cam_world[0], T_cam_world[1], T_cam_world[2], T_cam_world[4], T_cam_world[5],
                  T_cam_world[6], T_cam_world[8], T_cam_world[9], T_cam_world[10]};
  const T fx = K[0], fy = K[4];
  const T x = g.p[0], y = g.p[1], z = g.p[2];
  const T iz = T(1) / z, iz2 = iz * iz, iz3 = iz2 * iz;

  // Dilated 2D covariance Sigma' = [[a, b], [b, c]] = cov2d + eps2d I, det = a c - b^2.
  const T a = g.cov2d[0] + eps2d, b = g.cov2d[1], c = g.cov2d[2] + eps2d;
  const T det = a * c - b * b;
  const T idet = T(1) / det;

  // conic = (c, -b, a) / det. With s = v_conic . (c, -b, a) and d det = c da - 2 b db + a dc:
  //   dL/da = v_conic_c / det - s c / det^2,
  //   dL/db = -v_conic_b / det + 2 s b / det^2,
  //   dL/dc = v_conic_a / det - s a / det^2.
  const T s_conic = v_conic[0] * c - v_conic[1] * b + v_conic[2] * a;
  // The dilation only shifts the diagonal, so these are also dL/dcov2d (packed xx, xy, yy).
  T v_cov2d[3] = {v_conic[2] * idet - s_conic * c * idet * idet, -v_conic[1] * idet + T(2) * s_conic * b * idet * idet,
                  v_conic[0] * idet - s_conic * a * idet * idet};

  // opacity' = opacity sqrt(ratio), ratio = det_raw / det, det_raw = cov2d_xx cov2d_yy - cov2d_xy^2 (Mip-Splatting).
  if (antialiased) {
    const T det_raw = g.cov2d[0] * g.cov2d[2] - g.cov2d[1] * g.cov2d[1];
    const T ratio = det_raw * idet;
    const T sq = ratio > T(0) ? sqrt(ratio) : T(0);
    *v_opacity = v_opacity_out * sq;
    if (sq > T(0)) {
      // d sqrt(ratio) = d ratio / (2 sqrt(ratio)); d ratio = d det_raw / det - ratio d det / det.
      const T v_ratio = v_opacity_out * opacity * T(0.5) / sq;
      const T v_det_raw = v_ratio * idet, v_det = -v_ratio * ratio * idet;
      v_cov2d[0] += v_det_raw * g.cov2d[2] + v_det * c;
      v_cov2d[1] += -T(2) * (v_det_raw * g.cov2d[1] + v_det * b);
      v_cov2d[2] += v_det_raw * g.cov2d[0] + v_det * a;
    }
  } else {
    *v_opacity = v_opacity_out;
  }

  // cov2d = J cov_c J^T. With G = [[v_xx, v_xy / 2], [v_xy / 2, v_yy]] the symmetric gradient of the 2x2 matrix:
  // dL/dcov_c = J^T G J and dL/dJ = 2 G J cov_c.
  const T G[2][2] = {{v_cov2d[0], T(0.5) * v_cov2d[1]}, {T(0.5) * v_cov2d[1], v_cov2d[2]}};
  const T* J = g.J;  // [[J0, 0, J2], [0, J4, J5]]
  const T Jm[2][3] = {{J[0], T(0), J[2]}, {T(0), J[4], J[5]}};
  const T* cc = g.cov_c;
  const T Sc[3][3] = {{cc[0], cc[1], cc[2]}, {cc[1], cc[3], cc[4]}, {cc[2], cc[4], cc[5]}};
  T GJ[2][3];
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 3; ++k) GJ[i][k] = G[i][0] * Jm[0][k] + G[i][1] * Jm[1][k];
  T Mc[3][3];  // dL/dcov_c, symmetric
  for (int k = 0; k < 3; ++k)
    for (int l = 0; l < 3; ++l) Mc[k][l] = Jm[0][k] * GJ[0][l] + Jm[1][k] * GJ[1][l];
  T v_J[2][3];
  for (int i = 0; i < 2; ++i)
    for (int l = 0; l < 3; ++l)
      v_J[i][l] = T(2) * (GJ[i][0] * Sc[0][l] + GJ[i][1] * Sc[1][l] + GJ[i][2] * Sc[2][l]);

  // J = [[fx / z, 0, -fx tx / z^2], [0, fy / z, -fy ty / z^2]], tx = z clamp(x / z, -lim_x-, lim_x+).
  // Unclamped: tx = x, so d tx / dx = 1, d tx / dz = 0. Clamped: tx = z lim, so d tx / dx = 0, d tx / dz = tx / z.
  T v_p[3] = {T(0), T(0), T(0)};
  // d J0 / dz = -fx / z^2, d J4 / dz = -fy / z^2.
  v_p[2] += -(v_J[0][0] * fx + v_J[1][1] * fy) * iz2;
  {
    const T tx = -J[2] * z * z / fx;  // recover tx from J[2] = -fx tx / z^2
    const T ty = -J[5] * z * z / fy;
    const T dtx_dx = g.x_clamped ? T(0) : T(1), dtx_dz = g.x_clamped ? tx * iz : T(0);
    const T dty_dy = g.y_clamped ? T(0) : T(1), dty_dz = g.y_clamped ? ty * iz : T(0);
    // d J2 = -fx (d tx / z^2 - 2 tx dz / z^3)
    v_p[0] += v_J[0][2] * (-fx * dtx_dx * iz2);
    v_p[2] += v_J[0][2] * (-fx * dtx_dz * iz2 + T(2) * fx * tx * iz3);
    v_p[1] += v_J[1][2] * (-fy * dty_dy * iz2);
    v_p[2] += v_J[1][2] * (-fy * dty_dz * iz2 + T(2) * fy * ty * iz3);
  }

  // mean2d = (fx x / z + cx, fy y / z + cy), depth = z.
  v_p[0] += v_mean2d[0] * fx * iz;
  v_p[1] += v_mean2d[1] * fy * iz;
  v_p[2] += -(v_mean2d[0] * fx * x + v_mean2d[1] * fy * y) * iz2 + v_depth;

  // cov_c = R Sigma R^T: dL/dSigma = R^T Mc R, dL/dR += 2 Mc R Sigma (Mc and Sigma symmetric).
  const T S[3][3] = {{covar[0], covar[1], covar[2]}, {covar[1], covar[3], covar[4]}, {covar[2], covar[4], covar[5]}};
  T McR[3][3], RS[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      McR[i][j] = Mc[i][0] * R[0 * 3 + j] + Mc[i][1] * R[1 * 3 + j] + Mc[i][2] * R[2 * 3 + j];
      RS[i][j] = R[i * 3 + 0] * S[0][j] + R[i * 3 + 1] * S[1][j] + R[i * 3 + 2] * S[2][j];
    }
  T V[3][3];  // R^T Mc R
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      V[i][j] = R[0 * 3 + i] * McR[0][j] + R[1 * 3 + i] * McR[1][j] + R[2 * 3 + i] * McR[2][j];
  v_covar[0] = V[0][0];
  v_covar[1] = T(2) * V[0][1];
  v_covar[2] = T(2) * V[0][2];
  v_covar[3] = V[1][1];
  v_covar[4] = T(2) * V[1][2];
  v_covar[5] = V[2][2];

  // p = R mu + t: dL/dmu = R^T v_p, dL/dR += v_p mu^T, dL/dt = v_p.
  for (int j = 0; j < 3; ++j) v_mean[j] = R[0 * 3 + j] * v_p[0] + R[1 * 3 + j] * v_p[1] + R[2 * 3 + j] * v_p[2];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      const T McRS = Mc[i][0] * RS[0][j] + Mc[i][1] * RS[1][j] + Mc[i][2] * RS[2][j];
      v_T_cam_world[i * 4 + j] = T(2) * McRS + v_p[i] * mean[j];
    }
    v_T_cam_world[i * 4 + 3] = v_p[i];
  }
  for (int j = 0; j < 4; ++j) v_T_cam_world[12 + j] = T(0);
}

// ---------------------------------------------------------------------------------------------------------------
// Spherical harmonics (real basis and constants of 3DGS, degrees 0..3).
// ---------------------------------------------------------------------------------------------------------------

// Constants of the real SH basis used by 3DGS: the normalisation sqrt((2l + 1) / 4pi (l - |m|)! / (l + |m|)!)
// (times sqrt(2) for m != 0) folded with the signs and integer factors of the polynomials in sh_basis (Sloan,
// "Stupid Spherical Harmonics (SH) Tricks", 2008, appendix A2).
constexpr double SH_C0 = 0.28209479177387814;
constexpr double SH_C1 = 0.4886025119029199;
constexpr double SH_C2_0 = 1.0925484305920792;
constexpr double SH_C2_1 = -1.0925484305920792;
constexpr double SH_C2_2 = 0.31539156525252005;
constexpr double SH_C2_3 = -1.0925484305920792;
constexpr double SH_C2_4 = 0.5462742152960396;
constexpr double SH_C3_0 = -0.5900435899266435;
constexpr double SH_C3_1 = 2.890611442640554;
constexpr double SH_C3_2 = -0.4570457994644658;
constexpr double SH_C3_3 = 0.3731763325901154;
constexpr double SH_C3_4 = -0.4570457994644658;
constexpr double SH_C3_5 = 1.445305721320277;
constexpr double SH_C3_6 = -0.5900435899266435;

// The (degree + 1)^2 basis functions Y_k at a unit direction (x, y, z), written as the polynomials 3DGS uses (not
// simplified with x^2 + y^2 + z^2 = 1, so their gradients below are those of these polynomials).
template <typename T>
S4D_HD void sh_basis(int degree, T x, T y, T z, T* Y) {
  Y[0] = T(SH_C0);
  if (degree < 1) return;
  Y[1] = -T(SH_C1) * y;
  Y[2] = T(SH_C1) * z;
  Y[3] = -T(SH_C1) * x;
  if (degree < 2) return;
  const T xx = x * x, yy = y * y, zz = z * z;
  Y[4] = T(SH_C2_0) * x * y;
  Y[5] = T(SH_C2_1) * y * z;
  Y[6] = T(SH_C2_2) * (T(2) * zz - xx - yy);
  Y[7] = T(SH_C2_3) * x * z;
  Y[8] = T(SH_C2_4) * (xx - yy);
  if (degree < 3) return;
  Y[9] = T(SH_C3_0) * y * (T(3) * xx - yy);
  Y[10] = T(SH_C3_1) * x * y * z;
  Y[11] = T(SH_C3_2) * y * (T(4) * zz - xx - yy);
  Y[12] = T(SH_C3_3) * z * (T(2) * zz - T(3) * xx - T(3) * yy);
  Y[13] = T(SH_C3_4) * x * (T(4) * zz - xx - yy);
  Y[14] = T(SH_C3_5) * z * (xx - yy);
  Y[15] = T(SH_C3_6) * x * (xx - T(3) * yy);
}

// v_n = sum_k w_k grad Y_k(x, y, z), the gradient of sum_k w_k Y_k with respect to the unit direction.
template <typename T>
S4D_HD void sh_basis_vjp(int degree, T x, T y, T z, const T* w, T* v_n) {
  v_n[0] = v_n[1] = v_n[2] = T(0);
  if (degree < 1) return;
  // Y1 = -C1 y, Y2 = C1 z, Y3 = -C1 x
  v_n[0] += -T(SH_C1) * w[3];
  v_n[1] += -T(SH_C1) * w[1];
  v_n[2] += T(SH_C1) * w[2];
  if (degree < 2) return;
  const T xx = x * x, yy = y * y, zz = z * z;
  // Y4 = C2_0 x y
  v_n[0] += T(SH_C2_0) * y * w[4];
  v_n[1] += T(SH_C2_0) * x * w[4];
  // Y5 = C2_1 y z
  v_n[1] += T(SH_C2_1) * z * w[5];
  v_n[2] += T(SH_C2_1) * y * w[5];
  // Y6 = C2_2 (2 z^2 - x^2 - y^2)
  v_n[0] += -T(2) * T(SH_C2_2) * x * w[6];
  v_n[1] += -T(2) * T(SH_C2_2) * y * w[6];
  v_n[2] += T(4) * T(SH_C2_2) * z * w[6];
  // Y7 = C2_3 x z
  v_n[0] += T(SH_C2_3) * z * w[7];
  v_n[2] += T(SH_C2_3) * x * w[7];
  // Y8 = C2_4 (x^2 - y^2)
  v_n[0] += T(2) * T(SH_C2_4) * x * w[8];
  v_n[1] += -T(2) * T(SH_C2_4) * y * w[8];
  if (degree < 3) return;
  // Y9 = C3_0 y (3 x^2 - y^2)
  v_n[0] += T(6) * T(SH_C3_0) * x * y * w[9];
  v_n[1] += T(3) * T(SH_C3_0) * (xx - yy) * w[9];
  // Y10 = C3_1 x y z
  v_n[0] += T(SH_C3_1) * y * z * w[10];
  v_n[1] += T(SH_C3_1) * x * z * w[10];
  v_n[2] += T(SH_C3_1) * x * y * w[10];
  // Y11 = C3_2 y (4 z^2 - x^2 - y^2)
  v_n[0] += -T(2) * T(SH_C3_2) * x * y * w[11];
  v_n[1] += T(SH_C3_2) * (T(4) * zz - xx - T(3) * yy) * w[11];
  v_n[2] += T(8) * T(SH_C3_2) * y * z * w[11];
  // Y12 = C3_3 z (2 z^2 - 3 x^2 - 3 y^2)
  v_n[0] += -T(6) * T(SH_C3_3) * x * z * w[12];
  v_n[1] += -T(6) * T(SH_C3_3) * y * z * w[12];
  v_n[2] += T(3) * T(SH_C3_3) * (T(2) * zz - xx - yy) * w[12];
  // Y13 = C3_4 x (4 z^2 - x^2 - y^2)
  v_n[0] += T(SH_C3_4) * (T(4) * zz - T(3) * xx - yy) * w[13];
  v_n[1] += -T(2) * T(SH_C3_4) * x * y * w[13];
  v_n[2] += T(8) * T(SH_C3_4) * x * z * w[13];
  // Y14 = C3_5 z (x^2 - y^2)
  v_n[0] += T(2) * T(SH_C3_5) * x * z * w[14];
  v_n[1] += -T(2) * T(SH_C3_5) * y * z * w[14];
  v_n[2] += T(SH_C3_5) * (xx - yy) * w[14];
  // Y15 = C3_6 x (x^2 - 3 y^2)
  v_n[0] += T(3) * T(SH_C3_6) * (xx - yy) * w[15];
  v_n[1] += -T(6) * T(SH_C3_6) * x * y * w[15];
}

// out[d] = sum_k Y_k(dir / |dir|) coeffs[k * D + d] for k < (degree + 1)^2. coeffs points at one Gaussian's [K, D].
template <typename T>
S4D_HD void sh_fwd(int degree, const T* dir, const T* coeffs, int D, T* out) {
  const T norm = sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
  const T inv = norm > T(0) ? T(1) / norm : T(0);
  T Y[16];
  sh_basis(degree, dir[0] * inv, dir[1] * inv, dir[2] * inv, Y);
  const int n_basis = (degree + 1) * (degree + 1);
  for (int d = 0; d < D; ++d) {
    T acc = T(0);
    for (int k = 0; k < n_basis; ++k) acc += Y[k] * coeffs[k * D + d];
    out[d] = acc;
  }
}

// Backward of sh_fwd: accumulates dL/dcoeffs into v_coeffs [K, D] (caller-owned, +=) and writes dL/ddir [3].
template <typename T>
S4D_HD void sh_bwd(int degree, const T* dir, const T* coeffs, int D, const T* v_out, T* v_coeffs, T* v_dir) {
  const T norm = sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
  const T inv = norm > T(0) ? T(1) / norm : T(0);
  const T n[3] = {dir[0] * inv, dir[1] * inv, dir[2] * inv};
  T Y[16];
  sh_basis(degree, n[0], n[1], n[2], Y);
  // out_d = sum_k Y_k c_kd: dL/dc_kd = Y_k v_out_d, and dL/dY_k = w_k = sum_d c_kd v_out_d.
  const int n_basis = (degree + 1) * (degree + 1);
  T w[16];
  for (int k = 0; k < n_basis; ++k) {
    T acc = T(0);
    for (int d = 0; d < D; ++d) {
      v_coeffs[k * D + d] += Y[k] * v_out[d];
      acc += coeffs[k * D + d] * v_out[d];
    }
    w[k] = acc;
  }
  T v_n[3];
  sh_basis_vjp(degree, n[0], n[1], n[2], w, v_n);
  // n = dir / |dir|: dL/ddir = (v_n - n (n . v_n)) / |dir|.
  const T nv = n[0] * v_n[0] + n[1] * v_n[1] + n[2] * v_n[2];
  for (int i = 0; i < 3; ++i) v_dir[i] = (v_n[i] - n[i] * nv) * inv;
}

// ---------------------------------------------------------------------------------------------------------------
// Tile intersection (3DGS sec. 6: one sort key per (camera, tile, Gaussian) pair).
// ---------------------------------------------------------------------------------------------------------------

// Width of the tile field of a sort key: enough bits for the ids 0 .. n_tiles - 1, and at least 1.
S4D_HD int tile_id_bits(int64_t n_tiles) {
  int bits = 1;
  while ((int64_t(1) << bits) < n_tiles) ++bits;
  return bits;
}

// Tiles a Gaussian covers: [x0, x1) x [y0, y1) = [floor((m - r) / ts), ceil((m + r) / ts)) per axis, clamped to
// the grid. Empty (x0 == x1 or y0 == y1) when either radius is <= 0.
template <typename T>
S4D_HD void tile_rect(const T* mean2d, const int32_t* radius, int tile_size, int tiles_w, int tiles_h, int* x0,
                      int* x1, int* y0, int* y1) {
  if (radius[0] <= 0 || radius[1] <= 0) {
    *x0 = *x1 = *y0 = *y1 = 0;
    return;
  }
  const T ts = T(tile_size);
  // Clamp before the int conversion so that far off-screen centres cannot overflow it.
  *x0 = static_cast<int>(clampv(floor((mean2d[0] - T(radius[0])) / ts), T(0), T(tiles_w)));
  *x1 = static_cast<int>(clampv(ceil((mean2d[0] + T(radius[0])) / ts), T(0), T(tiles_w)));
  *y0 = static_cast<int>(clampv(floor((mean2d[1] - T(radius[1])) / ts), T(0), T(tiles_h)));
  *y1 = static_cast<int>(clampv(ceil((mean2d[1] + T(radius[1])) / ts), T(0), T(tiles_h)));
}

// Sort key camera << (32 + tile_bits) | tile << 32 | float_bits(depth). Depths are positive (z >= near > 0), and
// the bits of positive IEEE floats order like the floats, so sorting keys sorts by camera, tile, then depth.
template <typename T>
S4D_HD int64_t isect_key(int64_t camera, int64_t tile, int tile_bits, T depth) {
  const float depth_f = static_cast<float>(depth);
  uint32_t depth_bits;
  memcpy(&depth_bits, &depth_f, sizeof(depth_bits));
  const uint64_t key = (static_cast<uint64_t>(camera) << (32 + tile_bits)) | (static_cast<uint64_t>(tile) << 32) |
                       static_cast<uint64_t>(depth_bits);
  return static_cast<int64_t>(key);
}

// ---------------------------------------------------------------------------------------------------------------
// Per-pixel evaluation (3DGS eq. 2-3).
// ---------------------------------------------------------------------------------------------------------------

// sigma = 1/2 (a dx^2 + c dy^2) + b dx dy, with d = mean2d - pixel centre.
template <typename T>
S4D_HD T gaussian_sigma(const T* conic, T dx, T dy) {
  return T(0.5) * (conic[0] * dx * dx + conic[2] * dy * dy) + conic[1] * dx * dy;
}

// alpha = min(ALPHA_MAX, vis) for vis = opacity * exp(-sigma), with the C^1 ramp below 2 * ALPHA_MIN in
// smooth-cutoff mode. Returns 0 when the contribution is skipped. `dalpha_dvis` receives d alpha / d vis: zero when
// clamped at ALPHA_MAX, 1 when unclamped and hard, ramp-adjusted in smooth mode.
template <typename T>
S4D_HD T alpha_from_vis(T vis, bool smooth_cutoff, T* dalpha_dvis) {
  if (vis >= T(ALPHA_MAX)) {
    *dalpha_dvis = T(0);
    return T(ALPHA_MAX);
  }
  if (!smooth_cutoff) {
    if (vis < T(ALPHA_MIN)) {
      *dalpha_dvis = T(0);
      return T(0);
    }
    *dalpha_dvis = T(1);
    return vis;
  }
  // alpha = vis * s(t), t = (vis - ALPHA_MIN) / ALPHA_MIN clamped to [0, 1], s(t) = 3t^2 - 2t^3.
  const T t = clampv((vis - T(ALPHA_MIN)) / T(ALPHA_MIN), T(0), T(1));
  const T s = t * t * (T(3) - T(2) * t);
  const T ds_dt = (t > T(0) && t < T(1)) ? T(6) * t * (T(1) - t) : T(0);
  *dalpha_dvis = s + vis * ds_dt / T(ALPHA_MIN);
  return vis * s;
}

// alpha_from_vis(opacity * exp(-sigma)); see there. Backward passes that also need exp(-sigma) (for d alpha /
// d opacity) call alpha_from_vis directly to evaluate the exponential once.
template <typename T>
S4D_HD T alpha_from_sigma(T opacity, T sigma, bool smooth_cutoff, T* dalpha_dvis) {
  return alpha_from_vis(opacity * exp(-sigma), smooth_cutoff, dalpha_dvis);
}

}  // namespace splat4d_raster
