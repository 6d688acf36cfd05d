"""`Gaussians` / `Gaussians4D`: raw, optimisable parameters of 3D and 4D Gaussian scenes and their activated views.

Raw parameters live in a `torch.nn.ParameterDict` (what optimisers and densification strategies edit);
activations are read-only properties, named differently from the raw tensors (`log_scales` vs `scales`).
"""

import math

import torch
from jaxtyping import Float, Int
from scipy.spatial import cKDTree
from torch import Tensor

import cuda_rasterizer as cr

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


class Gaussians4D(torch.nn.Module):
    """A 4D (space-time) Gaussian scene (Yang et al. 2024, "Real-time Photorealistic Dynamic Scene Representation
    and Rendering with 4D Gaussian Splatting"): rendered at a time t through `cuda_rasterizer.slice_4d`.

    Raw parameters: `means4` [N, 4] (x, y, z, t), `log_scales4` [N, 4], a 4D rotation as either `quats_l` and
    `quats_r` [N, 4] (left/right quaternions, Yang et al.) or `rotors` [N, 8] (Duan et al. 2024, "4D-Rotor Gaussian
    Splatting"; see `cuda_rasterizer.rotors_to_quats_lr`), `opacity_logits` [N], and colour as SH in direction times
    a cosine basis in time: `sh0` [N, M, 1, 3] and `shN` [N, M, K - 1, 3] for M = time_degree + 1 time bases.
    `time_period` is the period of that basis, cos(2π m t / time_period) (Yang et al. use the sequence length, 1
    for normalised times; 2 gives a non-periodic half-cosine basis on [0, 1]).
    """

    def __init__(self, params: dict[str, Tensor], time_period: float = 1.0) -> None:
        super().__init__()
        if not time_period > 0:
            raise ValueError(f"Gaussians4D: time_period must be positive, got {time_period}")
        self.time_period = float(time_period)
        required = {"means4", "log_scales4", "opacity_logits", "sh0", "shN"}
        missing = required - params.keys()
        rotations = [keys for keys in (("quats_l", "quats_r"), ("rotors",)) if set(keys) <= params.keys()]
        if missing or len(rotations) != 1:
            raise ValueError(
                f"Gaussians4D: missing parameters {sorted(missing)} or not exactly one rotation "
                f"(quats_l + quats_r, or rotors) among {sorted(params)}"
            )
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})

    @classmethod
    def from_points(
        cls,
        points: Float[Tensor, "N 3"],
        rgb: Float[Tensor, "N 3"],
        times: Float[Tensor, " N"],
        sh_degree: int = 3,
        time_degree: int = 0,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
        init_time_scale: float = 0.1,
        rotation: str = "quats",
        time_period: float = 1.0,
    ) -> "Gaussians4D":
        """Isotropic, unrotated Gaussians at `points` and `times`: spatial size from the 3 nearest neighbours (3DGS
        init), temporal scale `init_time_scale`, static colour `rgb` (higher time bases zero).

        Args:
            rotation: "quats" (quats_l, quats_r) or "rotors" (Duan et al.).
        """
        if rotation not in ("quats", "rotors"):
            raise ValueError(f"rotation must be 'quats' or 'rotors', got {rotation!r}")
        N, M = points.shape[0], time_degree + 1
        dist = _mean_knn_distance(points, k=3).clamp_min(1e-7)
        log_scales4 = torch.cat(
            [
                torch.log(dist * init_scale)[:, None].repeat(1, 3),
                torch.full((N, 1), math.log(init_time_scale)).to(points),
            ],
            dim=1,
        )
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(N, 1).to(points)
        if rotation == "quats":
            rotation_params = {"quats_l": identity, "quats_r": identity.clone()}
        else:
            rotation_params = {"rotors": torch.cat([identity, torch.zeros(N, 4).to(points)], dim=1)}
        sh0 = torch.zeros(N, M, 1, 3).to(points)
        sh0[:, 0, 0] = rgb_to_sh0(rgb)
        return cls(
            {
                "means4": torch.cat([points, times[:, None].to(points)], dim=1),
                "log_scales4": log_scales4,
                **rotation_params,
                "opacity_logits": torch.full((N,), math.log(init_opacity / (1 - init_opacity))).to(points),
                "sh0": sh0,
                "shN": torch.zeros(N, M, num_sh_bases(sh_degree) - 1, 3).to(points),
            },
            time_period,
        )

    @classmethod
    def from_gaussians(
        cls,
        gaussians: Gaussians,
        time: float = 0.5,
        time_scale: float = 1.0,
        time_degree: int = 0,
        time_period: float = 1.0,
    ) -> "Gaussians4D":
        """Lift a 3D scene to 4D: each Gaussian keeps its shape, rotation and colour and gets a lifespan centred at
        `time` with temporal scale `time_scale`, with no space-time rotation. Rendered at t = `time` (or with a
        large `time_scale`, at any t) it gives the 3D scene's image."""
        with torch.no_grad():
            N = len(gaussians)
            quats_l, quats_r = cr.spatial_quats_to_quats_lr(gaussians.quats)
            pad = gaussians.params["sh0"].new_zeros
            return cls(
                {
                    "means4": torch.cat([gaussians.means, gaussians.means.new_full((N, 1), time)], dim=1),
                    "log_scales4": torch.cat(
                        [gaussians.params["log_scales"], pad(N, 1).fill_(math.log(time_scale))], dim=1
                    ),
                    "quats_l": quats_l,
                    "quats_r": quats_r,
                    "opacity_logits": gaussians.params["opacity_logits"].clone(),
                    "sh0": torch.cat([gaussians.params["sh0"][:, None], pad(N, time_degree, 1, 3)], dim=1),
                    "shN": torch.cat(
                        [
                            gaussians.params["shN"][:, None],
                            pad(N, time_degree, *gaussians.params["shN"].shape[1:]),
                        ],
                        dim=1,
                    ),
                },
                time_period,
            )

    def __len__(self) -> int:
        return self.params["means4"].shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.params["shN"].shape[2] + 1) - 1

    @property
    def time_degree(self) -> int:
        return self.params["sh0"].shape[1] - 1

    @property
    def means4(self) -> Float[Tensor, "N 4"]:
        return self.params["means4"]

    @property
    def scales4(self) -> Float[Tensor, "N 4"]:
        return torch.exp(self.params["log_scales4"])

    @property
    def opacities(self) -> Float[Tensor, " N"]:
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh_coeffs(self) -> Float[Tensor, "N M K 3"]:
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=2)

    @property
    def covars4(self) -> Float[Tensor, "N 10"]:
        """Packed 4D covariances (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt) from scales and rotation."""
        return self.covars4_of(None)

    def covars4_of(self, ids: Int[Tensor, " M"] | None) -> Float[Tensor, "M 10"]:
        """`covars4` of the Gaussians `ids` only (all of them for None), built from those rows alone: regularisers
        that look at the Gaussians alive at one time need not build every covariance."""

        def rows(name: str) -> Tensor:
            return self.params[name] if ids is None else self.params[name][ids]

        scales4 = torch.exp(rows("log_scales4"))
        if "rotors" in self.params:
            return cr.covar4d_from_rotors(rows("rotors"), scales4)
        return cr.covar4d_from_quats(rows("quats_l"), rows("quats_r"), scales4)


def _mean_knn_distance(points: Float[Tensor, "N 3"], k: int) -> Float[Tensor, " N"]:
    """Mean Euclidean distance of each point to its k nearest other points (scipy's k-d tree: O(N log N), where a
    brute-force torch.cdist is O(N²) and takes minutes for 100k random initial points on a CPU)."""
    N = points.shape[0]
    if N <= 1:
        return torch.ones(N, dtype=points.dtype, device=points.device)
    k = min(k, N - 1)
    xyz = points.detach().cpu().double().numpy()
    distances, _ = cKDTree(xyz).query(xyz, k=k + 1)
    return torch.from_numpy(distances[:, 1:].mean(axis=1)).to(points)
