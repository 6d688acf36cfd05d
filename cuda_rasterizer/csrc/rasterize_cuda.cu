// Tile-based front-to-back alpha compositing (3DGS eq. 3), forward and backward, CUDA float32.
// Contract: ../README.md ("rasterize") and kernels.h; rasterize_cpu.cpp is the line-by-line CPU mirror of the
// per-pixel loops below, and the per-pixel math (gaussian_sigma, alpha_from_vis) is shared through math.cuh.
//
// One block per (camera, tile), one thread per pixel of the TILE_SIZE x TILE_SIZE tile. The tile's run of the sorted
// intersection list is walked in batches of one entry per thread: each thread loads one Gaussian (id, mean2d, conic,
// opacity and, for a compile-time channel count, its colour) into shared memory, then every thread composites all
// the batch's Gaussians for its own pixel. Threads of pixels outside the image, or whose transmittance saturated,
// keep loading batches for the others.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_utils.cuh"
#include "kernels.h"
#include "math.cuh"

namespace splat4d_raster {
namespace {

constexpr int BLOCK = TILE_SIZE * TILE_SIZE;  // threads per block = pixels per tile = Gaussians per batch
static_assert(BLOCK % WARP_SIZE == 0, "the backward warp reductions need whole warps");
constexpr int N_WARPS = BLOCK / WARP_SIZE;

// Compile-time channel counts get register accumulators and colours in shared memory; CDIM == 0 is the generic
// path for any D, which reads colours and cotangents from global memory and accumulates in the output image.
constexpr int GENERIC_D = 0;

// One batch of a tile's run in shared memory, structure-of-arrays (every thread reads the same entry at a time,
// a broadcast).
template <int CDIM>
struct Batch {
  int32_t id[BLOCK];  // flatten id c * N + n
  float mean_x[BLOCK], mean_y[BLOCK];
  float conic_a[BLOCK], conic_b[BLOCK], conic_c[BLOCK];
  float opacity[BLOCK];
  float color[CDIM > 0 ? BLOCK * CDIM : 1];  // [BLOCK, CDIM]
};

template <int CDIM>
__device__ __forceinline__ void load_batch_entry(Batch<CDIM>& b, int slot, int32_t id,
                                                 const float* __restrict__ means2d,
                                                 const float* __restrict__ conics,
                                                 const float* __restrict__ colors,
                                                 const float* __restrict__ opacities) {
  b.id[slot] = id;
  b.mean_x[slot] = means2d[int64_t(id) * 2 + 0];
  b.mean_y[slot] = means2d[int64_t(id) * 2 + 1];
  b.conic_a[slot] = conics[int64_t(id) * 3 + 0];
  b.conic_b[slot] = conics[int64_t(id) * 3 + 1];
  b.conic_c[slot] = conics[int64_t(id) * 3 + 2];
  b.opacity[slot] = opacities[id];
  for (int k = 0; k < CDIM; ++k) b.color[slot * CDIM + k] = colors[int64_t(id) * CDIM + k];
}

// The pixel a thread owns and the tile's range [start, end) of the sorted list.
struct TilePixel {
  int64_t camera, pix;  // pix = (camera * H + py) * W + px
  float qx, qy;         // pixel centre (px + 0.5, py + 0.5)
  bool inside;          // false for the threads of a partial tile that fall outside the image
  int32_t range_start, range_end;
};

__device__ __forceinline__ TilePixel tile_pixel(const int32_t* __restrict__ tile_offsets, int64_t C, int64_t M,
                                                const RasterDims& d) {
  TilePixel t;
  t.camera = blockIdx.z;
  const int px = blockIdx.x * TILE_SIZE + static_cast<int>(threadIdx.x) % TILE_SIZE;
  const int py = blockIdx.y * TILE_SIZE + static_cast<int>(threadIdx.x) / TILE_SIZE;
  t.inside = px < d.width && py < d.height;
  t.pix = (t.camera * d.height + py) * d.width + px;
  t.qx = static_cast<float>(px) + 0.5f;
  t.qy = static_cast<float>(py) + 0.5f;
  const int64_t tile_id = (t.camera * d.tiles_h + blockIdx.y) * d.tiles_w + blockIdx.x;
  t.range_start = tile_offsets[tile_id];
  t.range_end = tile_id + 1 < C * d.tiles_h * d.tiles_w ? tile_offsets[tile_id + 1] : static_cast<int32_t>(M);
  return t;
}

// ------------------------------------------------------------------ forward -----------------------------------

template <int CDIM>
__global__ void __launch_bounds__(BLOCK)
    rasterize_fwd_kernel(const float* __restrict__ means2d,       // [C, N, 2]
                         const float* __restrict__ conics,        // [C, N, 3]
                         const float* __restrict__ colors,        // [C, N, D]
                         const float* __restrict__ opacities,     // [C, N]
                         const float* __restrict__ backgrounds,   // [C, D] or nullptr
                         const int32_t* __restrict__ tile_offsets,  // [C, tiles_h, tiles_w]
                         const int32_t* __restrict__ flatten_ids,   // [M]
                         int64_t C, int64_t D, int64_t M, RasterDims d,
                         float* __restrict__ render_colors,   // [C, H, W, D]
                         float* __restrict__ render_alphas,   // [C, H, W]
                         int32_t* __restrict__ last_ids,      // [C, H, W]
                         int32_t* __restrict__ median_ids) {  // [C, H, W]
  __shared__ Batch<CDIM> batch;
  if (CDIM > 0) D = CDIM;
  const TilePixel tp = tile_pixel(tile_offsets, C, M, d);
  const int tid = threadIdx.x;

  float acc[CDIM > 0 ? CDIM : 1];  // sum_i alpha_i T_i c_i (CDIM > 0)
  for (int k = 0; k < (CDIM > 0 ? CDIM : 1); ++k) acc[k] = 0.f;
  float* out_color = render_colors + tp.pix * D;
  if (CDIM == GENERIC_D && tp.inside)
    for (int64_t k = 0; k < D; ++k) out_color[k] = 0.f;  // the generic path accumulates in place

  float trans = 1.f;  // T, transmittance in front of the current Gaussian
  int32_t last = 0, median = -1;
  bool done = !tp.inside;

  for (int32_t batch_start = tp.range_start; batch_start < tp.range_end; batch_start += BLOCK) {
    // Block-wide early exit; the barrier also ends the reads of the previous batch before it is overwritten.
    if (__syncthreads_count(done) == BLOCK) break;
    const int32_t load = batch_start + tid;
    if (load < tp.range_end)
      load_batch_entry(batch, tid, flatten_ids[load], means2d, conics, colors, opacities);
    __syncthreads();

    const int batch_size = min(BLOCK, tp.range_end - batch_start);
    for (int j = 0; j < batch_size && !done; ++j) {
      // sigma = 1/2 d^T conic d with d = mean2d - q (3DGS eq. 4 in the image plane).
      const float conic[3] = {batch.conic_a[j], batch.conic_b[j], batch.conic_c[j]};
      const float dx = batch.mean_x[j] - tp.qx, dy = batch.mean_y[j] - tp.qy;
      const float sigma = gaussian_sigma(conic, dx, dy);
      if (sigma < 0.f) continue;
      // alpha = min(0.99, opacity exp(-sigma)), skipped below 1/255 (3DGS appendix C).
      float dalpha_dvis;
      const float alpha = alpha_from_sigma(batch.opacity[j], sigma, d.smooth_cutoff, &dalpha_dvis);
      if (alpha == 0.f) continue;  // below ALPHA_MIN
      const float next_trans = trans * (1.f - alpha);
      if (next_trans <= float(TRANSMITTANCE_MIN)) {  // saturated: stop before this Gaussian
        done = true;
        break;
      }
      if (trans > float(MEDIAN_TRANSMITTANCE) && next_trans <= float(MEDIAN_TRANSMITTANCE)) median = batch.id[j];
      // 3DGS eq. 3: C = sum_i c_i alpha_i prod_{j<i} (1 - alpha_j).
      const float weight = alpha * trans;
      if (CDIM > 0) {
        for (int k = 0; k < CDIM; ++k) acc[k] += weight * batch.color[j * CDIM + k];
      } else {
        const float* color = colors + int64_t(batch.id[j]) * D;
        for (int64_t k = 0; k < D; ++k) out_color[k] += weight * color[k];
      }
      trans = next_trans;
      last = batch_start + j - tp.range_start + 1;  // entries visited up to this contributor
    }
  }

  if (!tp.inside) return;
  const float* bg = backgrounds != nullptr ? backgrounds + tp.camera * D : nullptr;
  if (CDIM > 0) {
    for (int k = 0; k < CDIM; ++k) out_color[k] = acc[k] + (bg != nullptr ? trans * bg[k] : 0.f);
  } else if (bg != nullptr) {
    for (int64_t k = 0; k < D; ++k) out_color[k] += trans * bg[k];
  }
  render_alphas[tp.pix] = 1.f - trans;
  last_ids[tp.pix] = last;
  median_ids[tp.pix] = median;
}

// ------------------------------------------------------------------ backward ----------------------------------
//
// Forward, per pixel, over the contributors i = 0 .. L-1 in depth order (skipped entries change nothing):
//   T_0 = 1,  T_{i+1} = T_i (1 - alpha_i),  T_f = T_L,  alpha_i = f(vis_i),  vis_i = o_i exp(-sigma_i),
//   colour_k = sum_i alpha_i T_i c_ik + T_f bg_k,   alpha_pix = 1 - T_f.
// With g = dL/dcolour and g_a = dL/dalpha_pix, and S_i = sum_{j > i} alpha_j T_j c_j (what lies behind i):
//   dL/dc_ik     = alpha_i T_i g_k
//   dL/dalpha_i  = T_i (c_i . g) - (S_i . g + T_f (bg . g) - T_f g_a) / (1 - alpha_i)
//                  (every T_j, j > i, and T_f carry the factor 1 - alpha_i)
//   dL/do_i      = exp(-sigma_i) f'(vis_i) dL/dalpha_i,   dL/dsigma_i = -vis_i f'(vis_i) dL/dalpha_i
//   sigma = 1/2 (a dx^2 + c dy^2) + b dx dy, d = mean2d - q:
//     dsigma/da = dx^2 / 2, dsigma/db = dx dy, dsigma/dc = dy^2 / 2,
//     dsigma/dmean2d = (a dx + b dy, b dx + c dy)
//   dL/dbg_k     = T_f g_k.
// The walk goes back to front from the pixel's last contributor, recovering T_i = T_{i+1} / (1 - alpha_i) from
// T_f = 1 - alpha_pix, and keeping only the scalar (S_i . g) (so any D needs O(1) state per pixel).
// Per-Gaussian gradients are summed over the warp with shuffles, then lane 0 adds them with atomicAdd. The sum of
// absolute values |dL/dmean2d| ("absgrad") is taken per pixel, before the reduction.

template <int CDIM>
__global__ void __launch_bounds__(BLOCK)
    rasterize_bwd_kernel(const float* __restrict__ means2d, const float* __restrict__ conics,
                         const float* __restrict__ colors, const float* __restrict__ opacities,
                         const float* __restrict__ backgrounds, const int32_t* __restrict__ tile_offsets,
                         const int32_t* __restrict__ flatten_ids, int64_t C, int64_t D, int64_t M, RasterDims d,
                         const float* __restrict__ render_alphas,    // [C, H, W]
                         const int32_t* __restrict__ last_ids,       // [C, H, W]
                         const float* __restrict__ v_render_colors,  // [C, H, W, D]
                         const float* __restrict__ v_render_alphas,  // [C, H, W] or nullptr
                         float* __restrict__ v_means2d,              // [C, N, 2]
                         float* __restrict__ v_means2d_abs,          // [C, N, 2] or nullptr
                         float* __restrict__ v_conics,               // [C, N, 3]
                         float* __restrict__ v_colors,               // [C, N, D]
                         float* __restrict__ v_opacities,            // [C, N]
                         float* __restrict__ v_backgrounds) {        // [C, D] or nullptr
  __shared__ Batch<CDIM> batch;
  __shared__ float s_partials[N_WARPS * (CDIM > 0 ? CDIM : 1)];
  __shared__ int32_t s_max_last;
  if (CDIM > 0) D = CDIM;
  const TilePixel tp = tile_pixel(tile_offsets, C, M, d);
  const int tid = threadIdx.x;
  const int lane = tid % WARP_SIZE;

  // Per-pixel cotangents; zero for threads outside the image, which then contribute nothing.
  const float* v_pix = v_render_colors + tp.pix * D;
  float g[CDIM > 0 ? CDIM : 1];
  for (int k = 0; k < (CDIM > 0 ? CDIM : 1); ++k) g[k] = (CDIM > 0 && tp.inside) ? v_pix[k] : 0.f;
  const float g_alpha = (tp.inside && v_render_alphas != nullptr) ? v_render_alphas[tp.pix] : 0.f;
  const float trans_final = tp.inside ? 1.f - render_alphas[tp.pix] : 1.f;  // T_f
  const float* bg = backgrounds != nullptr ? backgrounds + tp.camera * D : nullptr;

  // dL/dbg_k = sum over the camera's pixels of T_f g_k; one atomicAdd per channel and block.
  if (v_backgrounds != nullptr) {
    if (CDIM > 0) {
      float v_bg[CDIM > 0 ? CDIM : 1];
      for (int k = 0; k < CDIM; ++k) v_bg[k] = trans_final * g[k];
      block_atomic_add(v_bg, s_partials, v_backgrounds + tp.camera * D);
    } else {
      for (int64_t k = 0; k < D; ++k) {
        const float v_bg[1] = {tp.inside ? trans_final * v_pix[k] : 0.f};
        block_atomic_add(v_bg, s_partials, v_backgrounds + tp.camera * D + k);
      }
    }
  }

  // behind = S_i . g + T_f (bg . g): everything behind the current Gaussian, weighted by T, dotted with g.
  float behind = 0.f;
  if (tp.inside && bg != nullptr) {
    if (CDIM > 0) {
      for (int k = 0; k < CDIM; ++k) behind += bg[k] * g[k];
    } else {
      for (int64_t k = 0; k < D; ++k) behind += bg[k] * v_pix[k];
    }
    behind *= trans_final;
  }

  // The block walks its run up to the largest last contributor among its pixels.
  const int32_t my_last = tp.inside ? last_ids[tp.pix] : 0;
  if (tid == 0) s_max_last = 0;
  __syncthreads();
  if (my_last > 0) atomicMax(&s_max_last, my_last);
  __syncthreads();
  const int32_t run_end = tp.range_start + s_max_last;

  float trans = trans_final;  // T_{i+1}, the transmittance behind the current Gaussian
  for (int32_t batch_end = run_end; batch_end > tp.range_start; batch_end -= BLOCK) {
    const int32_t batch_start = max(tp.range_start, batch_end - BLOCK);
    __syncthreads();  // every thread is done with the previous batch
    // Slot j holds entry batch_end - 1 - j, so walking j upwards walks the run back to front.
    const int32_t load = batch_end - 1 - tid;
    if (load >= batch_start) load_batch_entry(batch, tid, flatten_ids[load], means2d, conics, colors, opacities);
    __syncthreads();

    const int batch_size = batch_end - batch_start;
    for (int j = 0; j < batch_size; ++j) {
      // Every thread runs every j (no early exit) so that the whole warp reaches the shuffles below.
      const int32_t k_rel = batch_end - 1 - j - tp.range_start;  // position in the tile's run
      const int32_t id = batch.id[j];
      const float conic[3] = {batch.conic_a[j], batch.conic_b[j], batch.conic_c[j]};
      const float dx = batch.mean_x[j] - tp.qx, dy = batch.mean_y[j] - tp.qy;
      float v_mx = 0.f, v_my = 0.f, v_ca = 0.f, v_cb = 0.f, v_cc = 0.f, v_op = 0.f, weight = 0.f;
      bool contributes = false;
      if (k_rel < my_last) {
        const float sigma = gaussian_sigma(conic, dx, dy);
        if (sigma >= 0.f) {
          const float gauss = exp(-sigma);
          const float vis = batch.opacity[j] * gauss;
          float dalpha_dvis;
          const float alpha = alpha_from_vis(vis, d.smooth_cutoff, &dalpha_dvis);
          if (alpha != 0.f) {
            contributes = true;
            const float one_minus_alpha = 1.f - alpha;
            trans = trans / one_minus_alpha;  // T_i, in front of this Gaussian
            weight = alpha * trans;           // dL/dc_ik = weight g_k

            float c_dot_g = 0.f;
            if (CDIM > 0) {
              for (int k = 0; k < CDIM; ++k) c_dot_g += batch.color[j * CDIM + k] * g[k];
            } else {
              const float* color = colors + int64_t(id) * D;
              for (int64_t k = 0; k < D; ++k) c_dot_g += color[k] * v_pix[k];
            }
            const float v_alpha = trans * c_dot_g - (behind - trans_final * g_alpha) / one_minus_alpha;
            behind += weight * c_dot_g;

            const float v_vis = v_alpha * dalpha_dvis;
            const float v_sigma = -v_vis * vis;
            v_op = v_vis * gauss;
            v_ca = 0.5f * dx * dx * v_sigma;
            v_cb = dx * dy * v_sigma;
            v_cc = 0.5f * dy * dy * v_sigma;
            v_mx = v_sigma * (conic[0] * dx + conic[1] * dy);
            v_my = v_sigma * (conic[1] * dx + conic[2] * dy);
          }
        }
      }

      // Warp-uniform skip: nothing to add when no pixel of the warp saw this Gaussian.
      if (!__any_sync(FULL_MASK, contributes)) continue;
      const float s_mx = warp_sum(v_mx), s_my = warp_sum(v_my);
      const float s_ax = warp_sum(fabsf(v_mx)), s_ay = warp_sum(fabsf(v_my));
      const float s_ca = warp_sum(v_ca), s_cb = warp_sum(v_cb), s_cc = warp_sum(v_cc);
      const float s_op = warp_sum(v_op);
      if (lane == 0) {
        atomicAdd(v_means2d + int64_t(id) * 2 + 0, s_mx);
        atomicAdd(v_means2d + int64_t(id) * 2 + 1, s_my);
        if (v_means2d_abs != nullptr) {
          atomicAdd(v_means2d_abs + int64_t(id) * 2 + 0, s_ax);
          atomicAdd(v_means2d_abs + int64_t(id) * 2 + 1, s_ay);
        }
        atomicAdd(v_conics + int64_t(id) * 3 + 0, s_ca);
        atomicAdd(v_conics + int64_t(id) * 3 + 1, s_cb);
        atomicAdd(v_conics + int64_t(id) * 3 + 2, s_cc);
        atomicAdd(v_opacities + id, s_op);
      }
      if (CDIM > 0) {
        for (int k = 0; k < CDIM; ++k) {
          const float s_col = warp_sum(weight * g[k]);
          if (lane == 0) atomicAdd(v_colors + int64_t(id) * CDIM + k, s_col);
        }
      } else {
        for (int64_t k = 0; k < D; ++k) {
          const float s_col = warp_sum(tp.inside ? weight * v_pix[k] : 0.f);
          if (lane == 0) atomicAdd(v_colors + int64_t(id) * D + k, s_col);
        }
      }
    }
  }
}

// Kernels instantiated for these channel counts; any other D takes the generic path.
template <int CDIM>
void launch_rasterize_fwd(dim3 grid, cudaStream_t s, const float* means2d, const float* conics, const float* colors,
                          const float* opacities, const float* backgrounds, const int32_t* tile_offsets,
                          const int32_t* flatten_ids, int64_t C, int64_t D, int64_t M, const RasterDims& d,
                          float* render_colors, float* render_alphas, int32_t* last_ids, int32_t* median_ids) {
  launch("rasterize_fwd_kernel", rasterize_fwd_kernel<CDIM>, grid, dim3(BLOCK), s, means2d, conics, colors, opacities,
         backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_colors, render_alphas, last_ids, median_ids);
}

template <int CDIM>
void launch_rasterize_bwd(dim3 grid, cudaStream_t s, const float* means2d, const float* conics, const float* colors,
                          const float* opacities, const float* backgrounds, const int32_t* tile_offsets,
                          const int32_t* flatten_ids, int64_t C, int64_t D, int64_t M, const RasterDims& d,
                          const float* render_alphas, const int32_t* last_ids, const float* v_render_colors,
                          const float* v_render_alphas, float* v_means2d, float* v_means2d_abs, float* v_conics,
                          float* v_colors, float* v_opacities, float* v_backgrounds) {
  launch("rasterize_bwd_kernel", rasterize_bwd_kernel<CDIM>, grid, dim3(BLOCK), s, means2d, conics, colors, opacities,
         backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_alphas, last_ids, v_render_colors,
         v_render_alphas, v_means2d, v_means2d_abs, v_conics, v_colors, v_opacities, v_backgrounds);
}

dim3 tile_grid(int64_t C, const RasterDims& d) {
  if (d.tile_size != TILE_SIZE)
    throw std::runtime_error("rasterize (CUDA): tile_size must be " + std::to_string(TILE_SIZE) + ", got " +
                             std::to_string(d.tile_size));
  if (C > 65535) throw std::runtime_error("rasterize (CUDA): at most 65535 cameras per call");
  return dim3(static_cast<unsigned>(d.tiles_w), static_cast<unsigned>(d.tiles_h), static_cast<unsigned>(C));
}

}  // namespace

void rasterize_fwd_cuda(const float* means2d, const float* conics, const float* colors, const float* opacities,
                        const float* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                        int64_t N, int64_t D, int64_t M, const RasterDims& d, float* render_colors,
                        float* render_alphas, int32_t* last_ids, int32_t* median_ids, void* stream) {
  (void)N;
  const dim3 grid = tile_grid(C, d);
  const cudaStream_t s = as_stream(stream);
#define S4D_ARGS                                                                                                \
  grid, s, means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_colors, \
      render_alphas, last_ids, median_ids
  switch (D) {
    case 1: launch_rasterize_fwd<1>(S4D_ARGS); break;
    case 2: launch_rasterize_fwd<2>(S4D_ARGS); break;
    case 3: launch_rasterize_fwd<3>(S4D_ARGS); break;
    case 4: launch_rasterize_fwd<4>(S4D_ARGS); break;
    default: launch_rasterize_fwd<GENERIC_D>(S4D_ARGS); break;
  }
#undef S4D_ARGS
}

void rasterize_bwd_cuda(const float* means2d, const float* conics, const float* colors, const float* opacities,
                        const float* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                        int64_t N, int64_t D, int64_t M, const RasterDims& d, const float* render_alphas,
                        const int32_t* last_ids, const float* v_render_colors, const float* v_render_alphas,
                        float* v_means2d, float* v_means2d_abs, float* v_conics, float* v_colors,
                        float* v_opacities, float* v_backgrounds, void* stream) {
  (void)N;
  const dim3 grid = tile_grid(C, d);
  const cudaStream_t s = as_stream(stream);
#define S4D_ARGS                                                                                                  \
  grid, s, means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, C, D, M, d, render_alphas, \
      last_ids, v_render_colors, v_render_alphas, v_means2d, v_means2d_abs, v_conics, v_colors, v_opacities,       \
      v_backgrounds
  switch (D) {
    case 1: launch_rasterize_bwd<1>(S4D_ARGS); break;
    case 2: launch_rasterize_bwd<2>(S4D_ARGS); break;
    case 3: launch_rasterize_bwd<3>(S4D_ARGS); break;
    case 4: launch_rasterize_bwd<4>(S4D_ARGS); break;
    default: launch_rasterize_bwd<GENERIC_D>(S4D_ARGS); break;
  }
#undef S4D_ARGS
}

}  // namespace splat4d_raster
