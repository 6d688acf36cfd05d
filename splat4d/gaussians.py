"""`Gaussians`: raw, optimisable parameters of a 3D Gaussian scene and their activated views.

Raw parameters live in a `torch.nn.ParameterDict` (what optimisers and densification strategies edit);
activations are read-only properties, named differently from the raw tensors (`log_scales` vs `scales`).
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor

# Zeroth SH basis constant: colour = SH_C0 * sh0 + 0.5 (3DGS).
SH_C0 = 0.28209479177387814


def rgb_to_sh0(rgb: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    return (rgb - 0.5) / SH_C0


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


class Gaussians(torch.nn.Module):
    """A 3D Gaussian scene: means, log-scales, quaternions (w, x, y, z), opacity logits and SH coefficients."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        super().__init__()
        required = {"means", "log_scales", "quats", "opacity_logits", "sh0", "shN"}
        missing = required - params.keys()
        if missing:
            raise ValueError(f"Gaussians: missing parameters {sorted(missing)}")
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})

    @classmethod
    def from_points(
        cls,
        points: Float[Tensor, "N 3"],
        rgb: Float[Tensor, "N 3"],
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
    ) -> "Gaussians":
        """Isotropic Gaussians at `points`, sized by the mean distance to their 3 nearest neighbours (3DGS init)."""
        N = points.shape[0]
        dist = _mean_knn_distance(points, k=3).clamp_min(1e-7)
        return cls(
            {
                "means": points.clone(),
                "log_scales": torch.log(dist * init_scale)[:, None].repeat(1, 3),
                "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(N, 1).to(points),
                "opacity_logits": torch.full((N,), math.log(init_opacity / (1 - init_opacity))).to(points),
                "sh0": rgb_to_sh0(rgb)[:, None, :].clone(),
                "shN": torch.zeros(N, num_sh_bases(sh_degree) - 1, 3).to(points),
            }
        )

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.params["shN"].shape[1] + 1) - 1

    @property
    def means(self) -> Float[Tensor, "N 3"]:
        return self.params["means"]

    @property
    def scales(self) -> Float[Tensor, "N 3"]:
        return torch.exp(self.params["log_scales"])

    @property
    def quats(self) -> Float[Tensor, "N 4"]:
        return self.params["quats"]

    @property
    def opacities(self) -> Float[Tensor, " N"]:
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh_coeffs(self) -> Float[Tensor, "N K 3"]:
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)


def _mean_knn_distance(points: Float[Tensor, "N 3"], k: int, chunk: int = 4096) -> Float[Tensor, " N"]:
    """Mean Euclidean distance of each point to its k nearest other points (chunked brute force)."""
    N = points.shape[0]
    if N <= 1:
        return torch.ones(N, dtype=points.dtype, device=points.device)
    k = min(k, N - 1)
    out = []
    for start in range(0, N, chunk):
        d = torch.cdist(points[start : start + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(dim=1))
    return torch.cat(out)
