"""One small forward and backward pass through every kernel of the rasterizer, for compute-sanitizer.

    python scripts/gpu_kernels_once.py --device cuda     # what `make gpu-check` runs under memcheck and racecheck
    python scripts/gpu_kernels_once.py --device cpu      # the same calls on the CPU kernels (a dry run anywhere)

3D: covariance, projection, SH evaluation, tile intersection and sort, rasterization, each forward and backward
(through autograd), on two cameras. 4D: 4D covariances, slicing at a time, time culling, then the 3D chain on the
sliced Gaussians. Small sizes (a few hundred Gaussians, 64×48) keep the sanitizers' slowdown to seconds. Prints one line per
stage and exits non-zero if any output or gradient is not finite.
"""

import argparse
import sys

import torch

import cuda_rasterizer as cr


def _scene(n: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    z = 2 + 3 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]
    T = torch.eye(4).repeat(2, 1, 1)
    T[1, 0, 3] = 0.2
    width, height = 64, 48
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]).repeat(2, 1, 1)
    tensors = {
        "means": torch.cat([xy, z[:, None]], 1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * 0.05 + 0.01,
        "opacities": torch.rand(n, generator=g) * 0.9 + 0.05,
        "sh": torch.randn(n, 16, 3, generator=g) * 0.3,
        "T_cam_world": T,
        "Ks": K,
    }
    out = {k: v.to(device) for k, v in tensors.items()}
    out["settings"] = cr.RasterSettings(width=width, height=height)
    return out


def _render(means, covars, opacities, sh, scene: dict) -> torch.Tensor:
    """The 3D chain, stage by stage, as `splat4d.render` runs it."""
    s, T, K = scene["settings"], scene["T_cam_world"], scene["Ks"]
    projected = cr.project(means, covars, opacities, T, K, s)
    dirs = means[None] - torch.linalg.inv(T)[:, None, :3, 3]
    colors = cr.eval_sh(3, dirs, sh) + 0.5
    isect = cr.intersect_tiles(projected.means2d, projected.radii, projected.depths, s)
    out = cr.rasterize(
        projected.means2d, projected.conics, colors, projected.opacities, projected.depths, projected.radii, s,
        isect=isect,
    )  # fmt: skip
    return out.colors


def _check(name: str, *tensors: torch.Tensor | None) -> bool:
    ok = all(t is None or bool(torch.isfinite(t).all()) for t in tensors)
    print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return ok


def run_3d(device: str) -> bool:
    scene = _scene(300, device)
    leaves = [scene[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "sh")]
    means, quats, scales, opacities, sh = leaves
    colors = _render(means, cr.quat_scale_to_covar(quats, scales), opacities, sh, scene)
    grads = torch.autograd.grad((colors * torch.randn_like(colors)).sum(), leaves)
    return _check("3D forward (project, sh, intersect, rasterize)", colors) and _check("3D backward", *grads)


def run_4d(device: str) -> bool:
    n = 300
    g = torch.Generator().manual_seed(1)
    means4 = torch.cat([_scene(n, "cpu")["means"], torch.rand(n, 1, generator=g)], 1).to(device)
    log_scales4 = (torch.rand(n, 4, generator=g) * 0.5 - 3.0).to(device)
    quats_l, quats_r = torch.randn(n, 4, generator=g).to(device), torch.randn(n, 4, generator=g).to(device)
    opacities = (torch.rand(n, generator=g) * 0.9 + 0.05).to(device)
    leaves = [t.requires_grad_() for t in (means4, log_scales4, quats_l, quats_r, opacities)]
    covars4 = cr.covar4d_from_quats(quats_l, quats_r, log_scales4.exp())
    sliced = cr.slice_4d(means4, covars4, opacities, 0.5)
    kept = cr.cull_by_time(sliced.temporal_weights, 0.01)
    scene = _scene(n, device)
    colors = _render(
        sliced.means[kept], sliced.covars[kept], sliced.opacities[kept], scene["sh"][kept], scene
    )
    grads = torch.autograd.grad((colors * torch.randn_like(colors)).sum(), leaves, allow_unused=True)
    return _check("4D forward (slice, cull, 3D chain)", colors, sliced.means) and _check(
        "4D backward", *grads
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not cr.has_cuda():
        print("error: --device cuda: no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    ok = run_3d(args.device) & run_4d(args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
