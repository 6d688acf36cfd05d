// Torch bindings of the rasterizer: the only translation unit that includes torch headers.
//
// Every op is declared once in the TORCH_LIBRARY block below and implemented by one function that validates its
// tensors, allocates outputs and calls the raw-pointer kernels of kernels.h, on the CPU (float32/float64) or, when
// built WITH_CUDA, on the GPU (float32). Autograd lives in Python (cuda_rasterizer/_autograd.py).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <cmath>
#include <tuple>

#include "constants.h"
#include "kernels.h"

namespace splat4d_raster {
namespace {

using at::Tensor;

#define S4D_CHECK_INPUT(x)                                                                   \
  TORCH_CHECK((x).is_contiguous(), #x " must be contiguous");                                \
  TORCH_CHECK((x).device() == ref_device, #x " must be on ", ref_device, ", got ", (x).device())

void check_shape(const Tensor& x, const char* name, std::initializer_list<int64_t> shape) {
  TORCH_CHECK(x.dim() == static_cast<int64_t>(shape.size()), name, " must have ", shape.size(), " dims, got shape ",
              x.sizes());
  int i = 0;
  for (int64_t s : shape) {
    TORCH_CHECK(s < 0 || x.size(i) == s, name, " has shape ", x.sizes(), ", expected size ", s, " at dim ", i);
    ++i;
  }
}

#ifdef WITH_CUDA
void* stream_of(const Tensor& x) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
}
// A CUDA device guard for CUDA tensors only: OptionalCUDAGuard refuses any other device type, so giving it the CPU
// device made every CPU op of a WITH_CUDA build throw "CUDAGuardImpl initialized with non-CUDA DeviceType: cpu".
#define S4D_DEVICE_GUARD(x)                                                                          \
  const c10::cuda::OptionalCUDAGuard guard((x).is_cuda() ? std::optional<at::Device>((x).device()) \
                                                         : std::optional<at::Device>())
#else
#define S4D_DEVICE_GUARD(x)
#endif

[[noreturn]] void no_cuda() {
  TORCH_CHECK(false, "cuda_rasterizer was built without CUDA support; use CPU tensors or rebuild WITH_CUDA");
  throw;  // unreachable; TORCH_CHECK(false) throws
}

void check_cuda_float(const Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "the CUDA kernels take float32 tensors, got ", x.scalar_type());
}

RasterDims raster_dims(int64_t width, int64_t height, int64_t tile_size, bool smooth_cutoff) {
  TORCH_CHECK(width > 0 && height > 0, "image size must be positive, got ", width, "x", height);
  TORCH_CHECK(tile_size == TILE_SIZE, "only tile_size ", TILE_SIZE, " is supported, got ", tile_size);
  RasterDims d;
  d.width = static_cast<int>(width);
  d.height = static_cast<int>(height);
  d.tile_size = static_cast<int>(tile_size);
  d.tiles_w = static_cast<int>((width + tile_size - 1) / tile_size);
  d.tiles_h = static_cast<int>((height + tile_size - 1) / tile_size);
  d.smooth_cutoff = smooth_cutoff;
  return d;
}

// ------------------------------------------------------------------------------------------------ project -----

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> project_fwd(const Tensor& means, const Tensor& covars,
                                                               const Tensor& opacities, const Tensor& T_cam_world,
                                                               const Tensor& Ks, int64_t width, int64_t height,
                                                               double eps2d, double near_plane, double far_plane,
                                                               bool antialiased) {
  const auto ref_device = means.device();
  S4D_CHECK_INPUT(means);
  S4D_CHECK_INPUT(covars);
  S4D_CHECK_INPUT(opacities);
  S4D_CHECK_INPUT(T_cam_world);
  S4D_CHECK_INPUT(Ks);
  const int64_t N = means.size(0), C = T_cam_world.size(0);
  check_shape(means, "means", {N, 3});
  check_shape(covars, "covars", {N, 6});
  check_shape(opacities, "opacities", {N});
  check_shape(T_cam_world, "T_cam_world", {C, 4, 4});
  check_shape(Ks, "Ks", {C, 3, 3});
  S4D_DEVICE_GUARD(means);
  auto opts = means.options();
  Tensor means2d = at::zeros({C, N, 2}, opts), conics = at::zeros({C, N, 3}, opts);
  Tensor depths = at::zeros({C, N}, opts), opac_out = at::zeros({C, N}, opts);
  Tensor radii = at::zeros({C, N, 2}, opts.dtype(at::kInt));
  if (means.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means);
    ProjectSettings<float> s{(int)width, (int)height, (float)eps2d, (float)near_plane, (float)far_plane, antialiased};
    project_fwd_cuda(means.data_ptr<float>(), covars.data_ptr<float>(), opacities.data_ptr<float>(),
                     T_cam_world.data_ptr<float>(), Ks.data_ptr<float>(), C, N, s, means2d.data_ptr<float>(),
                     conics.data_ptr<float>(), depths.data_ptr<float>(), radii.data_ptr<int32_t>(),
                     opac_out.data_ptr<float>(), stream_of(means));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
      ProjectSettings<scalar_t> s{(int)width,          (int)height,           (scalar_t)eps2d,
                                  (scalar_t)near_plane, (scalar_t)far_plane, antialiased};
      project_fwd_cpu<scalar_t>(means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
                                opacities.data_ptr<scalar_t>(), T_cam_world.data_ptr<scalar_t>(),
                                Ks.data_ptr<scalar_t>(), C, N, s, means2d.data_ptr<scalar_t>(),
                                conics.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                                opac_out.data_ptr<scalar_t>());
    });
  }
  return {means2d, conics, depths, radii, opac_out};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> project_bwd(const Tensor& means, const Tensor& covars,
                                                       const Tensor& opacities, const Tensor& T_cam_world,
                                                       const Tensor& Ks, int64_t width, int64_t height, double eps2d,
                                                       bool antialiased, const Tensor& radii, const Tensor& v_means2d,
                                                       const Tensor& v_conics, const Tensor& v_depths,
                                                       const Tensor& v_opacities_out) {
  const auto ref_device = means.device();
  for (const Tensor* t : {&means, &covars, &opacities, &T_cam_world, &Ks, &radii, &v_means2d, &v_conics, &v_depths,
                          &v_opacities_out}) {
    TORCH_CHECK(t->is_contiguous() && t->device() == ref_device, "project_bwd: inputs must be contiguous on ",
                ref_device);
  }
  const int64_t N = means.size(0), C = T_cam_world.size(0);
  S4D_DEVICE_GUARD(means);
  Tensor v_means = at::zeros_like(means), v_covars = at::zeros_like(covars);
  Tensor v_opacities = at::zeros_like(opacities), v_T = at::zeros_like(T_cam_world);
  if (means.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means);
    ProjectSettings<float> s{(int)width, (int)height, (float)eps2d, 0.f, 0.f, antialiased};
    project_bwd_cuda(means.data_ptr<float>(), covars.data_ptr<float>(), opacities.data_ptr<float>(),
                     T_cam_world.data_ptr<float>(), Ks.data_ptr<float>(), C, N, s, radii.data_ptr<int32_t>(),
                     v_means2d.data_ptr<float>(), v_conics.data_ptr<float>(), v_depths.data_ptr<float>(),
                     v_opacities_out.data_ptr<float>(), v_means.data_ptr<float>(), v_covars.data_ptr<float>(),
                     v_opacities.data_ptr<float>(), v_T.data_ptr<float>(), stream_of(means));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
      ProjectSettings<scalar_t> s{(int)width, (int)height, (scalar_t)eps2d, scalar_t(0), scalar_t(0), antialiased};
      project_bwd_cpu<scalar_t>(
          means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
          T_cam_world.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), C, N, s, radii.data_ptr<int32_t>(),
          v_means2d.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(), v_depths.data_ptr<scalar_t>(),
          v_opacities_out.data_ptr<scalar_t>(), v_means.data_ptr<scalar_t>(), v_covars.data_ptr<scalar_t>(),
          v_opacities.data_ptr<scalar_t>(), v_T.data_ptr<scalar_t>());
    });
  }
  return {v_means, v_covars, v_opacities, v_T};
}

// ------------------------------------------------------------------------------------------------ eval_sh -----

Tensor sh_fwd(int64_t degree, const Tensor& dirs, const Tensor& coeffs) {
  const auto ref_device = dirs.device();
  S4D_CHECK_INPUT(dirs);
  S4D_CHECK_INPUT(coeffs);
  TORCH_CHECK(degree >= 0 && degree <= 3, "SH degree must be in 0..3, got ", degree);
  const int64_t C = dirs.size(0), N = dirs.size(1), K = coeffs.size(1), D = coeffs.size(2);
  check_shape(dirs, "dirs", {C, N, 3});
  check_shape(coeffs, "coeffs", {N, K, D});
  TORCH_CHECK(K >= (degree + 1) * (degree + 1), "coeffs has ", K, " SH coefficients, degree ", degree, " needs ",
              (degree + 1) * (degree + 1));
  S4D_DEVICE_GUARD(dirs);
  Tensor colors = at::zeros({C, N, D}, dirs.options());
  if (dirs.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(dirs);
    sh_fwd_cuda((int)degree, dirs.data_ptr<float>(), coeffs.data_ptr<float>(), C, N, K, D, colors.data_ptr<float>(),
                stream_of(dirs));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_fwd", [&] {
      sh_fwd_cpu<scalar_t>((int)degree, dirs.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), C, N, K, D,
                           colors.data_ptr<scalar_t>());
    });
  }
  return colors;
}

std::tuple<Tensor, Tensor> sh_bwd(int64_t degree, const Tensor& dirs, const Tensor& coeffs, const Tensor& v_colors) {
  const auto ref_device = dirs.device();
  S4D_CHECK_INPUT(dirs);
  S4D_CHECK_INPUT(coeffs);
  S4D_CHECK_INPUT(v_colors);
  const int64_t C = dirs.size(0), N = dirs.size(1), K = coeffs.size(1), D = coeffs.size(2);
  S4D_DEVICE_GUARD(dirs);
  Tensor v_coeffs = at::zeros_like(coeffs), v_dirs = at::zeros_like(dirs);
  if (dirs.is_cuda()) {
#ifdef WITH_CUDA
    sh_bwd_cuda((int)degree, dirs.data_ptr<float>(), coeffs.data_ptr<float>(), C, N, K, D,
                v_colors.data_ptr<float>(), v_coeffs.data_ptr<float>(), v_dirs.data_ptr<float>(), stream_of(dirs));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_bwd", [&] {
      sh_bwd_cpu<scalar_t>((int)degree, dirs.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), C, N, K, D,
                           v_colors.data_ptr<scalar_t>(), v_coeffs.data_ptr<scalar_t>(), v_dirs.data_ptr<scalar_t>());
    });
  }
  return {v_coeffs, v_dirs};
}

// ---------------------------------------------------------------------------------------------- intersect -----

std::tuple<Tensor, Tensor, Tensor> intersect_tiles(const Tensor& means2d, const Tensor& radii, const Tensor& depths,
                                                   int64_t width, int64_t height, int64_t tile_size) {
  const auto ref_device = means2d.device();
  S4D_CHECK_INPUT(means2d);
  S4D_CHECK_INPUT(radii);
  S4D_CHECK_INPUT(depths);
  const int64_t C = means2d.size(0), N = means2d.size(1);
  check_shape(means2d, "means2d", {C, N, 2});
  check_shape(radii, "radii", {C, N, 2});
  check_shape(depths, "depths", {C, N});
  TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32, got ", radii.scalar_type());
  const RasterDims d = raster_dims(width, height, tile_size, false);
  const int64_t n_tiles = static_cast<int64_t>(d.tiles_w) * d.tiles_h;
  int tile_bits = 1;
  while ((int64_t(1) << tile_bits) < n_tiles) ++tile_bits;
  // Keys stay below 2^63 so signed (torch) and unsigned (kernel) orderings agree.
  TORCH_CHECK(tile_bits + 64 - __builtin_clzll(static_cast<unsigned long long>(C) | 1ull) <= 31,
              "too many cameras x tiles to encode in a 64-bit sort key: ", C, " cameras, ", n_tiles, " tiles");
  S4D_DEVICE_GUARD(means2d);
  auto iopts = means2d.options().dtype(at::kInt);
  Tensor tiles_per_gauss = at::zeros({C, N}, iopts);
  Tensor tile_offsets = at::zeros({C, d.tiles_h, d.tiles_w}, iopts);
  if (means2d.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means2d);
    void* stream = stream_of(means2d);
    intersect_count_cuda(means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), C, N, d,
                         tiles_per_gauss.data_ptr<int32_t>(), stream);
    Tensor cum = at::cumsum(tiles_per_gauss.view({-1}), 0, at::kLong);
    const int64_t M = C * N > 0 ? cum[-1].item<int64_t>() : 0;
    TORCH_CHECK(M <= INT32_MAX, "too many tile/Gaussian pairs (", M, ") for int32 offsets");
    Tensor isect_ids = at::empty({M}, means2d.options().dtype(at::kLong));
    Tensor flatten_ids = at::empty({M}, iopts);
    if (M > 0) {
      Tensor keys_in = at::empty({M}, isect_ids.options()), ids_in = at::empty({M}, iopts);
      size_t temp_bytes = 0;
      intersect_emit_sort_cuda(means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), depths.data_ptr<float>(), C, N,
                               d, cum.data_ptr<int64_t>(), M, keys_in.data_ptr<int64_t>(),
                               ids_in.data_ptr<int32_t>(), isect_ids.data_ptr<int64_t>(),
                               flatten_ids.data_ptr<int32_t>(), nullptr, &temp_bytes, stream);
      Tensor temp = at::empty({static_cast<int64_t>(temp_bytes)}, means2d.options().dtype(at::kByte));
      intersect_emit_sort_cuda(means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), depths.data_ptr<float>(), C, N,
                               d, cum.data_ptr<int64_t>(), M, keys_in.data_ptr<int64_t>(),
                               ids_in.data_ptr<int32_t>(), isect_ids.data_ptr<int64_t>(),
                               flatten_ids.data_ptr<int32_t>(), temp.data_ptr(), &temp_bytes, stream);
    }
    intersect_offsets_cuda(isect_ids.data_ptr<int64_t>(), M, C, d, tile_offsets.data_ptr<int32_t>(), stream);
    return {isect_ids, flatten_ids, tile_offsets};
#else
    no_cuda();
#endif
  }
  Tensor isect_ids, flatten_ids;
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "intersect_tiles", [&] {
    intersect_count_cpu<scalar_t>(means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), C, N, d,
                                  tiles_per_gauss.data_ptr<int32_t>());
    Tensor cum = at::cumsum(tiles_per_gauss.view({-1}), 0, at::kLong);
    const int64_t M = C * N > 0 ? cum[-1].item<int64_t>() : 0;
    TORCH_CHECK(M <= INT32_MAX, "too many tile/Gaussian pairs (", M, ") for int32 offsets");
    isect_ids = at::empty({M}, means2d.options().dtype(at::kLong));
    flatten_ids = at::empty({M}, iopts);
    intersect_emit_cpu<scalar_t>(means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), depths.data_ptr<scalar_t>(),
                                 C, N, d, cum.data_ptr<int64_t>(), isect_ids.data_ptr<int64_t>(),
                                 flatten_ids.data_ptr<int32_t>());
    intersect_offsets_cpu(isect_ids.data_ptr<int64_t>(), M, C, d, tile_offsets.data_ptr<int32_t>());
  });
  return {isect_ids, flatten_ids, tile_offsets};
}

// ---------------------------------------------------------------------------------------------- rasterize -----

void check_raster_inputs(const Tensor& means2d, const Tensor& conics, const Tensor& colors, const Tensor& opacities,
                         const std::optional<Tensor>& backgrounds, const Tensor& tile_offsets,
                         const Tensor& flatten_ids, const RasterDims& d) {
  const auto ref_device = means2d.device();
  S4D_CHECK_INPUT(means2d);
  S4D_CHECK_INPUT(conics);
  S4D_CHECK_INPUT(colors);
  S4D_CHECK_INPUT(opacities);
  S4D_CHECK_INPUT(tile_offsets);
  S4D_CHECK_INPUT(flatten_ids);
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(-1);
  check_shape(means2d, "means2d", {C, N, 2});
  check_shape(conics, "conics", {C, N, 3});
  check_shape(colors, "colors", {C, N, D});
  check_shape(opacities, "opacities", {C, N});
  check_shape(tile_offsets, "tile_offsets", {C, d.tiles_h, d.tiles_w});
  TORCH_CHECK(flatten_ids.dim() == 1, "flatten_ids must be 1-D, got shape ", flatten_ids.sizes());
  if (backgrounds.has_value()) {
    S4D_CHECK_INPUT((*backgrounds));
    check_shape(*backgrounds, "backgrounds", {C, D});
  }
}

template <typename T>
const T* opt_ptr(const std::optional<Tensor>& x) {
  return x.has_value() ? x->data_ptr<T>() : nullptr;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> rasterize_fwd(const Tensor& means2d, const Tensor& conics,
                                                         const Tensor& colors, const Tensor& opacities,
                                                         const std::optional<Tensor>& backgrounds,
                                                         const Tensor& tile_offsets, const Tensor& flatten_ids,
                                                         int64_t width, int64_t height, int64_t tile_size,
                                                         bool smooth_cutoff) {
  const RasterDims d = raster_dims(width, height, tile_size, smooth_cutoff);
  check_raster_inputs(means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, d);
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(-1), M = flatten_ids.size(0);
  S4D_DEVICE_GUARD(means2d);
  auto opts = means2d.options();
  Tensor render_colors = at::zeros({C, height, width, D}, opts);
  Tensor render_alphas = at::zeros({C, height, width}, opts);
  Tensor last_ids = at::zeros({C, height, width}, opts.dtype(at::kInt));
  Tensor median_ids = at::full({C, height, width}, -1, opts.dtype(at::kInt));
  if (means2d.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means2d);
    rasterize_fwd_cuda(means2d.data_ptr<float>(), conics.data_ptr<float>(), colors.data_ptr<float>(),
                       opacities.data_ptr<float>(), opt_ptr<float>(backgrounds), tile_offsets.data_ptr<int32_t>(),
                       flatten_ids.data_ptr<int32_t>(), C, N, D, M, d, render_colors.data_ptr<float>(),
                       render_alphas.data_ptr<float>(), last_ids.data_ptr<int32_t>(), median_ids.data_ptr<int32_t>(),
                       stream_of(means2d));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_fwd", [&] {
      rasterize_fwd_cpu<scalar_t>(means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                  colors.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
                                  opt_ptr<scalar_t>(backgrounds), tile_offsets.data_ptr<int32_t>(),
                                  flatten_ids.data_ptr<int32_t>(), C, N, D, M, d,
                                  render_colors.data_ptr<scalar_t>(), render_alphas.data_ptr<scalar_t>(),
                                  last_ids.data_ptr<int32_t>(), median_ids.data_ptr<int32_t>());
    });
  }
  return {render_colors, render_alphas, last_ids, median_ids};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, std::optional<Tensor>> rasterize_bwd(
    const Tensor& means2d, const Tensor& conics, const Tensor& colors, const Tensor& opacities,
    const std::optional<Tensor>& backgrounds, const Tensor& tile_offsets, const Tensor& flatten_ids, int64_t width,
    int64_t height, int64_t tile_size, bool smooth_cutoff, const Tensor& render_alphas, const Tensor& last_ids,
    const Tensor& v_render_colors, const Tensor& v_render_alphas) {
  const RasterDims d = raster_dims(width, height, tile_size, smooth_cutoff);
  check_raster_inputs(means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids, d);
  const auto ref_device = means2d.device();
  S4D_CHECK_INPUT(render_alphas);
  S4D_CHECK_INPUT(last_ids);
  S4D_CHECK_INPUT(v_render_colors);
  S4D_CHECK_INPUT(v_render_alphas);
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(-1), M = flatten_ids.size(0);
  S4D_DEVICE_GUARD(means2d);
  Tensor v_means2d = at::zeros_like(means2d), v_means2d_abs = at::zeros_like(means2d);
  Tensor v_conics = at::zeros_like(conics), v_colors = at::zeros_like(colors);
  Tensor v_opacities = at::zeros_like(opacities);
  std::optional<Tensor> v_backgrounds;
  if (backgrounds.has_value()) v_backgrounds = at::zeros_like(*backgrounds);
  if (means2d.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means2d);
    rasterize_bwd_cuda(means2d.data_ptr<float>(), conics.data_ptr<float>(), colors.data_ptr<float>(),
                       opacities.data_ptr<float>(), opt_ptr<float>(backgrounds), tile_offsets.data_ptr<int32_t>(),
                       flatten_ids.data_ptr<int32_t>(), C, N, D, M, d, render_alphas.data_ptr<float>(),
                       last_ids.data_ptr<int32_t>(), v_render_colors.data_ptr<float>(),
                       v_render_alphas.data_ptr<float>(), v_means2d.data_ptr<float>(),
                       v_means2d_abs.data_ptr<float>(), v_conics.data_ptr<float>(), v_colors.data_ptr<float>(),
                       v_opacities.data_ptr<float>(),
                       v_backgrounds.has_value() ? v_backgrounds->data_ptr<float>() : nullptr, stream_of(means2d));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_bwd", [&] {
      rasterize_bwd_cpu<scalar_t>(
          means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
          opacities.data_ptr<scalar_t>(), opt_ptr<scalar_t>(backgrounds), tile_offsets.data_ptr<int32_t>(),
          flatten_ids.data_ptr<int32_t>(), C, N, D, M, d, render_alphas.data_ptr<scalar_t>(),
          last_ids.data_ptr<int32_t>(), v_render_colors.data_ptr<scalar_t>(), v_render_alphas.data_ptr<scalar_t>(),
          v_means2d.data_ptr<scalar_t>(), v_means2d_abs.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(),
          v_colors.data_ptr<scalar_t>(), v_opacities.data_ptr<scalar_t>(),
          v_backgrounds.has_value() ? v_backgrounds->data_ptr<scalar_t>() : nullptr);
    });
  }
  return {v_means2d, v_means2d_abs, v_conics, v_colors, v_opacities, v_backgrounds};
}

// --------------------------------------------------------------------------------------------- slice_4d -----

void check_slice4d_inputs(const Tensor& means4, const Tensor& covars4, const Tensor& opacities) {
  const auto ref_device = means4.device();
  S4D_CHECK_INPUT(means4);
  S4D_CHECK_INPUT(covars4);
  S4D_CHECK_INPUT(opacities);
  const int64_t N = means4.size(0);
  check_shape(means4, "means4", {N, 4});
  check_shape(covars4, "covars4", {N, 10});
  check_shape(opacities, "opacities", {N});
  TORCH_CHECK(covars4.scalar_type() == means4.scalar_type() && opacities.scalar_type() == means4.scalar_type(),
              "slice_4d: means4, covars4 and opacities must share a dtype");
}

std::tuple<Tensor, Tensor, Tensor, Tensor> slice4d_fwd(const Tensor& means4, const Tensor& covars4,
                                                       const Tensor& opacities, double t) {
  check_slice4d_inputs(means4, covars4, opacities);
  const int64_t N = means4.size(0);
  S4D_DEVICE_GUARD(means4);
  auto opts = means4.options();
  Tensor means3 = at::empty({N, 3}, opts), covars3 = at::empty({N, 6}, opts);
  Tensor opacities3 = at::empty({N}, opts), weights = at::empty({N}, opts);
  if (means4.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means4);
    slice4d_fwd_cuda(means4.data_ptr<float>(), covars4.data_ptr<float>(), opacities.data_ptr<float>(), (float)t, N,
                     means3.data_ptr<float>(), covars3.data_ptr<float>(), opacities3.data_ptr<float>(),
                     weights.data_ptr<float>(), stream_of(means4));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means4.scalar_type(), "slice4d_fwd", [&] {
      slice4d_fwd_cpu<scalar_t>(means4.data_ptr<scalar_t>(), covars4.data_ptr<scalar_t>(),
                                opacities.data_ptr<scalar_t>(), (scalar_t)t, N, means3.data_ptr<scalar_t>(),
                                covars3.data_ptr<scalar_t>(), opacities3.data_ptr<scalar_t>(),
                                weights.data_ptr<scalar_t>());
    });
  }
  return {means3, covars3, opacities3, weights};
}

std::tuple<Tensor, Tensor, Tensor> slice4d_bwd(const Tensor& means4, const Tensor& covars4, const Tensor& opacities,
                                               double t, const Tensor& v_means3, const Tensor& v_covars3,
                                               const Tensor& v_opacities3, const Tensor& v_weights) {
  check_slice4d_inputs(means4, covars4, opacities);
  const auto ref_device = means4.device();
  S4D_CHECK_INPUT(v_means3);
  S4D_CHECK_INPUT(v_covars3);
  S4D_CHECK_INPUT(v_opacities3);
  S4D_CHECK_INPUT(v_weights);
  const int64_t N = means4.size(0);
  check_shape(v_means3, "v_means3", {N, 3});
  check_shape(v_covars3, "v_covars3", {N, 6});
  check_shape(v_opacities3, "v_opacities3", {N});
  check_shape(v_weights, "v_weights", {N});
  S4D_DEVICE_GUARD(means4);
  Tensor v_means4 = at::empty_like(means4), v_covars4 = at::empty_like(covars4);
  Tensor v_opacities = at::empty_like(opacities);
  if (means4.is_cuda()) {
#ifdef WITH_CUDA
    check_cuda_float(means4);
    slice4d_bwd_cuda(means4.data_ptr<float>(), covars4.data_ptr<float>(), opacities.data_ptr<float>(), (float)t, N,
                     v_means3.data_ptr<float>(), v_covars3.data_ptr<float>(), v_opacities3.data_ptr<float>(),
                     v_weights.data_ptr<float>(), v_means4.data_ptr<float>(), v_covars4.data_ptr<float>(),
                     v_opacities.data_ptr<float>(), stream_of(means4));
#else
    no_cuda();
#endif
  } else {
    AT_DISPATCH_FLOATING_TYPES(means4.scalar_type(), "slice4d_bwd", [&] {
      slice4d_bwd_cpu<scalar_t>(means4.data_ptr<scalar_t>(), covars4.data_ptr<scalar_t>(),
                                opacities.data_ptr<scalar_t>(), (scalar_t)t, N, v_means3.data_ptr<scalar_t>(),
                                v_covars3.data_ptr<scalar_t>(), v_opacities3.data_ptr<scalar_t>(),
                                v_weights.data_ptr<scalar_t>(), v_means4.data_ptr<scalar_t>(),
                                v_covars4.data_ptr<scalar_t>(), v_opacities.data_ptr<scalar_t>());
    });
  }
  return {v_means4, v_covars4, v_opacities};
}

}  // namespace

TORCH_LIBRARY(splat4d_raster, m) {
  m.def(
      "project_fwd(Tensor means, Tensor covars, Tensor opacities, Tensor T_cam_world, Tensor Ks, int width, "
      "int height, float eps2d, float near_plane, float far_plane, bool antialiased) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "project_bwd(Tensor means, Tensor covars, Tensor opacities, Tensor T_cam_world, Tensor Ks, int width, "
      "int height, float eps2d, bool antialiased, Tensor radii, Tensor v_means2d, Tensor v_conics, "
      "Tensor v_depths, Tensor v_opacities_out) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("sh_fwd(int degree, Tensor dirs, Tensor coeffs) -> Tensor");
  m.def("sh_bwd(int degree, Tensor dirs, Tensor coeffs, Tensor v_colors) -> (Tensor, Tensor)");
  m.def(
      "intersect_tiles(Tensor means2d, Tensor radii, Tensor depths, int width, int height, int tile_size) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "rasterize_fwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor? backgrounds, "
      "Tensor tile_offsets, Tensor flatten_ids, int width, int height, int tile_size, bool smooth_cutoff) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rasterize_bwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor? backgrounds, "
      "Tensor tile_offsets, Tensor flatten_ids, int width, int height, int tile_size, bool smooth_cutoff, "
      "Tensor render_alphas, Tensor last_ids, Tensor v_render_colors, Tensor v_render_alphas) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor?)");
  m.def(
      "slice4d_fwd(Tensor means4, Tensor covars4, Tensor opacities, float t) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "slice4d_bwd(Tensor means4, Tensor covars4, Tensor opacities, float t, Tensor v_means3, Tensor v_covars3, "
      "Tensor v_opacities3, Tensor v_weights) -> (Tensor, Tensor, Tensor)");
}

#define S4D_REGISTER_IMPLS(m)                     \
  m.impl("project_fwd", &project_fwd);         \
  m.impl("project_bwd", &project_bwd);         \
  m.impl("sh_fwd", &sh_fwd);                   \
  m.impl("sh_bwd", &sh_bwd);                   \
  m.impl("intersect_tiles", &intersect_tiles); \
  m.impl("rasterize_fwd", &rasterize_fwd);     \
  m.impl("rasterize_bwd", &rasterize_bwd);     \
  m.impl("slice4d_fwd", &slice4d_fwd);         \
  m.impl("slice4d_bwd", &slice4d_bwd)

TORCH_LIBRARY_IMPL(splat4d_raster, CPU, m) { S4D_REGISTER_IMPLS(m); }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(splat4d_raster, CUDA, m) { S4D_REGISTER_IMPLS(m); }
#endif

}  // namespace splat4d_raster
