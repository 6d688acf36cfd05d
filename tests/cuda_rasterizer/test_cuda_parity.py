"""CUDA kernels vs the dense reference, forward and backward with random cotangents (GPU only)."""

import pytest
import torch

import cuda_rasterizer as cr

pytestmark = pytest.mark.cuda


def _inputs(n: int, width: int, height: int, cameras: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    z = 2 + 4 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]
    T = torch.eye(4).repeat(cameras, 1, 1)
    T[:, 0, 3] = torch.linspace(-0.2, 0.2, cameras)
    f = 0.8 * width
    return {
        "means": torch.cat([xy, z[:, None]], 1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * 0.05 + 0.01,
        "opacities": torch.rand(n, generator=g) * 0.9 + 0.05,
        "sh": torch.randn(n, 16, 3, generator=g) * 0.3,
        "T_cam_world": T,
        "Ks": torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]).repeat(cameras, 1, 1),
        "settings": cr.RasterSettings(width=width, height=height),
    }


def _pipeline(inp: dict, device: str, backend: str) -> tuple[list[torch.Tensor], cr.RasterOutput]:
    leaves = [inp[k].to(device).requires_grad_() for k in ("means", "quats", "scales", "opacities", "sh")]
    means, quats, scales, opac, sh = leaves
    s = inp["settings"]
    T, K = inp["T_cam_world"].to(device), inp["Ks"].to(device)
    p = cr.project(means, cr.quat_scale_to_covar(quats, scales), opac, T, K, s, backend)
    dirs = means[None] - torch.linalg.inv(T)[:, None, :3, 3]
    colors = cr.eval_sh(3, dirs, sh, backend) + 0.5
    out = cr.rasterize(p.means2d, p.conics, colors, p.opacities, p.depths, p.radii, s, backend=backend)
    return leaves, out


@pytest.mark.parametrize(("n", "width", "height", "cameras"), [(200, 64, 48, 1), (2000, 160, 120, 3)])
def test_cuda_matches_reference_forward_and_backward(n: int, width: int, height: int, cameras: int) -> None:
    inp = _inputs(n, width, height, cameras, seed=n)
    ref_leaves, ref = _pipeline(inp, "cpu", "reference")
    gpu_leaves, gpu = _pipeline(inp, "cuda", "cuda")
    torch.testing.assert_close(gpu.colors.cpu(), ref.colors, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu.alphas.cpu(), ref.alphas, atol=1e-4, rtol=1e-4)
    v = torch.randn_like(ref.colors)
    ref_grads = torch.autograd.grad((ref.colors * v).sum(), ref_leaves)
    gpu_grads = torch.autograd.grad((gpu.colors * v.cuda()).sum(), gpu_leaves)
    for r, c in zip(ref_grads, gpu_grads, strict=True):
        scale = r.abs().max().clamp_min(1e-6)
        assert (c.cpu() - r).abs().max() / scale < 1e-3


def test_cpu_and_cuda_kernels_work_side_by_side_in_one_process() -> None:
    """A build WITH_CUDA keeps its CPU kernels: once made its device guard refused CPU tensors, so every CPU op
    failed on GPU machines. Alternate the two backends in one process, forward and backward, and compare them."""
    inp = _inputs(300, 64, 48, 2, seed=7)
    v = torch.randn(2, 48, 64, 3, generator=torch.Generator().manual_seed(1))
    grads = {}
    for device, backend in (("cpu", "cpu"), ("cuda", "cuda"), ("cpu", "cpu")):
        leaves, out = _pipeline(inp, device, backend)
        g = torch.autograd.grad((out.colors * v.to(device)).sum(), leaves)
        grads.setdefault(backend, []).append([x.cpu() for x in (out.colors, *g)])
    first_cpu, again_cpu = grads["cpu"]
    for a, b in zip(first_cpu, again_cpu, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # the CUDA run between them changed nothing
    for c, g in zip(first_cpu, grads["cuda"][0], strict=True):
        scale = c.abs().max().clamp_min(1e-6)
        assert (g - c).abs().max() / scale < 1e-3
