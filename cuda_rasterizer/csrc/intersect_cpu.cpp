// Tile/Gaussian intersection on the CPU: count the tiles of each projected Gaussian, emit one sort key per
// (camera, tile, Gaussian) pair, stable-sort the keys (std::stable_sort where CUDA uses a cub radix sort; both keep
// pairs with equal keys in Gaussian order), then find where each tile's run starts.
#include <algorithm>
#include <utility>
#include <vector>

#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {

// Loops over fewer items than this run on one thread: waking the OpenMP team costs more than the work.
constexpr int64_t MIN_PARALLEL_ITEMS = 2048;

template <typename T>
void intersect_count_cpu(const T* means2d, const int32_t* radii, int64_t C, int64_t N, const RasterDims& d,
                         int32_t* tiles_per_gauss) {
#pragma omp parallel for schedule(static) if (C * N >= MIN_PARALLEL_ITEMS)
  for (int64_t i = 0; i < C * N; ++i) {
    int x0, x1, y0, y1;
    tile_rect(means2d + i * 2, radii + i * 2, d.tile_size, d.tiles_w, d.tiles_h, &x0, &x1, &y0, &y1);
    tiles_per_gauss[i] = std::max(0, x1 - x0) * std::max(0, y1 - y0);
  }
}

template <typename T>
void intersect_emit_cpu(const T* means2d, const int32_t* radii, const T* depths, int64_t C, int64_t N,
                        const RasterDims& d, const int64_t* cum_tiles, int64_t* isect_ids, int32_t* flatten_ids) {
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int tile_bits = tile_id_bits(n_tiles);
  const int64_t M = C * N > 0 ? cum_tiles[C * N - 1] : 0;
  if (M == 0) return;

  // 1. Emit the keys of pair i into [cum_tiles[i - 1], cum_tiles[i]), so the unsorted list is in Gaussian order.
  //    Keys are held unsigned so that a set top bit (many cameras) sorts last, not first.
  std::vector<std::pair<uint64_t, int32_t>> pairs(M);
#pragma omp parallel for schedule(static) if (C * N >= MIN_PARALLEL_ITEMS)
  for (int64_t i = 0; i < C * N; ++i) {
    int x0, x1, y0, y1;
    tile_rect(means2d + i * 2, radii + i * 2, d.tile_size, d.tiles_w, d.tiles_h, &x0, &x1, &y0, &y1);
    int64_t cur = i == 0 ? 0 : cum_tiles[i - 1];
    const int64_t c = i / N;
    for (int ty = y0; ty < y1; ++ty)
      for (int tx = x0; tx < x1; ++tx) {
        const int64_t key = isect_key(c, static_cast<int64_t>(ty) * d.tiles_w + tx, tile_bits, depths[i]);
        pairs[cur++] = {static_cast<uint64_t>(key), static_cast<int32_t>(i)};
      }
  }

  // 2. Stable sort by key alone: pairs with equal keys keep their Gaussian order.
  std::stable_sort(pairs.begin(), pairs.end(), [](const std::pair<uint64_t, int32_t>& a,
                                                  const std::pair<uint64_t, int32_t>& b) { return a.first < b.first; });
#pragma omp parallel for schedule(static) if (M >= MIN_PARALLEL_ITEMS)
  for (int64_t j = 0; j < M; ++j) {
    isect_ids[j] = static_cast<int64_t>(pairs[j].first);
    flatten_ids[j] = pairs[j].second;
  }
}

void intersect_offsets_cpu(const int64_t* isect_ids, int64_t M, int64_t C, const RasterDims& d,
                           int32_t* tile_offsets) {
  // tile_offsets[c, tile] = index of the first key whose (camera, tile) prefix is >= (c, tile). An empty tile thus
  // gets the start of the next non-empty one (or M), so every tile's run is [offset, next tile's offset).
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int tile_bits = tile_id_bits(n_tiles);
#pragma omp parallel for schedule(static) if (C * n_tiles >= MIN_PARALLEL_ITEMS / 16)
  for (int64_t g = 0; g < C * n_tiles; ++g) {
    const uint64_t prefix = (static_cast<uint64_t>(g / n_tiles) << tile_bits) | static_cast<uint64_t>(g % n_tiles);
    const int64_t* first = std::partition_point(
        isect_ids, isect_ids + M, [&](int64_t key) { return (static_cast<uint64_t>(key) >> 32) < prefix; });
    tile_offsets[g] = static_cast<int32_t>(first - isect_ids);
  }
}

#define S4D_INSTANTIATE(T)                                                                                       \
  template void intersect_count_cpu<T>(const T*, const int32_t*, int64_t, int64_t, const RasterDims&, int32_t*); \
  template void intersect_emit_cpu<T>(const T*, const int32_t*, const T*, int64_t, int64_t, const RasterDims&,   \
                                      const int64_t*, int64_t*, int32_t*);
S4D_INSTANTIATE(float)
S4D_INSTANTIATE(double)
#undef S4D_INSTANTIATE

}  // namespace splat4d_raster
