// Runs every *_cuda entry point of kernels.h under the host CUDA emulation (include/cuda_runtime.h) and compares
// it with the CPU path (*_cpu.cpp, float32) on random scenes: projection, SH, tile intersection (exact), and
// rasterization forward/backward for compiled-in and generic channel counts, hard and smooth cutoff, with and
// without a background, including tiles with several shared-memory batches, saturated pixels, partial tiles and an
// empty intersection list. Built and run by scripts/check_cuda_emulated.sh; exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels.h"

using namespace splat4d_raster;

namespace {

int g_failures = 0;

template <typename T>
void expect_equal(const char* what, const std::vector<T>& got, const std::vector<T>& want) {
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i] && ++bad && first < 0) first = static_cast<int64_t>(i);
  const bool ok = got.size() == want.size() && bad == 0;
  std::printf("  %-4s %-44s exact (%zu values)", ok ? "ok" : "FAIL", what, want.size());
  if (!ok) {
    std::printf(": %lld differ, first at %lld: %lld vs %lld", static_cast<long long>(bad),
                static_cast<long long>(first), first >= 0 ? static_cast<long long>(got[first]) : 0LL,
                first >= 0 ? static_cast<long long>(want[first]) : 0LL);
    ++g_failures;
  }
  std::printf("\n");
}

// |got - want| <= atol + rtol |want| with atol relative to the largest |want|.
void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                  double rtol = 1e-4, double atol_rel = 1e-5) {
  double scale = 0;
  for (float w : want) scale = std::max(scale, std::abs(double(w)));
  const double atol = atol_rel * std::max(scale, 1e-30);
  double worst = 0;
  int64_t worst_i = -1, bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(double(got[i]) - double(want[i]));
    const double excess = err / (atol + rtol * std::abs(double(want[i])));
    if (!(excess <= 1.0)) ++bad;
    if (!(excess <= worst)) {
      worst = excess;
      worst_i = static_cast<int64_t>(i);
    }
  }
  const bool ok = got.size() == want.size() && bad == 0;
  std::printf("  %-4s %-44s max|want| %.3g, worst err/tol %.3g", ok ? "ok" : "FAIL", what, scale, worst);
  if (worst_i >= 0) std::printf(" (at %lld: %.7g vs %.7g)", static_cast<long long>(worst_i), got[worst_i], want[worst_i]);
  if (!ok) {
    std::printf(", %lld of %zu outside", static_cast<long long>(bad), want.size());
    ++g_failures;
  }
  std::printf("\n");
}

std::vector<float> uniform(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

struct Scene {
  int64_t C, N;
  int W, H;
  std::vector<float> means, covars, opacities, T_cam_world, Ks;
};

// N Gaussians in front of C cameras that look roughly down +z from near the origin.
Scene make_scene(std::mt19937& rng, int64_t C, int64_t N, int W, int H, float scale_lo, float scale_hi) {
  Scene s{C, N, W, H, {}, {}, {}, {}, {}};
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  s.means.resize(N * 3);
  for (int64_t n = 0; n < N; ++n) {
    s.means[n * 3 + 0] = 1.2f * u(rng);
    s.means[n * 3 + 1] = 0.9f * u(rng);
    s.means[n * 3 + 2] = 3.f + 1.5f * u(rng);
  }
  s.covars.resize(N * 6);
  for (int64_t n = 0; n < N; ++n) {
    // Sigma = R diag(s^2) R^T with R from a random unit quaternion.
    float q[4] = {u(rng), u(rng), u(rng), u(rng)};
    const float qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]) + 1e-6f;
    for (float& x : q) x /= qn;
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    const float R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                        2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
    const std::vector<float> sc = uniform(rng, 3, scale_lo, scale_hi);
    float M[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        M[i][j] = 0;
        for (int k = 0; k < 3; ++k) M[i][j] += R[i * 3 + k] * sc[k] * sc[k] * R[j * 3 + k];
      }
    const float packed[6] = {M[0][0], M[0][1], M[0][2], M[1][1], M[1][2], M[2][2]};
    std::copy(packed, packed + 6, s.covars.begin() + n * 6);
  }
  s.opacities = uniform(rng, N, 0.05f, 0.97f);
  s.T_cam_world.assign(C * 16, 0.f);
  s.Ks.assign(C * 9, 0.f);
  for (int64_t c = 0; c < C; ++c) {
    const float a = 0.15f * float(c) * u(rng);  // small yaw
    float* T = s.T_cam_world.data() + c * 16;
    T[0] = std::cos(a), T[2] = std::sin(a), T[5] = 1.f, T[8] = -std::sin(a), T[10] = std::cos(a), T[15] = 1.f;
    T[3] = 0.1f * u(rng), T[7] = 0.1f * u(rng), T[11] = 0.2f * u(rng);
    float* K = s.Ks.data() + c * 9;
    K[0] = 0.9f * W, K[4] = 0.9f * W, K[2] = 0.5f * W + 2.f * u(rng), K[5] = 0.5f * H + 2.f * u(rng), K[8] = 1.f;
  }
  return s;
}

struct Projected {
  std::vector<float> means2d, conics, depths, opacities;
  std::vector<int32_t> radii;
};

Projected project(const Scene& s, const ProjectSettings<float>& ps, bool cuda) {
  Projected p{std::vector<float>(s.C * s.N * 2), std::vector<float>(s.C * s.N * 3), std::vector<float>(s.C * s.N),
              std::vector<float>(s.C * s.N), std::vector<int32_t>(s.C * s.N * 2)};
  if (cuda)
    project_fwd_cuda(s.means.data(), s.covars.data(), s.opacities.data(), s.T_cam_world.data(), s.Ks.data(), s.C, s.N,
                     ps, p.means2d.data(), p.conics.data(), p.depths.data(), p.radii.data(), p.opacities.data(),
                     nullptr);
  else
    project_fwd_cpu<float>(s.means.data(), s.covars.data(), s.opacities.data(), s.T_cam_world.data(), s.Ks.data(), s.C,
                           s.N, ps, p.means2d.data(), p.conics.data(), p.depths.data(), p.radii.data(),
                           p.opacities.data());
  return p;
}

void test_project(std::mt19937& rng, const Scene& s, bool antialiased) {
  std::printf("project (C=%lld, N=%lld, antialiased=%d)\n", (long long)s.C, (long long)s.N, antialiased);
  const ProjectSettings<float> ps{s.W, s.H, 0.3f, 0.01f, 100.f, antialiased};
  const Projected cpu = project(s, ps, false), gpu = project(s, ps, true);
  int64_t visible = 0;
  for (int64_t i = 0; i < s.C * s.N; ++i) visible += cpu.radii[i * 2] > 0;
  std::printf("       %lld of %lld (camera, Gaussian) pairs visible\n", (long long)visible, (long long)(s.C * s.N));
  expect_close("means2d", gpu.means2d, cpu.means2d);
  expect_close("conics", gpu.conics, cpu.conics);
  expect_close("depths", gpu.depths, cpu.depths);
  expect_close("opacities", gpu.opacities, cpu.opacities);
  expect_equal("radii", gpu.radii, cpu.radii);

  const int64_t CN = s.C * s.N;
  const std::vector<float> v_means2d = uniform(rng, CN * 2, -1, 1), v_conics = uniform(rng, CN * 3, -1, 1),
                           v_depths = uniform(rng, CN, -1, 1), v_op = uniform(rng, CN, -1, 1);
  std::vector<float> g_means[2], g_covars[2], g_opac[2], g_T[2];
  for (int k = 0; k < 2; ++k) {
    g_means[k].assign(s.N * 3, 0.f), g_covars[k].assign(s.N * 6, 0.f), g_opac[k].assign(s.N, 0.f);
    g_T[k].assign(s.C * 16, 0.f);
  }
  project_bwd_cpu<float>(s.means.data(), s.covars.data(), s.opacities.data(), s.T_cam_world.data(), s.Ks.data(), s.C,
                         s.N, ps, cpu.radii.data(), v_means2d.data(), v_conics.data(), v_depths.data(), v_op.data(),
                         g_means[0].data(), g_covars[0].data(), g_opac[0].data(), g_T[0].data());
  project_bwd_cuda(s.means.data(), s.covars.data(), s.opacities.data(), s.T_cam_world.data(), s.Ks.data(), s.C, s.N,
                   ps, cpu.radii.data(), v_means2d.data(), v_conics.data(), v_depths.data(), v_op.data(),
                   g_means[1].data(), g_covars[1].data(), g_opac[1].data(), g_T[1].data(), nullptr);
  expect_close("v_means", g_means[1], g_means[0]);
  expect_close("v_covars", g_covars[1], g_covars[0]);
  expect_close("v_opacities", g_opac[1], g_opac[0]);
  expect_close("v_T_cam_world", g_T[1], g_T[0], 1e-4, 1e-5);
}

void test_sh(std::mt19937& rng, int64_t C, int64_t N) {
  const int64_t K = 16, D = 3;
  const std::vector<float> dirs = uniform(rng, C * N * 3, -1, 1), coeffs = uniform(rng, N * K * D, -1, 1),
                           v_colors = uniform(rng, C * N * D, -1, 1);
  for (int degree = 0; degree <= 3; ++degree) {
    std::printf("eval_sh (C=%lld, N=%lld, degree=%d)\n", (long long)C, (long long)N, degree);
    std::vector<float> col[2], v_coeffs[2], v_dirs[2];
    for (int k = 0; k < 2; ++k) {
      col[k].assign(C * N * D, 0.f), v_coeffs[k].assign(N * K * D, 0.f), v_dirs[k].assign(C * N * 3, 0.f);
    }
    sh_fwd_cpu<float>(degree, dirs.data(), coeffs.data(), C, N, K, D, col[0].data());
    sh_fwd_cuda(degree, dirs.data(), coeffs.data(), C, N, K, D, col[1].data(), nullptr);
    sh_bwd_cpu<float>(degree, dirs.data(), coeffs.data(), C, N, K, D, v_colors.data(), v_coeffs[0].data(),
                      v_dirs[0].data());
    sh_bwd_cuda(degree, dirs.data(), coeffs.data(), C, N, K, D, v_colors.data(), v_coeffs[1].data(), v_dirs[1].data(),
                nullptr);
    expect_close("colors", col[1], col[0]);
    expect_close("v_coeffs", v_coeffs[1], v_coeffs[0]);
    expect_close("v_dirs", v_dirs[1], v_dirs[0]);
  }
}

struct Isect {
  int64_t M;
  std::vector<int64_t> isect_ids;
  std::vector<int32_t> flatten_ids, tile_offsets;
};

Isect intersect(const Projected& p, int64_t C, int64_t N, const RasterDims& d, bool cuda) {
  std::vector<int32_t> counts(C * N, 0);
  if (cuda) intersect_count_cuda(p.means2d.data(), p.radii.data(), C, N, d, counts.data(), nullptr);
  else intersect_count_cpu<float>(p.means2d.data(), p.radii.data(), C, N, d, counts.data());
  std::vector<int64_t> cum(C * N);
  int64_t acc = 0;
  for (int64_t i = 0; i < C * N; ++i) cum[i] = (acc += counts[i]);
  Isect r{acc, std::vector<int64_t>(acc), std::vector<int32_t>(acc), std::vector<int32_t>(C * d.tiles_h * d.tiles_w, -7)};
  if (cuda) {
    std::vector<int64_t> keys_in(acc);
    std::vector<int32_t> ids_in(acc);
    size_t temp_bytes = 0;
    intersect_emit_sort_cuda(p.means2d.data(), p.radii.data(), p.depths.data(), C, N, d, cum.data(), acc, nullptr,
                             nullptr, nullptr, nullptr, nullptr, &temp_bytes, nullptr);
    if (temp_bytes == 0) {
      std::printf("  FAIL temp_bytes query returned 0\n");
      ++g_failures;
    }
    std::vector<char> temp(temp_bytes);
    intersect_emit_sort_cuda(p.means2d.data(), p.radii.data(), p.depths.data(), C, N, d, cum.data(), acc,
                             keys_in.data(), ids_in.data(), r.isect_ids.data(), r.flatten_ids.data(), temp.data(),
                             &temp_bytes, nullptr);
    intersect_offsets_cuda(r.isect_ids.data(), acc, C, d, r.tile_offsets.data(), nullptr);
  } else {
    intersect_emit_cpu<float>(p.means2d.data(), p.radii.data(), p.depths.data(), C, N, d, cum.data(),
                              r.isect_ids.data(), r.flatten_ids.data());
    intersect_offsets_cpu(r.isect_ids.data(), acc, C, d, r.tile_offsets.data());
  }
  return r;
}

RasterDims dims_for(int W, int H, bool smooth) {
  return RasterDims{W, H, 16, (W + 15) / 16, (H + 15) / 16, smooth};
}

void test_intersect(const Projected& p, int64_t C, int64_t N, const RasterDims& d, Isect* out) {
  std::printf("intersect_tiles (C=%lld, N=%lld, %dx%d tiles)\n", (long long)C, (long long)N, d.tiles_w, d.tiles_h);
  const Isect cpu = intersect(p, C, N, d, false), gpu = intersect(p, C, N, d, true);
  int32_t longest = 0;
  for (size_t t = 0; t < cpu.tile_offsets.size(); ++t) {
    const int32_t end = t + 1 < cpu.tile_offsets.size() ? cpu.tile_offsets[t + 1] : int32_t(cpu.M);
    longest = std::max(longest, end - cpu.tile_offsets[t]);
  }
  std::printf("       M = %lld pairs, longest tile run %d\n", (long long)cpu.M, longest);
  expect_equal("M", std::vector<int64_t>{gpu.M}, std::vector<int64_t>{cpu.M});
  expect_equal("isect_ids", gpu.isect_ids, cpu.isect_ids);
  expect_equal("flatten_ids", gpu.flatten_ids, cpu.flatten_ids);
  expect_equal("tile_offsets", gpu.tile_offsets, cpu.tile_offsets);
  *out = cpu;
}

void test_rasterize(std::mt19937& rng, const Projected& p, const Isect& is, int64_t C, int64_t N, int64_t D,
                    const RasterDims& d, bool with_background) {
  std::printf("rasterize (C=%lld, N=%lld, D=%lld, %dx%d, smooth_cutoff=%d, background=%d)\n", (long long)C,
              (long long)N, (long long)D, d.width, d.height, d.smooth_cutoff, with_background);
  const int64_t P = C * d.height * d.width;
  const std::vector<float> colors = uniform(rng, C * N * D, 0, 1);
  const std::vector<float> bg = uniform(rng, C * D, 0, 1);
  const float* bgp = with_background ? bg.data() : nullptr;
  std::vector<float> rc[2], ra[2];
  std::vector<int32_t> last[2], median[2];
  for (int k = 0; k < 2; ++k) {
    rc[k].assign(P * D, 0.f), ra[k].assign(P, 0.f), last[k].assign(P, 0), median[k].assign(P, -1);
  }
  rasterize_fwd_cpu<float>(p.means2d.data(), p.conics.data(), colors.data(), p.opacities.data(), bgp,
                           is.tile_offsets.data(), is.flatten_ids.data(), C, N, D, is.M, d, rc[0].data(),
                           ra[0].data(), last[0].data(), median[0].data());
  rasterize_fwd_cuda(p.means2d.data(), p.conics.data(), colors.data(), p.opacities.data(), bgp,
                     is.tile_offsets.data(), is.flatten_ids.data(), C, N, D, is.M, d, rc[1].data(), ra[1].data(),
                     last[1].data(), median[1].data(), nullptr);
  int64_t saturated = 0;
  int32_t max_last = 0;
  for (int64_t i = 0; i < P; ++i) {
    saturated += ra[0][i] > 1.f - 2e-4f;
    max_last = std::max(max_last, last[0][i]);
  }
  std::printf("       %lld of %lld pixels saturated, largest last_id %d\n", (long long)saturated, (long long)P,
              max_last);
  expect_close("render_colors", rc[1], rc[0]);
  expect_close("render_alphas", ra[1], ra[0]);
  expect_equal("last_ids", last[1], last[0]);
  expect_equal("median_ids", median[1], median[0]);

  const std::vector<float> v_rc = uniform(rng, P * D, -1, 1), v_ra = uniform(rng, P, -1, 1);
  std::vector<float> g[2][6];
  for (int k = 0; k < 2; ++k) {
    g[k][0].assign(C * N * 2, 0.f), g[k][1].assign(C * N * 2, 0.f), g[k][2].assign(C * N * 3, 0.f);
    g[k][3].assign(C * N * D, 0.f), g[k][4].assign(C * N, 0.f), g[k][5].assign(C * D, 0.f);
  }
  rasterize_bwd_cpu<float>(p.means2d.data(), p.conics.data(), colors.data(), p.opacities.data(), bgp,
                           is.tile_offsets.data(), is.flatten_ids.data(), C, N, D, is.M, d, ra[0].data(),
                           last[0].data(), v_rc.data(), v_ra.data(), g[0][0].data(), g[0][1].data(), g[0][2].data(),
                           g[0][3].data(), g[0][4].data(), g[0][5].data());
  rasterize_bwd_cuda(p.means2d.data(), p.conics.data(), colors.data(), p.opacities.data(), bgp, is.tile_offsets.data(),
                     is.flatten_ids.data(), C, N, D, is.M, d, ra[0].data(), last[0].data(), v_rc.data(), v_ra.data(),
                     g[1][0].data(), g[1][1].data(), g[1][2].data(), g[1][3].data(), g[1][4].data(), g[1][5].data(),
                     nullptr);
  // Sums over many pixels in a different order: a looser tolerance than the forward.
  expect_close("v_means2d", g[1][0], g[0][0], 2e-3, 2e-4);
  expect_close("v_means2d_abs", g[1][1], g[0][1], 2e-3, 2e-4);
  expect_close("v_conics", g[1][2], g[0][2], 2e-3, 2e-4);
  expect_close("v_colors", g[1][3], g[0][3], 2e-3, 2e-4);
  expect_close("v_opacities", g[1][4], g[0][4], 2e-3, 2e-4);
  expect_close("v_backgrounds", g[1][5], g[0][5], 2e-3, 2e-4);
}

}  // namespace

int main() {
  std::mt19937 rng(1234);

  // Two cameras, a 45x35 image (3x3 tiles, the last row and column partial), Gaussians dense enough that the
  // centre tiles hold more than one 256-entry batch and many pixels saturate.
  const int64_t C = 2, N = 900;
  const int W = 45, H = 35;
  const Scene scene = make_scene(rng, C, N, W, H, 0.02f, 0.25f);
  test_project(rng, scene, false);
  test_project(rng, scene, true);
  test_sh(rng, C, 300);

  const ProjectSettings<float> ps{W, H, 0.3f, 0.01f, 100.f, false};
  const Projected p = project(scene, ps, false);
  Isect is;
  test_intersect(p, C, N, dims_for(W, H, false), &is);
  const struct {
    int64_t D;
    bool smooth, bg;
  } cases[] = {{3, false, true}, {3, true, false}, {1, false, false}, {2, true, true}, {4, false, true},
               {5, false, true}, {7, true, false}};
  for (const auto& c : cases) test_rasterize(rng, p, is, C, N, c.D, dims_for(W, H, c.smooth), c.bg);

  // Sparse scene: few Gaussians, so most tiles are empty and runs are short.
  {
    const Scene sparse = make_scene(rng, 3, 12, 70, 50, 0.02f, 0.1f);
    const ProjectSettings<float> sps{70, 50, 0.3f, 0.01f, 100.f, false};
    const Projected sp = project(sparse, sps, false);
    Isect sis;
    test_intersect(sp, 3, 12, dims_for(70, 50, false), &sis);
    test_rasterize(rng, sp, sis, 3, 12, 3, dims_for(70, 50, false), true);
  }

  // Nothing visible: M == 0, every tile empty; the image is the background.
  {
    Scene behind = make_scene(rng, 1, 20, 33, 17, 0.02f, 0.1f);
    for (int64_t n = 0; n < behind.N; ++n) behind.means[n * 3 + 2] = -5.f;  // behind the camera
    const ProjectSettings<float> bps{33, 17, 0.3f, 0.01f, 100.f, false};
    const Projected bp = project(behind, bps, false);
    Isect bis;
    test_intersect(bp, 1, 20, dims_for(33, 17, false), &bis);
    test_rasterize(rng, bp, bis, 1, 20, 3, dims_for(33, 17, false), true);
  }

  if (g_failures > 0) {
    std::printf("CUDA emulation check FAILED: %d comparison(s)\n", g_failures);
    return 1;
  }
  std::printf("CUDA emulation check passed\n");
  return 0;
}
