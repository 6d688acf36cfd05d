// Named constants of the rasterizer, with their sources. Shared by the CPU and CUDA paths.
#pragma once

namespace splat4d_raster {

// Tile edge in pixels (3DGS, Kerbl et al. 2023, sec. 6: 16x16 tiles).
constexpr int TILE_SIZE = 16;

// Skip contributions below 1/255 (3DGS, appendix C on numerical stability).
constexpr double ALPHA_MIN = 1.0 / 255.0;

// Clamp alpha at 0.99 so that 1 - alpha stays invertible in backward (3DGS, appendix C).
constexpr double ALPHA_MAX = 0.99;

// Stop compositing a pixel once its transmittance would drop to or below this (3DGS, appendix C).
constexpr double TRANSMITTANCE_MIN = 1e-4;

// Transmittance at which the median depth is read (the Gaussian that crosses 50% coverage).
constexpr double MEDIAN_TRANSMITTANCE = 0.5;

// Perspective-Jacobian guard band: projected centres are clamped to 1.3x the half field of view before the
// Jacobian is evaluated (Inria diff-gaussian-rasterization, computeCov2D).
constexpr double FOV_GUARD = 0.3;

}  // namespace splat4d_raster
