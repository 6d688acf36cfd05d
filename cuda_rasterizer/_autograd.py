"""One `torch.autograd.Function` per compiled op: save what backward needs, then call the `*_bwd` kernel.

Used by the `cpu` and `cuda` backends; the `reference` backend is plain differentiable torch.
"""

import torch

from . import _backend
from .types import RasterSettings


class ProjectFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, covars, opacities, T_cam_world, Ks, settings: RasterSettings):
        s = settings
        means2d, conics, depths, radii, opac = _backend.ops().project_fwd(
            means,
            covars,
            opacities,
            T_cam_world,
            Ks,
            s.width,
            s.height,
            s.eps2d,
            s.near,
            s.far,
            s.antialiased,
        )
        ctx.save_for_backward(means, covars, opacities, T_cam_world, Ks, radii)
        ctx.settings = s
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii, opac

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_opac):
        means, covars, opacities, T_cam_world, Ks, radii = ctx.saved_tensors
        s: RasterSettings = ctx.settings
        v_means, v_covars, v_opacities, v_T = _backend.ops().project_bwd(
            means, covars, opacities, T_cam_world, Ks, s.width, s.height, s.eps2d, s.antialiased, radii,
            v_means2d.contiguous(), v_conics.contiguous(), v_depths.contiguous(), v_opac.contiguous(),
        )  # fmt: skip
        return v_means, v_covars, v_opacities, v_T if ctx.needs_input_grad[3] else None, None, None


class EvalSHFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree: int, dirs, coeffs):
        ctx.save_for_backward(dirs, coeffs)
        ctx.degree = degree
        return _backend.ops().sh_fwd(degree, dirs, coeffs)

    @staticmethod
    def backward(ctx, v_colors):
        dirs, coeffs = ctx.saved_tensors
        v_coeffs, v_dirs = _backend.ops().sh_bwd(ctx.degree, dirs, coeffs, v_colors.contiguous())
        return None, v_dirs, v_coeffs


class RasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        means2d,
        conics,
        colors,
        opacities,
        background,
        tile_offsets,
        flatten_ids,
        settings: RasterSettings,
    ):
        s = settings
        render_colors, render_alphas, last_ids, median_ids = _backend.ops().rasterize_fwd(
            means2d, conics, colors, opacities, background, tile_offsets, flatten_ids,
            s.width, s.height, s.tile_size, s.smooth_cutoff,
        )  # fmt: skip
        ctx.save_for_backward(
            means2d, conics, colors, opacities, background, tile_offsets, flatten_ids, render_alphas, last_ids
        )
        ctx.settings = s
        ctx.mark_non_differentiable(median_ids)
        return render_colors, render_alphas.unsqueeze(-1), median_ids

    @staticmethod
    def backward(ctx, v_render_colors, v_render_alphas, _v_median_ids):
        (
            means2d,
            conics,
            colors,
            opacities,
            background,
            tile_offsets,
            flatten_ids,
            render_alphas,
            last_ids,
        ) = ctx.saved_tensors
        s: RasterSettings = ctx.settings
        v_means2d, v_means2d_abs, v_conics, v_colors, v_opacities, v_background = _backend.ops().rasterize_bwd(
            means2d, conics, colors, opacities, background, tile_offsets, flatten_ids,
            s.width, s.height, s.tile_size, s.smooth_cutoff, render_alphas, last_ids,
            v_render_colors.contiguous(), v_render_alphas.squeeze(-1).contiguous(),
        )  # fmt: skip
        if s.absgrad:
            # Densification reads it from the tensor, as gsplat's strategies expect (`means2d.absgrad`).
            means2d.absgrad = v_means2d_abs
        return v_means2d, v_conics, v_colors, v_opacities, v_background, None, None, None


class Slice4DFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means4, covars4, opacities, t: float):
        means3, covars3, opacities3, weights = _backend.ops().slice4d_fwd(means4, covars4, opacities, t)
        ctx.save_for_backward(means4, covars4, opacities)
        ctx.t = t
        return means3, covars3, opacities3, weights

    @staticmethod
    def backward(ctx, v_means3, v_covars3, v_opacities3, v_weights):
        means4, covars4, opacities = ctx.saved_tensors
        v_means4, v_covars4, v_opacities = _backend.ops().slice4d_bwd(
            means4, covars4, opacities, ctx.t,
            v_means3.contiguous(), v_covars3.contiguous(), v_opacities3.contiguous(), v_weights.contiguous(),
        )  # fmt: skip
        return v_means4, v_covars4, v_opacities, None
