"""The depth prior: a monocular depth model's relative disparity of every training photo, computed once per photo
and training resolution, against the rendered depth (ranking and local correlation, `priors.losses`)."""

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from pipelines.sparse_view.priors._loading import import_extra, local_files_only, model_dtype
from pipelines.sparse_view.priors.config import DepthPriorConfig
from pipelines.sparse_view.priors.losses import depth_ranking_loss, patch_pearson_loss, sample_pixel_pairs
from splat4d.data.dataset import Batch, ImageDataset
from splat4d.render import RenderOutput

MIN_ALPHA = 0.5
"""Pixels the render covers less than this take no part in the depth terms: their depth is the depth of little
(`RenderOutput.depth` is normalised by alpha)."""
MIN_DEPTH = 1e-3
"""Rendered depth is clamped to at least this (scene units) before it is inverted."""


class MonocularDepth:
    """A transformers depth-estimation model (`AutoModelForDepthEstimation`) and its image processor, loaded by
    `from_pretrained(name_or_path)` on the first call, onto the device of the images it is given.

    Args:
        name_or_path: a Hub name or a local folder (loaded from local files only, as is everything when
            HF_HUB_OFFLINE is set).
        output: what the model predicts, "disparity" (relative inverse depth) or "depth" (inverted here).
        half_precision: float16 on a GPU.
    """

    def __init__(
        self, name_or_path: str | Path, output: str = "disparity", half_precision: bool = True
    ) -> None:
        self.name_or_path = str(name_or_path)
        self.output = output
        self.half_precision = half_precision
        self._model: Any = None
        self._processor: Any = None

    def _load(self, device: torch.device) -> None:
        transformers = import_extra("transformers")
        local = local_files_only(self.name_or_path)
        self._processor = transformers.AutoImageProcessor.from_pretrained(
            self.name_or_path, local_files_only=local
        )
        model = transformers.AutoModelForDepthEstimation.from_pretrained(
            self.name_or_path, local_files_only=local, dtype=model_dtype(device, self.half_precision)
        )
        self._model = model.to(device).eval().requires_grad_(False)

    def unload(self) -> None:
        """Free the model (it is loaded again by the next call)."""
        self._model = self._processor = None

    @torch.no_grad()
    def __call__(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 1"]:
        """Relative disparity (larger is nearer) of each image, resized to the images' size and scaled to [0, 1]
        per image."""
        if self._model is None or self._model.device != rgb.device:
            self._load(rgb.device)
        _, H, W, _ = rgb.shape
        images = list(rgb.detach().float().permute(0, 3, 1, 2).cpu())
        inputs = self._processor(images=images, return_tensors="pt", do_rescale=False)
        pixels = inputs["pixel_values"].to(rgb.device, self._model.dtype)
        predicted = self._model(pixel_values=pixels).predicted_depth.float()[:, None]  # [B, 1, h, w]
        prediction = F.interpolate(predicted, size=(H, W), mode="bilinear", align_corners=False)
        if self.output == "depth":
            prediction = 1.0 / prediction.clamp_min(1e-6)
        low = prediction.amin(dim=(1, 2, 3), keepdim=True)
        high = prediction.amax(dim=(1, 2, 3), keepdim=True)
        return ((prediction - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1)


class DepthPrior:
    """The depth terms of one training run: disparities of the training photos from `MonocularDepth`, cached by
    (photo, resolution), compared with the depth of each training render."""

    def __init__(self, cfg: DepthPriorConfig, half_precision: bool = True) -> None:
        assert cfg.model is not None
        self.cfg = cfg
        self.estimator = MonocularDepth(cfg.model, cfg.output, half_precision)
        self._disparities: dict[tuple[int, int, int], Tensor] = {}

    def bind_views(self, views: ImageDataset) -> None:
        """Estimate the depth of every training photo at the views' resolution (again when it changes), then free
        the model."""
        current = {(i, h, w) for i, (w, h) in zip(views.indices, views.cameras.sizes, strict=True)}
        self._disparities = {k: v for k, v in self._disparities.items() if k in current}
        for i in range(len(views)):
            self.disparity(views[i])
        self.estimator.unload()

    def disparity(self, batch: Batch) -> Float[Tensor, "1 H W 1"]:
        """The prior's disparity of the batch's photo, at the batch's resolution."""
        _, H, W, _ = batch.rgb.shape
        key = (batch.index, H, W)
        if key not in self._disparities:
            self._disparities[key] = self.estimator(batch.rgb)
        return self._disparities[key]

    def loss(self, out: RenderOutput, batch: Batch, parts: dict[str, Tensor]) -> Float[Tensor, ""]:
        """Weighted ranking and correlation terms of one render of the batch's camera; their unweighted values go
        into `parts` (depth_rank, depth_corr)."""
        cfg = self.cfg
        prior = self.disparity(batch)
        valid = (out.alpha.detach() > MIN_ALPHA) & (out.depth.detach() > 0)
        if batch.mask is not None:
            valid = valid & (batch.mask > 0.5)
        loss = out.depth.new_zeros(())
        if cfg.rank_weight > 0:
            _, H, W, _ = out.depth.shape
            pairs = sample_pixel_pairs(H, W, cfg.rank_pairs, cfg.rank_radius, device=out.depth.device)
            parts["depth_rank"] = depth_ranking_loss(out.depth, prior, pairs, cfg.rank_margin, valid)
            loss = loss + cfg.rank_weight * parts["depth_rank"]
        if cfg.corr_weight > 0:
            disparity = 1.0 / out.depth.clamp_min(MIN_DEPTH)
            parts["depth_corr"] = patch_pearson_loss(disparity, prior, cfg.patch, valid)
            loss = loss + cfg.corr_weight * parts["depth_corr"]
        return loss
