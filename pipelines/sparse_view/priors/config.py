"""Configuration of the learned priors (all off by default: the sparse pipeline then uses weight-free regularisers
only). The models are named here and loaded on first use, never at import or when a scene folder is read back."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DepthPriorConfig:
    """A monocular depth model's relative depth of each training photo, compared with the rendered depth: depth
    ranking (SparseNeRF, Wang et al. 2023) and local depth correlation (DNGaussian, Li et al. 2024; FSGS)."""

    model: str | None = None
    """transformers depth-estimation model: a Hub name such as depth-anything/Depth-Anything-V2-Small-hf or
    Intel/dpt-hybrid-midas, or a local folder holding one (config, weights and preprocessor_config.json); None:
    no depth prior."""
    output: Literal["disparity", "depth"] = "disparity"
    """What the model predicts: 'disparity' (relative inverse depth: Depth Anything, DPT/MiDaS) or 'depth'
    (metric models such as ZoeDepth or Depth Anything's metric checkpoints; inverted here)."""
    rank_weight: float = 0.1
    """Weight of the depth-ranking hinge: where the prior says pixel a is nearer than pixel b, the rendered depth
    must say so too; 0: off."""
    rank_pairs: int = 4096
    """Pixel pairs drawn per training render for the ranking term."""
    rank_radius: int = 8
    """The second pixel of a pair lies within this many pixels of the first (monocular depth orders nearby pixels
    more reliably than distant ones); 0: anywhere in the image."""
    rank_margin: float = 1e-4
    """Hinge margin of the ranking term, in scene depth units."""
    corr_weight: float = 0.05
    """Weight of 1 − Pearson correlation between rendered and prior disparity, per patch (scale and shift
    invariant, so the prior's unknown scale does not matter); 0: off."""
    patch: int = 16
    """Side of the square patches of the correlation term, in pixels at the training resolution; 0: one patch,
    the whole image (FSGS's global correlation)."""
    start: int = 0
    """Add the depth terms from this step."""


@dataclass
class DiffusionPriorConfig:
    """A Stable Diffusion model (diffusers layout) as a prior on novel views: score distillation on renders of
    pseudo views (DreamFusion's SDS, Poole et al. 2022) and a repair pass whose img2img-refined renders of pseudo
    views become pseudo ground truth (GaussianObject, Yang et al. 2024; LM-Gaussian, Yu et al. 2024)."""

    model: str | None = None
    """diffusers Stable Diffusion 1.x / 2.x model: a Hub name such as stabilityai/stable-diffusion-2-1-base, or a
    local folder in the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/);
    None: no diffusion prior."""
    prompt: str = "a photo"
    """Text the model is conditioned on; describe the scene for a stronger prior."""
    negative_prompt: str = ""
    """Text guided away from (the unconditional branch of classifier-free guidance)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale of both terms; 1 or less: no guidance (one UNet pass, the prompt alone)."""
    resolution: int = 512
    """Longer side of the images the model sees (renders are resized to it, and repaired images back): 512 for
    SD 1.x and 2.x-base, 768 for SD 2.x."""
    start: int = 500
    """Add the diffusion terms from this step (once the scene has a coarse shape)."""
    sds_weight: float = 0.1
    """Weight of score distillation on one pseudo view per step: its loss is 0.5 · mean((z − sg(z − g))²) over
    the render's latents z, whose gradient is g = w(t) · (ε̂ − ε) over their number; 0: off."""
    sds_timesteps: tuple[float, float] = (0.02, 0.5)
    """Range of the noise level t / T drawn for score distillation (low: the render is refined, not reinvented)."""
    repair_every: int = 500
    """Refine renders of new pseudo views every this many steps (and at the start step); 0: no repair pass."""
    repair_views: int = 4
    """Pseudo views each repair pass renders, refines and keeps as pseudo ground truth (replacing the last)."""
    repair_strength: float = 0.5
    """img2img strength of the repair pass: the fraction of the denoising schedule run from the noised render."""
    repair_steps: int = 20
    """Denoising steps of the full schedule (img2img runs strength × steps of them)."""
    repair_weight: float = 0.5
    """Weight of the photometric term between a render of a stored pseudo view and its repaired image."""
    repair_ssim_lambda: float = 0.2
    """λ of that term, (1 − λ)·L1 + λ·(1 − SSIM)."""


@dataclass
class PriorsConfig:
    """Optional learned priors of the sparse pipeline (`pip install 'splat4d[gen]'`): a monocular depth model on
    the training photos, a diffusion model on novel views. Off unless a model is named."""

    depth: DepthPriorConfig = field(default_factory=DepthPriorConfig)
    diffusion: DiffusionPriorConfig = field(default_factory=DiffusionPriorConfig)
    half_precision: bool = True
    """Run the models in float16 on a GPU (always float32 on the CPU)."""

    @property
    def enabled(self) -> bool:
        return self.depth.model is not None or self.diffusion.model is not None
