"""Dense pure-PyTorch reference of the 4D ops: the oracle `slice_4d`, `covar4d_from_quats`,
`covar4d_from_rotors` and `eval_sh_4d` are tested against.

Each function follows ``cuda_rasterizer/README.md`` ("slice_4d") with a deliberately different, obvious
algorithm from the library code: 4D rotations are applied as quaternion sandwiches ``q_l ⊗ v ⊗ q_r`` (not as
4×4 isoclinic matrices) or as rotor sandwiches ``r v r̃`` in the Clifford algebra Cl(4, 0) (not through the
rotor → quaternion-pair map), slicing works on unpacked 4×4 matrices, and 4D colour evaluates `eval_sh` once per
time basis and sums. Plain differentiable torch: autograd provides the backward; float32 and float64.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor

from . import reference

# Packed upper triangle of a symmetric 4x4 in row-major order: (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt).
_TRIU4_ROWS = (0, 0, 0, 0, 1, 1, 1, 2, 2, 3)
_TRIU4_COLS = (0, 1, 2, 3, 1, 2, 3, 2, 3, 3)
_TRIU4_OF_ENTRY = ((0, 1, 2, 3), (1, 4, 5, 6), (2, 5, 7, 8), (3, 6, 8, 9))
# Packed upper triangle of a symmetric 3x3: (xx, xy, xz, yy, yz, zz).
_TRIU3_ROWS = (0, 0, 0, 1, 1, 2)
_TRIU3_COLS = (0, 1, 2, 1, 2, 2)


def pack4(matrices: Float[Tensor, "... 4 4"]) -> Float[Tensor, "... 10"]:
    return matrices[..., _TRIU4_ROWS, _TRIU4_COLS]


def unpack4(packed: Float[Tensor, "... 10"]) -> Float[Tensor, "... 4 4"]:
    return packed[..., torch.tensor(_TRIU4_OF_ENTRY, device=packed.device)]


# ------------------------------------------------------------------------------------------ 4D covariances -----


def _hamilton(p: Float[Tensor, "... 4"], q: Float[Tensor, "... 4"]) -> Float[Tensor, "... 4"]:
    """Quaternion product p ⊗ q, components (w, x, y, z)."""
    a1, b1, c1, d1 = p.unbind(-1)
    a2, b2, c2, d2 = q.unbind(-1)
    return torch.stack(
        [
            a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
            a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
            a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
        ],
        dim=-1,
    )


def _covar_from_rotation(R: Float[Tensor, "N 4 4"], scales4: Float[Tensor, "N 4"]) -> Float[Tensor, "N 10"]:
    return pack4(R @ torch.diag_embed(scales4.square()) @ R.transpose(-1, -2))


def covar4d_from_quats(
    quats_l: Float[Tensor, "N 4"], quats_r: Float[Tensor, "N 4"], scales4: Float[Tensor, "N 4"]
) -> Float[Tensor, "N 10"]:
    """Σ₄ = R diag(s²) Rᵀ, with R v = q_l ⊗ v ⊗ q_r for v = (x, y, z, t) read as the quaternion x + y i + z j + t k
    (Yang et al. 2024), computed column by column on the basis vectors."""
    q_l = quats_l / quats_l.norm(dim=-1, keepdim=True)
    q_r = quats_r / quats_r.norm(dim=-1, keepdim=True)
    eye = torch.eye(4, dtype=q_l.dtype, device=q_l.device)
    columns = [_hamilton(_hamilton(q_l, eye[j].expand_as(q_l)), q_r) for j in range(4)]
    return _covar_from_rotation(torch.stack(columns, dim=-1), scales4)


def _clifford_tables(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Cl(4, 0) with basis blades indexed by bitmask (bit 0 = x, 1 = y, 2 = z, 3 = t): the product table
    G[a, b, a ^ b] = sign of reordering e_a e_b into canonical order, and the reversion signs (-1)^(k(k-1)/2)."""
    G = torch.zeros(16, 16, 16, dtype=dtype, device=device)
    for a in range(16):
        for b in range(16):
            swaps, rest = 0, a >> 1
            while rest:
                swaps += bin(rest & b).count("1")
                rest >>= 1
            G[a, b, a ^ b] = -1.0 if swaps % 2 else 1.0
    grades = [bin(i).count("1") for i in range(16)]
    rev = torch.tensor([(-1.0) ** (k * (k - 1) // 2) for k in grades], dtype=dtype, device=device)
    return G, rev


# Blades of the 8 rotor components (s, b_xy, b_xz, b_yz, b_xt, b_yt, b_zt, p) and of the vector (x, y, z, t).
_ROTOR_BLADES = (0b0000, 0b0011, 0b0101, 0b0110, 0b1001, 0b1010, 0b1100, 0b1111)
_VECTOR_BLADES = (0b0001, 0b0010, 0b0100, 0b1000)


def covar4d_from_rotors(rotors: Float[Tensor, "N 8"], scales4: Float[Tensor, "N 4"]) -> Float[Tensor, "N 10"]:
    """Σ₄ = R diag(s²) Rᵀ with R v = r v r̃ / |r|², the rotor sandwich in Cl(4, 0) (Duan et al. 2024, "4D-Rotor
    Gaussian Splatting"). `rotors` = (s, b_xy, b_xz, b_yz, b_xt, b_yt, b_zt, p), p the e_xyzt coefficient; they must
    be true rotors up to scale (r r̃ a positive scalar), e.g. products of exp(θ/2 e_ij)."""
    G, rev = _clifford_tables(rotors.dtype, rotors.device)
    r = rotors.new_zeros(rotors.shape[0], 16)
    r[:, _ROTOR_BLADES] = rotors
    r_rev = r * rev
    columns = []
    for blade in _VECTOR_BLADES:
        e = rotors.new_zeros(16)
        e[blade] = 1.0
        re = torch.einsum("na,b,abc->nc", r, e, G)
        columns.append(torch.einsum("na,nb,abc->nc", re, r_rev, G)[:, _VECTOR_BLADES])
    R = torch.stack(columns, dim=-1) / rotors.square().sum(-1)[:, None, None]
    return _covar_from_rotation(R, scales4)


# ---------------------------------------------------------------------------------------------- slice_4d -----


def slice_4d(
    means4: Float[Tensor, "N 4"],
    covars4: Float[Tensor, "N 10"],
    opacities: Float[Tensor, " N"],
    t: float,
) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 6"], Float[Tensor, " N"], Float[Tensor, " N"]]:
    """Condition 4D Gaussians on time t: (means3, covars3, opacities · w, w), w = exp(-½ (t - μ_t)² / Σ_tt).

    Gaussians with Σ_tt <= 0 pass through unchanged in space with w = 0.
    """
    S = unpack4(covars4)
    A, b, s = S[:, :3, :3], S[:, :3, 3], S[:, 3, 3]
    has_time = s > 0
    s_safe = torch.where(has_time, s, torch.ones_like(s))
    dt = t - means4[:, 3]
    gain = torch.where(has_time, 1 / s_safe, torch.zeros_like(s))  # Σ_tt⁻¹, or 0 without a temporal extent
    means3 = means4[:, :3] + b * (gain * dt)[:, None]
    covars3 = (A - b[:, :, None] * b[:, None, :] * gain[:, None, None])[:, _TRIU3_ROWS, _TRIU3_COLS]
    weights = torch.where(has_time, torch.exp(-0.5 * dt.square() / s_safe), torch.zeros_like(s))
    return means3, covars3, opacities * weights, weights


# -------------------------------------------------------------------------------------------- eval_sh_4d -----


def eval_sh_4d(
    degree: int,
    time_degree: int,
    dirs: Float[Tensor, "C N 3"],
    coeffs: Float[Tensor, "N M K D"],
    t: float,
    period: float = 1.0,
) -> Float[Tensor, "C N D"]:
    """Σ_{m ≤ time_degree} cos(2π m t / period) · eval_sh(degree, dirs, coeffs[:, m]), one SH evaluation per
    time basis."""
    out = None
    for m in range(time_degree + 1):
        term = math.cos(2 * math.pi * m * t / period) * reference.eval_sh(degree, dirs, coeffs[:, m])
        out = term if out is None else out + term
    return out
