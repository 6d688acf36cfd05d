// Tile-based alpha compositing (3DGS eq. 3) on the CPU, forward and backward: the readable mirror of
// rasterize_cuda.cu. OpenMP splits the (camera, tile) pairs; inside a tile each pixel walks the tile's depth-sorted
// run of Gaussians, which is first gathered into a contiguous buffer (the CUDA kernel's shared-memory batch).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {

namespace {

// One entry of a tile's run, gathered so the per-pixel loops read contiguous memory.
template <typename T>
struct TileGaussian {
  T mean2d[2];
  T conic[3];
  T opacity;
  // Pixels with sigma above this get alpha < ALPHA_MIN and are skipped without evaluating exp(): opacity
  // exp(-sigma) < ALPHA_MIN <=> sigma > ln(opacity / ALPHA_MIN). The margin keeps rounding from ever skipping a
  // pixel that alpha_from_vis would keep, so this only saves work and never changes a result.
  T sigma_cutoff;
  int32_t id;  // flatten id c * N + n
};

// Margin added to TileGaussian::sigma_cutoff: a skipped pixel has vis < exp(-0.01) ALPHA_MIN ~ 0.99 ALPHA_MIN.
constexpr double SIGMA_CUTOFF_MARGIN = 0.01;

// Range [start, end) of the sorted intersection list that belongs to (camera, tile) g = c * n_tiles + tile.
inline void tile_range(const int32_t* tile_offsets, int64_t g, int64_t n_all_tiles, int64_t M, int64_t* start,
                       int64_t* end) {
  *start = tile_offsets[g];
  *end = g + 1 < n_all_tiles ? tile_offsets[g + 1] : M;
}

template <typename T>
void gather_tile(const T* means2d, const T* conics, const T* opacities, const int32_t* flatten_ids, int64_t start,
                 int64_t end, std::vector<TileGaussian<T>>& out) {
  out.resize(end - start);
  for (int64_t k = start; k < end; ++k) {
    const int32_t id = flatten_ids[k];
    TileGaussian<T>& g = out[k - start];
    g.mean2d[0] = means2d[id * 2 + 0];
    g.mean2d[1] = means2d[id * 2 + 1];
    g.conic[0] = conics[id * 3 + 0];
    g.conic[1] = conics[id * 3 + 1];
    g.conic[2] = conics[id * 3 + 2];
    g.opacity = opacities[id];
    g.sigma_cutoff = g.opacity > T(0) ? log(g.opacity / T(ALPHA_MIN)) + T(SIGMA_CUTOFF_MARGIN) : T(-1);
    g.id = id;
  }
}

template <typename T>
void atomic_add(T* dst, T value) {
#pragma omp atomic
  *dst += value;
}

}  // namespace

template <typename T>
void rasterize_fwd_cpu(const T* means2d, const T* conics, const T* colors, const T* opacities, const T* backgrounds,
                       const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C, int64_t N, int64_t D,
                       int64_t M, const RasterDims& d, T* render_colors, T* render_alphas, int32_t* last_ids,
                       int32_t* median_ids) {
  (void)N;
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int64_t W = d.width, H = d.height;
#pragma omp parallel if (C * n_tiles > 1)
  {
    std::vector<TileGaussian<T>> run;
    std::vector<T> pix(D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < C * n_tiles; ++g) {
      const int64_t c = g / n_tiles, tile = g % n_tiles;
      const int64_t tx = tile % d.tiles_w, ty = tile / d.tiles_w;
      int64_t start, end;
      tile_range(tile_offsets, g, C * n_tiles, M, &start, &end);
      gather_tile(means2d, conics, opacities, flatten_ids, start, end, run);
      const int64_t L = end - start;

      for (int64_t py = ty * d.tile_size; py < std::min(H, (ty + 1) * d.tile_size); ++py) {
        for (int64_t px = tx * d.tile_size; px < std::min(W, (tx + 1) * d.tile_size); ++px) {
          const T qx = T(px) + T(0.5), qy = T(py) + T(0.5);  // pixel centre
          T trans = T(1);                                  // transmittance in front of the current Gaussian
          int32_t last = 0, median = -1;
          for (int64_t k = 0; k < D; ++k) pix[k] = T(0);

          for (int64_t k = 0; k < L; ++k) {
            const TileGaussian<T>& gs = run[k];
            const T dx = gs.mean2d[0] - qx, dy = gs.mean2d[1] - qy;
            const T sigma = gaussian_sigma(gs.conic, dx, dy);
            if (sigma < T(0) || sigma > gs.sigma_cutoff) continue;
            T dalpha_dvis;
            const T alpha = alpha_from_sigma(gs.opacity, sigma, d.smooth_cutoff, &dalpha_dvis);
            if (alpha == T(0)) continue;  // below ALPHA_MIN
            const T next_trans = trans * (T(1) - alpha);
            if (next_trans <= T(TRANSMITTANCE_MIN)) break;  // saturated: stop before this Gaussian
            if (trans > T(MEDIAN_TRANSMITTANCE) && next_trans <= T(MEDIAN_TRANSMITTANCE)) median = gs.id;
            // 3DGS eq. 3: C = sum_i c_i alpha_i prod_{j<i} (1 - alpha_j).
            const T weight = alpha * trans;
            const T* color = colors + static_cast<int64_t>(gs.id) * D;
            for (int64_t ch = 0; ch < D; ++ch) pix[ch] += weight * color[ch];
            trans = next_trans;
            last = static_cast<int32_t>(k + 1);
          }

          const int64_t p = (c * H + py) * W + px;
          for (int64_t ch = 0; ch < D; ++ch)
            render_colors[p * D + ch] = pix[ch] + (backgrounds ? trans * backgrounds[c * D + ch] : T(0));
          render_alphas[p] = T(1) - trans;
          last_ids[p] = last;
          median_ids[p] = median;
        }
      }
    }
  }
}

template <typename T>
void rasterize_bwd_cpu(const T* means2d, const T* conics, const T* colors, const T* opacities, const T* backgrounds,
                       const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C, int64_t N, int64_t D,
                       int64_t M, const RasterDims& d, const T* render_alphas, const int32_t* last_ids,
                       const T* v_render_colors, const T* v_render_alphas, T* v_means2d, T* v_means2d_abs,
                       T* v_conics, T* v_colors, T* v_opacities, T* v_backgrounds) {
  (void)N;
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int64_t W = d.width, H = d.height;
  // Per-entry gradients of one tile: [v_mean2d (2), |v_mean2d| (2), v_conic (3), v_opacity (1), v_color (D)].
  // They are summed over the tile's pixels first and then added once per entry to the global outputs, which other
  // tiles (other threads) also write to, with an atomic add.
  const int64_t stride = 8 + D;
#pragma omp parallel if (C * n_tiles > 1)
  {
    std::vector<TileGaussian<T>> run;
    std::vector<T> grads, v_bg(D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < C * n_tiles; ++g) {
      const int64_t c = g / n_tiles, tile = g % n_tiles;
      const int64_t tx = tile % d.tiles_w, ty = tile / d.tiles_w;
      int64_t start, end;
      tile_range(tile_offsets, g, C * n_tiles, M, &start, &end);
      gather_tile(means2d, conics, opacities, flatten_ids, start, end, run);
      const int64_t L = end - start;
      grads.assign(L * stride, T(0));
      for (int64_t ch = 0; ch < D; ++ch) v_bg[ch] = T(0);

      for (int64_t py = ty * d.tile_size; py < std::min(H, (ty + 1) * d.tile_size); ++py) {
        for (int64_t px = tx * d.tile_size; px < std::min(W, (tx + 1) * d.tile_size); ++px) {
          const int64_t p = (c * H + py) * W + px;
          const T qx = T(px) + T(0.5), qy = T(py) + T(0.5);
          const T* v_pix = v_render_colors + p * D;
          const T v_alpha_pix = v_render_alphas ? v_render_alphas[p] : T(0);
          // colour = sum_i alpha_i T_i c_i + T_final bg, alpha_pix = 1 - T_final.
          const T trans_final = T(1) - render_alphas[p];
          // behind = v_pix . (sum_{j>i} alpha_j T_j c_j + T_final bg): the colour behind the current Gaussian,
          // projected on the cotangent (a scalar, so the loop below needs no per-channel state).
          T behind = T(0);
          for (int64_t ch = 0; ch < D; ++ch) {
            v_bg[ch] += trans_final * v_pix[ch];  // d colour / d bg = T_final
            if (backgrounds) behind += trans_final * backgrounds[c * D + ch] * v_pix[ch];
          }

          T trans = trans_final;  // transmittance behind the current Gaussian, T_{i+1} = T_i (1 - alpha_i)
          for (int64_t k = last_ids[p] - 1; k >= 0; --k) {
            const TileGaussian<T>& gs = run[k];
            const T dx = gs.mean2d[0] - qx, dy = gs.mean2d[1] - qy;
            const T sigma = gaussian_sigma(gs.conic, dx, dy);
            if (sigma < T(0) || sigma > gs.sigma_cutoff) continue;
            const T gauss = exp(-sigma);
            const T vis = gs.opacity * gauss;
            T dalpha_dvis;
            const T alpha = alpha_from_vis(vis, d.smooth_cutoff, &dalpha_dvis);
            if (alpha == T(0)) continue;
            const T inv_one_minus_alpha = T(1) / (T(1) - alpha);
            trans *= inv_one_minus_alpha;  // T_i = T_{i+1} / (1 - alpha_i), in front of this Gaussian
            const T weight = alpha * trans;
            const T* color = colors + static_cast<int64_t>(gs.id) * D;
            T* gk = grads.data() + k * stride;

            // d colour / d c_i = alpha_i T_i.
            T color_dot_v = T(0);
            for (int64_t ch = 0; ch < D; ++ch) {
              gk[8 + ch] += weight * v_pix[ch];
              color_dot_v += color[ch] * v_pix[ch];
            }
            // d colour / d alpha_i = T_i c_i - (sum_{j>i} alpha_j T_j c_j + T_final bg) / (1 - alpha_i);
            // d alpha_pix / d alpha_i = T_final / (1 - alpha_i).
            const T v_alpha = trans * color_dot_v - (behind - v_alpha_pix * trans_final) * inv_one_minus_alpha;
            behind += weight * color_dot_v;

            // alpha = f(vis), vis = opacity exp(-sigma): d vis / d opacity = exp(-sigma), d vis / d sigma = -vis.
            const T v_vis = v_alpha * dalpha_dvis;
            const T v_sigma = -v_vis * vis;
            gk[7] += v_vis * gauss;
            // sigma = 1/2 (a dx^2 + c dy^2) + b dx dy, d = mean2d - q.
            gk[4] += T(0.5) * dx * dx * v_sigma;
            gk[5] += dx * dy * v_sigma;
            gk[6] += T(0.5) * dy * dy * v_sigma;
            const T v_mx = v_sigma * (gs.conic[0] * dx + gs.conic[1] * dy);
            const T v_my = v_sigma * (gs.conic[1] * dx + gs.conic[2] * dy);
            gk[0] += v_mx;
            gk[1] += v_my;
            gk[2] += std::abs(v_mx);
            gk[3] += std::abs(v_my);
          }
        }
      }

      for (int64_t k = 0; k < L; ++k) {
        const int64_t id = run[k].id;
        const T* gk = grads.data() + k * stride;
        atomic_add(&v_means2d[id * 2 + 0], gk[0]);
        atomic_add(&v_means2d[id * 2 + 1], gk[1]);
        atomic_add(&v_means2d_abs[id * 2 + 0], gk[2]);
        atomic_add(&v_means2d_abs[id * 2 + 1], gk[3]);
        for (int j = 0; j < 3; ++j) atomic_add(&v_conics[id * 3 + j], gk[4 + j]);
        atomic_add(&v_opacities[id], gk[7]);
        for (int64_t ch = 0; ch < D; ++ch) atomic_add(&v_colors[id * D + ch], gk[8 + ch]);
      }
      if (v_backgrounds)
        for (int64_t ch = 0; ch < D; ++ch) atomic_add(&v_backgrounds[c * D + ch], v_bg[ch]);
    }
  }
}

#define S4D_INSTANTIATE(T)                                                                                          \
  template void rasterize_fwd_cpu<T>(const T*, const T*, const T*, const T*, const T*, const int32_t*,             \
                                     const int32_t*, int64_t, int64_t, int64_t, int64_t, const RasterDims&, T*, T*, \
                                     int32_t*, int32_t*);                                                           \
  template void rasterize_bwd_cpu<T>(const T*, const T*, const T*, const T*, const T*, const int32_t*,             \
                                     const int32_t*, int64_t, int64_t, int64_t, int64_t, const RasterDims&,         \
                                     const T*, const int32_t*, const T*, const T*, T*, T*, T*, T*, T*, T*);
S4D_INSTANTIATE(float)
S4D_INSTANTIATE(double)
#undef S4D_INSTANTIATE

}  // namespace splat4d_raster
