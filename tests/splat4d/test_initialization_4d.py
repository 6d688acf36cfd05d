"""The first 4D Gaussians: each point repeated at evenly spread times, and optionally once more as a still
Gaussian alive over the whole sequence."""

import numpy as np
import pytest
import torch

from cuda_rasterizer.ops import slice_4d
from splat4d.cameras import Cameras
from splat4d.data.base import SceneData
from splat4d.initialization import Init4DConfig, init_gaussians_4d


def _scene(n: int = 50) -> SceneData:
    rng = np.random.default_rng(0)
    T = torch.eye(4)[None].repeat(2, 1, 1)
    T[:, 2, 3] = -3.0
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])[None].repeat(2, 1, 1)
    cameras = Cameras(T, K, 64, 48, times=torch.tensor([0.0, 1.0]))
    return SceneData(
        cameras, [], [None, None], [0, 1], [], points=rng.normal(size=(n, 3)), point_colors=rng.random((n, 3))
    )


@pytest.mark.parametrize("still_copy", [False, True])
def test_time_copies_and_the_still_copy(still_copy: bool) -> None:
    cfg = Init4DConfig(time_copies=4, init_time_scale=0.25, still_copy=still_copy, still_time_scale=2.0)
    g = init_gaussians_4d(_scene(), cfg)
    assert len(g) == 50 * (5 if still_copy else 4)
    times = g.params["means4"][:, 3].detach().reshape(-1, 50)
    expected = [0.125, 0.375, 0.625, 0.875] + ([0.5] if still_copy else [])
    torch.testing.assert_close(times, torch.tensor(expected)[:, None].expand(-1, 50))
    time_scales = g.scales4[:, 3].detach().reshape(-1, 50)
    torch.testing.assert_close(time_scales[:4], torch.full((4, 50), 0.25))
    spatial = g.params["log_scales4"][:, :3].detach().reshape(-1, 50, 3)
    assert (spatial == spatial[:1]).all()  # every copy of a point has the point's 3D size
    if still_copy:
        torch.testing.assert_close(time_scales[4], torch.full((50,), 2.0))
        still = slice(4 * 50, None)
        for t in (0.0, 1.0):  # alive over the whole sequence: above 96% of its weight at its own time
            sliced = slice_4d(g.means4[still], g.covars4[still], g.opacities[still], t, backend="reference")
            assert (sliced.temporal_weights > 0.96).all(), t


def test_zero_time_copies_is_refused() -> None:
    with pytest.raises(ValueError, match="time_copies"):
        init_gaussians_4d(_scene(), Init4DConfig(time_copies=0))
