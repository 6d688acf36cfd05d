// Tile-based alpha compositing (3DGS eq. 3) on the CPU, forward and backward: the mirror of rasterize_cuda.cu.
// OpenMP splits the (camera, tile) pairs. Inside a tile the loops run Gaussian-major, as the CUDA kernel's threads
// do: each Gaussian of the tile's depth-sorted run is composited onto all the tile's pixels at once, with the
// per-pixel state (transmittance, colour, ids) held in small arrays, so the pixel loop is a branch-free
// `omp simd` loop the compiler vectorises (4 to 8 pixels per instruction); the backward's per-Gaussian gradient is
// then a reduction over the tile's pixels, added once to the global outputs. A pixel-major loop (each pixel walking
// the run alone) branches per pixel and per Gaussian and runs scalar: it was about 2x slower forward and backward
// (bench/rasterizer_stages.py, one thread). The loops vectorise only with -fno-trapping-math and with selects
// written as arithmetic (`pick`); _backend.py adds -mavx2 -mfma where the CPU has them.
// A Gaussian's passes visit only its footprint in the tile (`Footprint`: per row, the chunks the chord of its
// ellipse reaches) and, of those, the chunks where some pixel can still take it (`for_each_chunk`'s `live`).
#include <algorithm>
#include <cmath>
#include <cstring>
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
  // Pixels with sigma above this get alpha < ALPHA_MIN: opacity exp(-sigma) < ALPHA_MIN <=> sigma >
  // ln(opacity / ALPHA_MIN). The margin keeps rounding from ever skipping a pixel that alpha_from_vis would keep.
  T sigma_cutoff;
  // Half-extents in x and y of the ellipse sigma <= sigma_cutoff (plus a pixel), or -1 for "the whole tile" where
  // the conic is not positive definite; the per-Gaussian loops visit only the tile's pixels inside this box.
  T extent[2];
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
    // sigma = 1/2 d^T Q d <= s bounds |dx| by sqrt(2 s (Q^-1)_xx) = sqrt(2 s c / det), |dy| by sqrt(2 s a / det).
    const T det = g.conic[0] * g.conic[2] - g.conic[1] * g.conic[1];
    const T s2 = T(2) * std::max(g.sigma_cutoff, T(0));
    const bool definite = g.conic[0] > T(0) && det > T(0) && std::isfinite(det);
    g.extent[0] = definite ? sqrt(s2 * g.conic[2] / det) + T(1) : T(-1);
    g.extent[1] = definite ? sqrt(s2 * g.conic[0] / det) + T(1) : T(-1);
    g.id = id;
  }
}

template <typename T>
void atomic_add(T* dst, T value) {
#pragma omp atomic
  *dst += value;
}

// exp(x) in a form the vectoriser can inline into a SIMD loop (a call to the C library's expf cannot be):
// x = n ln2 + r with |r| <= ln2 / 2, exp(r) by Cephes' degree-7 polynomial (relative error about 1e-7, within
// an ulp or two of std::exp), times 2^n built in the exponent bits. Inputs are clamped to [-87, 87] (exp of
// anything below is under 1.6e-38, far below any alpha the rasterizer keeps). The double path, used for
// gradcheck, keeps std::exp.
inline float simd_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
}
inline double simd_exp(double x) { return std::exp(x); }

// c ? x : y for finite x and y, as arithmetic on an int mask: GCC 12 leaves the SIMD loops unvectorised when
// float selects there feed further compares, or when a bool is converted to float. Exact: one term is x or y
// times 1, the other 0.
template <typename T>
inline T pick(bool c, T x, T y) {
  const int32_t m = c;
  return T(m) * x + T(1 - m) * y;
}

// alpha_from_vis (math.cuh) without branches, for the SIMD loops: the same alpha and d alpha / d vis.
template <typename T>
struct AlphaSlope {
  T alpha, dalpha_dvis;
};

// The cutoff mode is a template parameter so that the hard cutoff, what training renders with, computes only
// its own branch.
template <bool SMOOTH, typename T>
inline AlphaSlope<T> alpha_branchless(T vis) {
  const bool clamped = vis >= T(ALPHA_MAX);
  if constexpr (SMOOTH) {  // vis * s(t), s(t) = 3t^2 - 2t^3
    T t = (vis - T(ALPHA_MIN)) / T(ALPHA_MIN);
    t = t < T(0) ? T(0) : t;
    t = t > T(1) ? T(1) : t;
    const T s = t * t * (T(3) - T(2) * t);
    const T ds_dt = pick((t > T(0)) & (t < T(1)), T(6) * t * (T(1) - t), T(0));
    return {pick(clamped, T(ALPHA_MAX), vis * s), pick(clamped, T(0), s + vis * ds_dt / T(ALPHA_MIN))};
  } else {  // vis, or 0 below ALPHA_MIN
    const T s = pick(vis >= T(ALPHA_MIN), T(1), T(0));
    return {pick(clamped, T(ALPHA_MAX), vis * s), pick(clamped, T(0), s)};
  }
}

// Pixels per SIMD chunk: the per-Gaussian loops visit a row's pixels in whole chunks of 8 (one AVX register of
// floats, two SSE ones), a fixed trip count the vectoriser turns into straight-line vector code; a row's box is
// widened to whole chunks, whose extra pixels lie outside the Gaussian's box and so fail its cutoff test.
constexpr int64_t CHUNK = 8;

inline int64_t row_stride(int64_t tile_size) { return (tile_size + CHUNK - 1) / CHUNK * CHUNK; }

// Per-thread scratch of one tile: per-pixel state, one array each (structure of arrays), pixel (r, col) of the
// tile at r * row_stride + col; columns past the image (or past tile_size) are never alive.
template <typename T>
struct TileScratch {
  std::vector<T> qx, trans, a, b, c, w;
  std::vector<int32_t> last, median, alive;
  void resize(int64_t n, int64_t D) {
    for (auto* v : {&qx, &trans, &b, &c, &w}) v->resize(n);
    a.resize(n * std::max<int64_t>(D, 1));
    for (auto* v : {&last, &median, &alive}) v->resize(n);
  }
};

// A tile's pixels: origin (x0, y0) and size (tw, th), clipped to the image.
struct TileBox {
  int64_t x0, y0, tw, th;
};

inline TileBox tile_box(const RasterDims& d, int64_t tile) {
  const int64_t x0 = (tile % d.tiles_w) * d.tile_size, y0 = (tile / d.tiles_w) * d.tile_size;
  return {x0, y0, std::min<int64_t>(d.width - x0, d.tile_size), std::min<int64_t>(d.height - y0, d.tile_size)};
}

// Rows [*r0, *r1) and columns [*c0, *c1) of tile `b` whose pixel centres may lie inside Gaussian g's box
// (`TileGaussian::extent`); empty when none can.
template <typename T>
void pixel_range(const TileGaussian<T>& g, const TileBox& b, int64_t* r0, int64_t* r1, int64_t* c0, int64_t* c1) {
  *r0 = 0, *r1 = b.th, *c0 = 0, *c1 = b.tw;
  if (g.sigma_cutoff < T(0)) {
    *r1 = 0;  // opacity <= 0: no pixel passes
    return;
  }
  // pixel centre x0 + col + 0.5 within [mean - extent, mean + extent]
  const T cx = g.mean2d[0] - T(b.x0) - T(0.5), cy = g.mean2d[1] - T(b.y0) - T(0.5);
  if (g.extent[0] < T(0) || !std::isfinite(cx) || !std::isfinite(cy)) return;  // the whole tile
  *c0 = std::max<int64_t>(0, static_cast<int64_t>(std::max(T(-1), std::ceil(cx - g.extent[0]))));
  *c1 = std::min<int64_t>(b.tw, static_cast<int64_t>(std::min(T(b.tw), std::floor(cx + g.extent[0]))) + 1);
  *r0 = std::max<int64_t>(0, static_cast<int64_t>(std::max(T(-1), std::ceil(cy - g.extent[1]))));
  *r1 = std::min<int64_t>(b.th, static_cast<int64_t>(std::min(T(b.th), std::floor(cy + g.extent[1]))) + 1);
  if (*c1 <= *c0) *r1 = *r0;
}

// Columns [c0, c1) widened to whole chunks.
inline void widen_to_chunks(int64_t* c0, int64_t* c1) {
  *c0 = *c0 / CHUNK * CHUNK;
  *c1 = (*c1 + CHUNK - 1) / CHUNK * CHUNK;
}

// The chunks of a tile that a Gaussian's passes visit: rows [r0, r1), and in row r the columns [c0[r], c1[r]) (whole
// chunks; empty where the row misses the Gaussian). Every pass over one Gaussian's pixels visits exactly these, so
// the per-pixel state one pass leaves (the weights) is what the next one reads.
struct Footprint {
  int64_t r0 = 0, r1 = 0;
  int64_t c0[TILE_SIZE] = {}, c1[TILE_SIZE] = {};
};

// Gaussian g's footprint in tile b: the rows of its box (`pixel_range`), each cut to the chord of the ellipse
// sigma <= sigma_cutoff at the row's pixel centres, plus a pixel either side. An elongated Gaussian crossing the
// tile at a slant fills a small part of its box; its rows then skip the chunks the chord does not reach.
template <typename T>
Footprint footprint(const TileGaussian<T>& g, const TileBox& b) {
  Footprint f;
  int64_t c0, c1;
  pixel_range(g, b, &f.r0, &f.r1, &c0, &c1);
  widen_to_chunks(&c0, &c1);
  // a definite conic at a finite mean (else pixel_range gave the whole tile, and every row takes it whole)
  const bool ellipse = g.extent[0] >= T(0) && std::isfinite(g.mean2d[0]) && std::isfinite(g.mean2d[1]);
  // The chord only where the row's box spans more than one chunk (one chunk cannot get narrower): small Gaussians
  // pay a multiply-add per row, to drop the rows of the box's margin that miss the ellipse.
  const bool chords = ellipse && c1 - c0 > CHUNK;
  // sigma = 1/2 a dx^2 + b dx dy + 1/2 c dy^2 <= s at a fixed dy: dx in [(-b dy - q) / a, (-b dy + q) / a] with
  // q = sqrt(2 a s - det dy^2); dx = mean_x - pixel centre, so the columns lie within cx + (b dy -+ q) / a.
  const T a = g.conic[0], det = g.conic[0] * g.conic[2] - g.conic[1] * g.conic[1];
  const T inv_a = chords ? T(1) / a : T(0), slope = g.conic[1] * inv_a;
  const T s2a = T(2) * a * std::max(g.sigma_cutoff, T(0));
  const T cx = g.mean2d[0] - T(b.x0) - T(0.5);
  // a bound clamped to [-1, tw] before the cast, which a huge or non-finite one would make undefined
  const auto clamp = [&](T x) { return static_cast<int64_t>(std::min(T(b.tw), std::max(T(-1), x))); };
  for (int64_t r = f.r0; r < f.r1; ++r) {
    f.c0[r] = c0, f.c1[r] = c1;
    if (!ellipse) continue;
    const T dy = g.mean2d[1] - (T(b.y0 + r) + T(0.5));
    const T disc = s2a - det * dy * dy;
    if (disc < T(0)) {  // the row passes above or below the ellipse
      f.c0[r] = f.c1[r] = 0;
      continue;
    }
    if (!chords) continue;
    const T centre = cx + slope * dy, half = std::sqrt(disc) * inv_a + T(1);
    int64_t lo = clamp(std::ceil(centre - half)), hi = clamp(std::floor(centre + half)) + 1;
    if (hi <= lo) {
      f.c0[r] = f.c1[r] = 0;
      continue;
    }
    widen_to_chunks(&lo, &hi);
    f.c0[r] = std::max(lo, c0), f.c1[r] = std::min(hi, c1);
  }
  return f;
}

// Calls body(r, cb0, row) for each chunk of CHUNK pixels of footprint `f` in a tile whose rows lie `rs` apart and
// where live(row) holds: r is the chunk's row, cb0 its first column, row = r * rs + cb0 its first pixel. The bodies
// hold the `omp simd` loops over the chunk's lanes; the call is inlined, so they vectorise as written. `live` skips
// the chunks whose pixels the Gaussian cannot change (all saturated in front of it, or all finished behind it), so
// that opaque surfaces cost what their visible Gaussians cost, as the warp-wide exits of the CUDA kernel make them.
template <typename P, typename F>
inline void for_each_chunk(const Footprint& f, int64_t rs, P&& live, F&& body) {
  for (int64_t r = f.r0; r < f.r1; ++r)
    for (int64_t cb0 = f.c0[r]; cb0 < f.c1[r]; cb0 += CHUNK) {
      const int64_t row = r * rs + cb0;
      if (live(row)) body(r, cb0, row);
    }
}

// Whether any of the CHUNK flags from `flags` is set.
inline bool any_set(const int32_t* flags) {
  int32_t m = 0;
  for (int64_t j = 0; j < CHUNK; ++j) m |= flags[j];
  return m != 0;
}

// Whether any of the CHUNK pixels from `last` has its last contributor behind Gaussian k (so k blends into it).
inline bool any_after(const int32_t* last, int32_t k) {
  int32_t m = 0;
  for (int64_t j = 0; j < CHUNK; ++j) m |= static_cast<int32_t>(last[j] > k);
  return m != 0;
}

// The Gaussian's exponent at offset (dx, dy) = mean2d - pixel centre: 1/2 d^T Q d with conic Q = [[a, b], [b, c]].
template <typename T>
inline T conic_sigma(T a, T b, T c, T dx, T dy) {
  return T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
}

template <bool SMOOTH, typename T>
void rasterize_fwd_tiles(const T* means2d, const T* conics, const T* colors, const T* opacities,
                         const T* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                         int64_t D, int64_t M, const RasterDims& d, T* render_colors, T* render_alphas,
                         int32_t* last_ids, int32_t* median_ids) {
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int64_t W = d.width, HW = static_cast<int64_t>(d.width) * d.height, ts = d.tile_size;
  const int64_t rs = row_stride(ts), n_pix = rs * ts;
#pragma omp parallel if (C * n_tiles > 1)
  {
    std::vector<TileGaussian<T>> run;
    TileScratch<T> s;
    s.resize(n_pix, D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < C * n_tiles; ++g) {
      const int64_t c = g / n_tiles;
      const TileBox box = tile_box(d, g % n_tiles);
      int64_t start, end;
      tile_range(tile_offsets, g, C * n_tiles, M, &start, &end);
      gather_tile(means2d, conics, opacities, flatten_ids, start, end, run);
      const int64_t L = end - start;
      T* __restrict qx = s.qx.data();        // pixel-centre x of each column
      T* __restrict trans = s.trans.data();  // transmittance in front of the next Gaussian
      T* __restrict w = s.w.data();          // this Gaussian's blending weight alpha * T per pixel
      T* __restrict pix = s.a.data();        // colour, [D, n_pix]
      int32_t* __restrict last = s.last.data();
      int32_t* __restrict median = s.median.data();
      int32_t* __restrict alive = s.alive.data();  // 0 once a pixel has saturated
      for (int64_t col = 0; col < rs; ++col) qx[col] = T(box.x0 + col) + T(0.5);
      for (int64_t i = 0; i < n_pix; ++i) {
        trans[i] = T(1);
        last[i] = 0;
        median[i] = -1;
        alive[i] = (i / rs < box.th && i % rs < box.tw) ? 1 : 0;
      }
      std::fill(pix, pix + D * n_pix, T(0));
      for (int64_t k = 0; k < L; ++k) {
        if (k % 32 == 31) {  // stop once every pixel of the tile has saturated
          int32_t n_alive = 0;
          for (int64_t i = 0; i < n_pix; ++i) n_alive += alive[i];
          if (n_alive == 0) break;
        }
        const TileGaussian<T>& gs = run[k];
        const Footprint fp = footprint(gs, box);
        const T mx = gs.mean2d[0], my = gs.mean2d[1], ca = gs.conic[0], cb = gs.conic[1], cc = gs.conic[2];
        const T op = gs.opacity, cutoff = gs.sigma_cutoff;
        const int32_t id = gs.id, next_last = static_cast<int32_t>(k + 1);
        // a chunk whose pixels have all saturated is skipped by both passes: the colour pass, which reads the
        // weights, skips what the first pass skipped, and a chunk that saturated in the first pass has weights 0
        const auto alive_chunk = [&](int64_t row) { return any_set(alive + row); };
        for_each_chunk(fp, rs, alive_chunk, [&](int64_t r, int64_t cb0, int64_t row) {
          const T dy = my - (T(box.y0 + r) + T(0.5));
#pragma omp simd
          for (int64_t j = 0; j < CHUNK; ++j) {
            const int64_t i = row + j;
            const T sigma = conic_sigma(ca, cb, cc, mx - qx[cb0 + j], dy);
            const T alpha = alpha_branchless<SMOOTH>(op * simd_exp(-sigma)).alpha;
            // `&` rather than `&&` throughout the SIMD loops: no short-circuit branches
            const bool ok = (alive[i] != 0) & (sigma >= T(0)) & (sigma <= cutoff) & (alpha > T(0));
            const T t = trans[i];
            const T next = t * (T(1) - alpha);
            const bool saturated = ok & (next <= T(TRANSMITTANCE_MIN));  // stop before this Gaussian
            const bool blend = ok & !saturated;
            // 3DGS eq. 3: C = sum_i c_i alpha_i prod_{j<i} (1 - alpha_j).
            w[i] = pick(blend, alpha * t, T(0));
            const bool crosses = blend & (t > T(MEDIAN_TRANSMITTANCE)) & (next <= T(MEDIAN_TRANSMITTANCE));
            median[i] = crosses ? id : median[i];
            trans[i] = pick(blend, next, t);
            last[i] = blend ? next_last : last[i];
            alive[i] = saturated ? 0 : alive[i];
          }
        });
        const T* color = colors + static_cast<int64_t>(id) * D;
        for (int64_t ch = 0; ch < D; ++ch) {
          const T col_value = color[ch];
          T* __restrict out = pix + ch * n_pix;
          for_each_chunk(fp, rs, alive_chunk, [&](int64_t, int64_t, int64_t row) {
#pragma omp simd
            for (int64_t j = 0; j < CHUNK; ++j) out[row + j] += w[row + j] * col_value;
          });
        }
      }

      for (int64_t r = 0; r < box.th; ++r)
        for (int64_t col = 0; col < box.tw; ++col) {
          const int64_t i = r * rs + col;
          const int64_t p = c * HW + (box.y0 + r) * W + box.x0 + col;
          for (int64_t ch = 0; ch < D; ++ch)
            render_colors[p * D + ch] =
                pix[ch * n_pix + i] + (backgrounds ? trans[i] * backgrounds[c * D + ch] : T(0));
          render_alphas[p] = T(1) - trans[i];
          last_ids[p] = last[i];
          median_ids[p] = median[i];
        }
    }
  }
}

template <bool SMOOTH, typename T>
void rasterize_bwd_tiles(const T* means2d, const T* conics, const T* colors, const T* opacities,
                         const T* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                         int64_t D, int64_t M, const RasterDims& d, const T* render_alphas, const int32_t* last_ids,
                         const T* v_render_colors, const T* v_render_alphas, T* v_means2d, T* v_means2d_abs,
                         T* v_conics, T* v_colors, T* v_opacities, T* v_backgrounds) {
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int64_t W = d.width, HW = static_cast<int64_t>(d.width) * d.height, ts = d.tile_size;
  const int64_t rs = row_stride(ts), n_pix = rs * ts;
#pragma omp parallel if (C * n_tiles > 1)
  {
    std::vector<TileGaussian<T>> run;
    TileScratch<T> s;
    s.resize(n_pix, D);
    std::vector<T> v_bg(D), color_dot(n_pix);
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < C * n_tiles; ++g) {
      const int64_t c = g / n_tiles;
      const TileBox box = tile_box(d, g % n_tiles);
      int64_t start, end;
      tile_range(tile_offsets, g, C * n_tiles, M, &start, &end);
      gather_tile(means2d, conics, opacities, flatten_ids, start, end, run);
      T* __restrict qx = s.qx.data();
      T* __restrict trans = s.trans.data();   // transmittance behind the current Gaussian, T_{i+1}
      T* __restrict behind = s.b.data();      // v_pix . (colour behind the current Gaussian)
      T* __restrict alpha_term = s.c.data();  // v_alpha_pix * T_final
      T* __restrict w = s.w.data();           // alpha_i T_i of the current Gaussian per pixel
      T* __restrict v_pix = s.a.data();       // cotangent of the colour, [D, n_pix]
      T* __restrict cdot = color_dot.data();  // colour_i . v_pix
      int32_t* __restrict last = s.last.data();
      for (int64_t col = 0; col < rs; ++col) qx[col] = T(box.x0 + col) + T(0.5);
      // pixels outside the image take no part (last 0) and add nothing (zero state)
      std::fill(last, last + n_pix, 0);
      for (T* v : {trans, behind, alpha_term, w, cdot}) std::fill(v, v + n_pix, T(0));
      std::fill(v_pix, v_pix + D * n_pix, T(0));
      int32_t max_last = 0;
      for (int64_t ch = 0; ch < D; ++ch) v_bg[ch] = T(0);
      for (int64_t r = 0; r < box.th; ++r)
        for (int64_t col = 0; col < box.tw; ++col) {
          const int64_t i = r * rs + col;
          const int64_t p = c * HW + (box.y0 + r) * W + box.x0 + col;
          // colour = sum_i alpha_i T_i c_i + T_final bg, alpha_pix = 1 - T_final.
          const T trans_final = T(1) - render_alphas[p];
          trans[i] = trans_final;
          alpha_term[i] = (v_render_alphas ? v_render_alphas[p] : T(0)) * trans_final;
          T bg = T(0);
          for (int64_t ch = 0; ch < D; ++ch) {
            const T v = v_render_colors[p * D + ch];
            v_pix[ch * n_pix + i] = v;
            v_bg[ch] += trans_final * v;  // d colour / d bg = T_final
            if (backgrounds) bg += trans_final * backgrounds[c * D + ch] * v;
          }
          behind[i] = bg;
          last[i] = last_ids[p];
          max_last = std::max(max_last, last[i]);
        }

      for (int64_t k = max_last - 1; k >= 0; --k) {
        const TileGaussian<T>& gs = run[k];
        const Footprint fp = footprint(gs, box);
        if (fp.r1 <= fp.r0) continue;
        const T mx = gs.mean2d[0], my = gs.mean2d[1], ca = gs.conic[0], cb = gs.conic[1], cc = gs.conic[2];
        const T op = gs.opacity, cutoff = gs.sigma_cutoff;
        const T* color = colors + static_cast<int64_t>(gs.id) * D;
        const int32_t kk = static_cast<int32_t>(k);
        // chunks whose pixels all finished compositing in front of Gaussian k take nothing from it: all three
        // passes skip them (the test does not change between the passes)
        const auto reached_chunk = [&](int64_t row) { return any_after(last + row, kk); };
        for_each_chunk(fp, rs, reached_chunk, [&](int64_t, int64_t, int64_t row) {
          T* __restrict cd = cdot + row;
          for (int64_t j = 0; j < CHUNK; ++j) cd[j] = T(0);
          for (int64_t ch = 0; ch < D; ++ch) {
            const T col_value = color[ch];
            const T* __restrict v = v_pix + ch * n_pix + row;
#pragma omp simd
            for (int64_t j = 0; j < CHUNK; ++j) cd[j] += col_value * v[j];
          }
        });
        // per-lane partial sums of this Gaussian's gradient, [8, CHUNK]: mean2d x, y, |x|, |y|, conic a, b, c,
        // opacity (summed over lanes after the loop, so the SIMD loop has no reduction)
        T acc[8][CHUNK] = {};
        int32_t hit[CHUNK] = {};
        for_each_chunk(fp, rs, reached_chunk, [&](int64_t r, int64_t cb0, int64_t row) {
          const T dy = my - (T(box.y0 + r) + T(0.5));
#pragma omp simd
          for (int64_t j = 0; j < CHUNK; ++j) {
            const int64_t i = row + j;
            const T dx = mx - qx[cb0 + j];
            const T sigma = conic_sigma(ca, cb, cc, dx, dy);
            const T gauss = simd_exp(-sigma);
            const T vis = op * gauss;
            const AlphaSlope<T> as = alpha_branchless<SMOOTH>(vis);
            const T alpha = as.alpha, dalpha_dvis = as.dalpha_dvis;
            const bool ok = (kk < last[i]) & (sigma >= T(0)) & (sigma <= cutoff) & (alpha > T(0));
            const T inv_one_minus_alpha = T(1) / (T(1) - alpha);
            const T t = trans[i] * inv_one_minus_alpha;  // T_i = T_{i+1} / (1 - alpha_i), in front of it
            const T weight = alpha * t;
            // d colour / d alpha_i = T_i c_i - (sum_{j>i} alpha_j T_j c_j + T_final bg) / (1 - alpha_i);
            // d alpha_pix / d alpha_i = T_final / (1 - alpha_i).
            const T v_alpha = t * cdot[i] - (behind[i] - alpha_term[i]) * inv_one_minus_alpha;
            behind[i] = pick(ok, behind[i] + weight * cdot[i], behind[i]);
            trans[i] = pick(ok, t, trans[i]);
            w[i] = pick(ok, weight, T(0));  // d colour / d c_i = alpha_i T_i
            // alpha = f(vis), vis = opacity exp(-sigma): d vis / d opacity = exp(-sigma), d vis / d sigma = -vis.
            const T v_vis = pick(ok, v_alpha * dalpha_dvis, T(0));
            const T v_sigma = -v_vis * vis;
            acc[7][j] += v_vis * gauss;
            // sigma = 1/2 (a dx^2 + c dy^2) + b dx dy, d = mean2d - q.
            acc[4][j] += T(0.5) * dx * dx * v_sigma;
            acc[5][j] += dx * dy * v_sigma;
            acc[6][j] += T(0.5) * dy * dy * v_sigma;
            const T v_mx = v_sigma * (ca * dx + cb * dy);
            const T v_my = v_sigma * (cb * dx + cc * dy);
            acc[0][j] += v_mx;
            acc[1][j] += v_my;
            acc[2][j] += std::abs(v_mx);
            acc[3][j] += std::abs(v_my);
            hit[j] |= static_cast<int32_t>(ok);
          }
        });
        int32_t hits = 0;
        for (int64_t j = 0; j < CHUNK; ++j) hits |= hit[j];
        if (hits == 0) continue;
        T g[8] = {};
        for (int q = 0; q < 8; ++q)
          for (int64_t j = 0; j < CHUNK; ++j) g[q] += acc[q][j];
        const T g_mx = g[0], g_my = g[1], g_ax = g[2], g_ay = g[3], g_a = g[4], g_b = g[5], g_c = g[6], g_op = g[7];
        const int64_t id = gs.id;
        atomic_add(&v_means2d[id * 2 + 0], g_mx);
        atomic_add(&v_means2d[id * 2 + 1], g_my);
        atomic_add(&v_means2d_abs[id * 2 + 0], g_ax);
        atomic_add(&v_means2d_abs[id * 2 + 1], g_ay);
        atomic_add(&v_conics[id * 3 + 0], g_a);
        atomic_add(&v_conics[id * 3 + 1], g_b);
        atomic_add(&v_conics[id * 3 + 2], g_c);
        atomic_add(&v_opacities[id], g_op);
        for (int64_t ch = 0; ch < D; ++ch) {
          const T* __restrict v = v_pix + ch * n_pix;
          T part[CHUNK] = {};
          for_each_chunk(fp, rs, reached_chunk, [&](int64_t, int64_t, int64_t row) {
#pragma omp simd
            for (int64_t j = 0; j < CHUNK; ++j) part[j] += w[row + j] * v[row + j];
          });
          T sum = T(0);
          for (int64_t j = 0; j < CHUNK; ++j) sum += part[j];
          atomic_add(&v_colors[id * D + ch], sum);
        }
      }
      if (v_backgrounds)
        for (int64_t ch = 0; ch < D; ++ch) atomic_add(&v_backgrounds[c * D + ch], v_bg[ch]);
    }
  }
}

}  // namespace

template <typename T>
void rasterize_fwd_cpu(const T* means2d, const T* conics, const T* colors, const T* opacities, const T* backgrounds,
                       const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C, int64_t N, int64_t D,
                       int64_t M, const RasterDims& d, T* render_colors, T* render_alphas, int32_t* last_ids,
                       int32_t* median_ids) {
  (void)N;
  const auto run = d.smooth_cutoff ? rasterize_fwd_tiles<true, T> : rasterize_fwd_tiles<false, T>;
  run(means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_colors,
      render_alphas, last_ids, median_ids);
}

template <typename T>
void rasterize_bwd_cpu(const T* means2d, const T* conics, const T* colors, const T* opacities, const T* backgrounds,
                       const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C, int64_t N, int64_t D,
                       int64_t M, const RasterDims& d, const T* render_alphas, const int32_t* last_ids,
                       const T* v_render_colors, const T* v_render_alphas, T* v_means2d, T* v_means2d_abs,
                       T* v_conics, T* v_colors, T* v_opacities, T* v_backgrounds) {
  (void)N;
  const auto run = d.smooth_cutoff ? rasterize_bwd_tiles<true, T> : rasterize_bwd_tiles<false, T>;
  run(means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_alphas,
      last_ids, v_render_colors, v_render_alphas, v_means2d, v_means2d_abs, v_conics, v_colors, v_opacities,
      v_backgrounds);
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
