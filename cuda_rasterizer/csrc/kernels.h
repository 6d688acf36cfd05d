// Raw-pointer entry points of every kernel, CPU and CUDA. ext.cpp (the only file that includes torch headers)
// validates tensors, allocates outputs and calls these. Shapes are given per argument; all buffers are contiguous
// and row-major. Outputs are pre-zeroed by the caller unless stated otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace splat4d_raster {

// Scalar settings of one projection call.
template <typename T>
struct ProjectSettings {
  int width, height;
  T eps2d, near_plane, far_plane;
  bool antialiased;
};

// Scalar settings of one rasterization call.
struct RasterDims {
  int width, height, tile_size, tiles_w, tiles_h;
  bool smooth_cutoff;
};

// ------------------------------------------------------------------ CPU (templated: float and double) -----------

template <typename T>
void project_fwd_cpu(const T* means,        // [N, 3]
                     const T* covars,       // [N, 6]
                     const T* opacities,    // [N]
                     const T* T_cam_world,  // [C, 4, 4]
                     const T* Ks,           // [C, 3, 3]
                     int64_t C, int64_t N, const ProjectSettings<T>& s,
                     T* means2d,           // [C, N, 2]
                     T* conics,            // [C, N, 3]
                     T* depths,            // [C, N]
                     int32_t* radii,       // [C, N, 2]
                     T* opacities_out);    // [C, N]

template <typename T>
void project_bwd_cpu(const T* means, const T* covars, const T* opacities, const T* T_cam_world, const T* Ks,
                     int64_t C, int64_t N, const ProjectSettings<T>& s,
                     const int32_t* radii,        // [C, N, 2]
                     const T* v_means2d,          // [C, N, 2]
                     const T* v_conics,           // [C, N, 3]
                     const T* v_depths,           // [C, N]
                     const T* v_opacities_out,    // [C, N]
                     T* v_means,                  // [N, 3]
                     T* v_covars,                 // [N, 6]
                     T* v_opacities,              // [N]
                     T* v_T_cam_world);           // [C, 4, 4]

template <typename T>
void sh_fwd_cpu(int degree, const T* dirs,  // [C, N, 3]
                const T* coeffs,            // [N, K, D]
                int64_t C, int64_t N, int64_t K, int64_t D,
                T* colors);                 // [C, N, D]

template <typename T>
void sh_bwd_cpu(int degree, const T* dirs, const T* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                const T* v_colors,  // [C, N, D]
                T* v_coeffs,        // [N, K, D]
                T* v_dirs);         // [C, N, 3]

// Tile intersection in three steps so the caller can allocate the variable-size outputs in between:
// 1. count the tiles each Gaussian touches; 2. (caller) inclusive cumsum -> M; 3. emit and sort keys; then offsets.
template <typename T>
void intersect_count_cpu(const T* means2d,       // [C, N, 2]
                         const int32_t* radii,   // [C, N, 2]
                         int64_t C, int64_t N, const RasterDims& d,
                         int32_t* tiles_per_gauss);  // [C, N]

template <typename T>
void intersect_emit_cpu(const T* means2d, const int32_t* radii, const T* depths,  // depths [C, N]
                        int64_t C, int64_t N, const RasterDims& d,
                        const int64_t* cum_tiles,  // [C * N] inclusive cumsum of tiles_per_gauss
                        int64_t* isect_ids,        // [M] keys, written then sorted in place
                        int32_t* flatten_ids);     // [M] c * N + n, permuted with the keys

void intersect_offsets_cpu(const int64_t* isect_ids, int64_t M, int64_t C, const RasterDims& d,
                           int32_t* tile_offsets);  // [C, tiles_h, tiles_w]

template <typename T>
void rasterize_fwd_cpu(const T* means2d,           // [C, N, 2]
                       const T* conics,            // [C, N, 3]
                       const T* colors,            // [C, N, D]
                       const T* opacities,         // [C, N]
                       const T* backgrounds,       // [C, D] or nullptr
                       const int32_t* tile_offsets,  // [C, tiles_h, tiles_w]
                       const int32_t* flatten_ids,   // [M]
                       int64_t C, int64_t N, int64_t D, int64_t M, const RasterDims& d,
                       T* render_colors,      // [C, H, W, D]
                       T* render_alphas,      // [C, H, W]
                       int32_t* last_ids,     // [C, H, W] entries visited up to the last contributor
                       int32_t* median_ids);  // [C, H, W] flatten id, -1 if T never reaches 0.5 (caller fills -1)

template <typename T>
void rasterize_bwd_cpu(const T* means2d, const T* conics, const T* colors, const T* opacities, const T* backgrounds,
                       const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C, int64_t N, int64_t D,
                       int64_t M, const RasterDims& d,
                       const T* render_alphas,    // [C, H, W]
                       const int32_t* last_ids,   // [C, H, W]
                       const T* v_render_colors,  // [C, H, W, D]
                       const T* v_render_alphas,  // [C, H, W]
                       T* v_means2d,              // [C, N, 2]
                       T* v_means2d_abs,          // [C, N, 2] sum over pixels of |per-pixel dL/dmean2d|
                       T* v_conics,               // [C, N, 3]
                       T* v_colors,               // [C, N, D]
                       T* v_opacities,            // [C, N]
                       T* v_backgrounds);         // [C, D] or nullptr

// ------------------------------------------------------------------ CUDA (float32) ------------------------------
// Same contracts as the CPU functions above. `stream` is a cudaStream_t passed as void* so this header stays free
// of CUDA includes. Sorting needs scratch memory: call with temp == nullptr to get the size in *temp_bytes.

void project_fwd_cuda(const float* means, const float* covars, const float* opacities, const float* T_cam_world,
                      const float* Ks, int64_t C, int64_t N, const ProjectSettings<float>& s, float* means2d,
                      float* conics, float* depths, int32_t* radii, float* opacities_out, void* stream);

void project_bwd_cuda(const float* means, const float* covars, const float* opacities, const float* T_cam_world,
                      const float* Ks, int64_t C, int64_t N, const ProjectSettings<float>& s, const int32_t* radii,
                      const float* v_means2d, const float* v_conics, const float* v_depths,
                      const float* v_opacities_out, float* v_means, float* v_covars, float* v_opacities,
                      float* v_T_cam_world, void* stream);

void sh_fwd_cuda(int degree, const float* dirs, const float* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                 float* colors, void* stream);

void sh_bwd_cuda(int degree, const float* dirs, const float* coeffs, int64_t C, int64_t N, int64_t K, int64_t D,
                 const float* v_colors, float* v_coeffs, float* v_dirs, void* stream);

void intersect_count_cuda(const float* means2d, const int32_t* radii, int64_t C, int64_t N, const RasterDims& d,
                          int32_t* tiles_per_gauss, void* stream);

// Emits unsorted keys/ids into (keys_in, ids_in), then radix-sorts them into (isect_ids, flatten_ids).
void intersect_emit_sort_cuda(const float* means2d, const int32_t* radii, const float* depths, int64_t C, int64_t N,
                              const RasterDims& d, const int64_t* cum_tiles, int64_t M, int64_t* keys_in,
                              int32_t* ids_in, int64_t* isect_ids, int32_t* flatten_ids, void* temp,
                              size_t* temp_bytes, void* stream);

void intersect_offsets_cuda(const int64_t* isect_ids, int64_t M, int64_t C, const RasterDims& d,
                            int32_t* tile_offsets, void* stream);

void rasterize_fwd_cuda(const float* means2d, const float* conics, const float* colors, const float* opacities,
                        const float* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                        int64_t N, int64_t D, int64_t M, const RasterDims& d, float* render_colors,
                        float* render_alphas, int32_t* last_ids, int32_t* median_ids, void* stream);

void rasterize_bwd_cuda(const float* means2d, const float* conics, const float* colors, const float* opacities,
                        const float* backgrounds, const int32_t* tile_offsets, const int32_t* flatten_ids, int64_t C,
                        int64_t N, int64_t D, int64_t M, const RasterDims& d, const float* render_alphas,
                        const int32_t* last_ids, const float* v_render_colors, const float* v_render_alphas,
                        float* v_means2d, float* v_means2d_abs, float* v_conics, float* v_colors,
                        float* v_opacities, float* v_backgrounds, void* stream);


// ------------------------------------------------------------------ slice_4d (CPU templated, CUDA float32) -------
// Condition 4D Gaussians on time t (slice4d.cuh, ../README.md "slice_4d"). Every output is written, per Gaussian.

template <typename T>
void slice4d_fwd_cpu(const T* means4,     // [N, 4] (x, y, z, t)
                     const T* covars4,    // [N, 10] packed (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt)
                     const T* opacities,  // [N]
                     T t, int64_t N,
                     T* means3,       // [N, 3]
                     T* covars3,      // [N, 6]
                     T* opacities3,   // [N] opacity * weight
                     T* weights);     // [N] temporal weight exp(-dt^2 / (2 tt))

template <typename T>
void slice4d_bwd_cpu(const T* means4, const T* covars4, const T* opacities, T t, int64_t N,
                     const T* v_means3,      // [N, 3]
                     const T* v_covars3,     // [N, 6]
                     const T* v_opacities3,  // [N]
                     const T* v_weights,     // [N]
                     T* v_means4,            // [N, 4]
                     T* v_covars4,           // [N, 10]
                     T* v_opacities);        // [N]

void slice4d_fwd_cuda(const float* means4, const float* covars4, const float* opacities, float t, int64_t N,
                      float* means3, float* covars3, float* opacities3, float* weights, void* stream);

void slice4d_bwd_cuda(const float* means4, const float* covars4, const float* opacities, float t, int64_t N,
                      const float* v_means3, const float* v_covars3, const float* v_opacities3,
                      const float* v_weights, float* v_means4, float* v_covars4, float* v_opacities, void* stream);

}  // namespace splat4d_raster
