"""Rigid and similarity helpers of `splat4d.geometry`."""

import math

import torch

from splat4d.geometry import quat_to_rotmat, similarity_residuals


def test_similarity_residuals_ignore_rotation_scale_and_translation_but_not_shape() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    q = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.7, 0.2], dtype=torch.float64), dim=0)
    moved = 2.5 * points @ quat_to_rotmat(q).T + torch.tensor([1.0, -4.0, 0.5], dtype=torch.float64)
    assert float(similarity_residuals(points, moved).max()) < 1e-9
    mirrored = moved * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a reflection is not a similarity
    assert float(similarity_residuals(points, mirrored).median()) > 0.1
    bent = moved.clone()
    bent[3] += torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    residuals = similarity_residuals(points, bent)
    assert int(residuals.argmax()) == 3 and math.isfinite(float(residuals.sum()))
