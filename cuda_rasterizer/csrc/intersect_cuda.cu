// Tile/Gaussian intersection, depth-keyed sort and per-tile ranges, CUDA float32. Contract: ../README.md
// ("intersect_tiles") and kernels.h. Three steps, so that the caller can allocate the variable-size outputs:
//   1. intersect_count_cuda: tiles touched by each (camera, Gaussian);
//   2. (caller) inclusive cumsum -> cum_tiles, M = cum_tiles[-1]; intersect_emit_sort_cuda: keys in Gaussian order,
//      then a stable radix sort (cub), so equal keys keep Gaussian order;
//   3. intersect_offsets_cuda: the start of each (camera, tile) run in the sorted list.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "cuda_utils.cuh"
#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {
namespace {

constexpr int INTERSECT_THREADS = 256;

// One thread per (camera, Gaussian).
__global__ void __launch_bounds__(INTERSECT_THREADS)
    intersect_count_kernel(const float* __restrict__ means2d,  // [C, N, 2]
                           const int32_t* __restrict__ radii,  // [C, N, 2]
                           int64_t CN, RasterDims d,
                           int32_t* __restrict__ tiles_per_gauss) {  // [C, N]
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= CN) return;
  int x0, x1, y0, y1;
  tile_rect(means2d + idx * 2, radii + idx * 2, d.tile_size, d.tiles_w, d.tiles_h, &x0, &x1, &y0, &y1);
  tiles_per_gauss[idx] = max(0, x1 - x0) * max(0, y1 - y0);
}

// One thread per (camera, Gaussian): writes its pairs at [cum_tiles[idx - 1], cum_tiles[idx]), tiles in row-major
// order, with math.cuh's isect_key = camera << (32 + tile_bits) | tile << 32 | float_bits(depth) (for depth > 0
// the float bits order like the depths, so sorting the keys sorts by camera, then tile, then depth).
__global__ void __launch_bounds__(INTERSECT_THREADS)
    intersect_emit_kernel(const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                          const float* __restrict__ depths,  // [C, N]
                          int64_t N, int64_t CN, RasterDims d, int tile_bits,
                          const int64_t* __restrict__ cum_tiles,  // [C * N] inclusive cumsum
                          uint64_t* __restrict__ keys,            // [M]
                          int32_t* __restrict__ ids) {            // [M]
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= CN) return;
  int x0, x1, y0, y1;
  tile_rect(means2d + idx * 2, radii + idx * 2, d.tile_size, d.tiles_w, d.tiles_h, &x0, &x1, &y0, &y1);
  const int64_t camera = idx / N;
  const float depth = depths[idx];
  int64_t out = idx == 0 ? 0 : cum_tiles[idx - 1];
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x, ++out) {
      keys[out] = static_cast<uint64_t>(isect_key(camera, static_cast<int64_t>(y) * d.tiles_w + x, tile_bits, depth));
      ids[out] = static_cast<int32_t>(idx);
    }
  }
}

// One thread per sorted pair i. With run(t) the (camera, tile) id camera * tiles + tile of a key, tile_offsets[t]
// is the first i with run(i) >= t (M if none): pair 0 writes 0 for every id up to its own; where the id changes
// between i - 1 and i, pair i writes i for every id in (run(i - 1), run(i)]; the last pair writes M for every id after
// its own. Empty tiles so get an empty range [start, next start), and the last tile ends at M.
__global__ void __launch_bounds__(INTERSECT_THREADS)
    intersect_offsets_kernel(const uint64_t* __restrict__ keys,  // [M] sorted
                             int64_t M, int64_t n_runs, int64_t n_tiles, int tile_bits,
                             int32_t* __restrict__ tile_offsets) {  // [n_runs] = [C, tiles_h, tiles_w]
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M) return;
  const uint64_t tile_mask = (uint64_t(1) << tile_bits) - 1;
  auto run_of = [&](uint64_t key) {
    return static_cast<int64_t>(key >> (32 + tile_bits)) * n_tiles + static_cast<int64_t>((key >> 32) & tile_mask);
  };
  const int64_t cur = run_of(keys[i]);
  if (i == 0) {
    for (int64_t t = 0; t <= cur; ++t) tile_offsets[t] = 0;
  } else {
    const int64_t prev = run_of(keys[i - 1]);
    for (int64_t t = prev + 1; t <= cur; ++t) tile_offsets[t] = static_cast<int32_t>(i);
  }
  if (i == M - 1) {
    for (int64_t t = cur + 1; t < n_runs; ++t) tile_offsets[t] = static_cast<int32_t>(M);
  }
}

}  // namespace

void intersect_count_cuda(const float* means2d, const int32_t* radii, int64_t C, int64_t N, const RasterDims& d,
                          int32_t* tiles_per_gauss, void* stream) {
  launch("intersect_count_kernel", intersect_count_kernel, dim3(blocks_for(C * N, INTERSECT_THREADS)),
         dim3(INTERSECT_THREADS), as_stream(stream), means2d, radii, C * N, d, tiles_per_gauss);
}

void intersect_emit_sort_cuda(const float* means2d, const int32_t* radii, const float* depths, int64_t C, int64_t N,
                              const RasterDims& d, const int64_t* cum_tiles, int64_t M, int64_t* keys_in,
                              int32_t* ids_in, int64_t* isect_ids, int32_t* flatten_ids, void* temp,
                              size_t* temp_bytes, void* stream) {
  const int tile_bits = tile_id_bits(static_cast<int64_t>(d.tiles_w) * d.tiles_h);
  const int camera_bits = tile_id_bits(C);  // bits of the camera ids 0 .. C - 1
  const int end_bit = 32 + tile_bits + camera_bits;
  if (end_bit > 64)
    throw std::runtime_error("intersect_tiles: camera and tile ids do not fit in a 64-bit key (too many tiles x cameras)");
  if (M > INT32_MAX) throw std::runtime_error("intersect_tiles: more than 2^31 - 1 tile/Gaussian pairs");

  // The keys are non-negative by construction; sort them as unsigned so cub never applies a sign-bit flip.
  uint64_t* keys_unsorted = reinterpret_cast<uint64_t*>(keys_in);
  uint64_t* keys_sorted = reinterpret_cast<uint64_t*>(isect_ids);
  const cudaStream_t s = as_stream(stream);
  const int num_items = static_cast<int>(M);

  if (temp == nullptr) {
    // Size query only: nothing is read or written. Report at least one byte so that the caller's allocation is
    // never a null pointer (which would make the second call another size query).
    size_t bytes = 0;
    check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_unsorted, keys_sorted, ids_in, flatten_ids,
                                               num_items, 0, end_bit, s),
               "cub::DeviceRadixSort::SortPairs (size query)");
    *temp_bytes = bytes > 0 ? bytes : 1;
    return;
  }
  if (M == 0) return;

  launch("intersect_emit_kernel", intersect_emit_kernel, dim3(blocks_for(C * N, INTERSECT_THREADS)),
         dim3(INTERSECT_THREADS), s, means2d, radii, depths, N, C * N, d, tile_bits, cum_tiles, keys_unsorted, ids_in);
  // LSD radix sort: stable, so pairs with equal keys keep their emission (Gaussian) order. Only the bits that can
  // be non-zero are sorted.
  size_t bytes = *temp_bytes;
  check_cuda(cub::DeviceRadixSort::SortPairs(temp, bytes, keys_unsorted, keys_sorted, ids_in, flatten_ids, num_items,
                                             0, end_bit, s),
             "cub::DeviceRadixSort::SortPairs");
}

void intersect_offsets_cuda(const int64_t* isect_ids, int64_t M, int64_t C, const RasterDims& d,
                            int32_t* tile_offsets, void* stream) {
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  const int64_t n_runs = C * n_tiles;
  const cudaStream_t s = as_stream(stream);
  if (n_runs == 0) return;
  if (M == 0) {
    // No pairs: every tile has the empty range [0, 0).
    check_cuda(cudaMemsetAsync(tile_offsets, 0, static_cast<size_t>(n_runs) * sizeof(int32_t), s),
               "intersect_offsets_cuda (cudaMemsetAsync)");
    return;
  }
  launch("intersect_offsets_kernel", intersect_offsets_kernel, dim3(blocks_for(M, INTERSECT_THREADS)),
         dim3(INTERSECT_THREADS), s, reinterpret_cast<const uint64_t*>(isect_ids), M, n_runs, n_tiles,
         tile_id_bits(n_tiles), tile_offsets);
}

}  // namespace splat4d_raster
