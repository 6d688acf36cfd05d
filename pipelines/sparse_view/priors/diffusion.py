"""The diffusion prior: a Stable Diffusion model (diffusers) that scores renders of pseudo views (score
distillation) and refines them (img2img, the repair pass), loaded on first use onto the renders' device.

Only the VAE encoder is differentiated: score distillation runs the UNet without gradient and hands its
residual to the latents through `score_distillation_loss`, and the repair pass runs entirely without gradient.
"""

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from pipelines.sparse_view.priors._loading import import_extra, local_files_only, model_dtype
from pipelines.sparse_view.priors.config import DiffusionPriorConfig
from pipelines.sparse_view.priors.losses import score_distillation_loss


class DiffusionPrior:
    """A `StableDiffusionImg2ImgPipeline` loaded by `from_pretrained(cfg.model)` (local files only for a folder
    or when HF_HUB_OFFLINE is set), with a DDIM scheduler and the prompt encoded once.

    Args:
        cfg: model, prompt, guidance, resolution and the two terms' settings.
        half_precision: float16 on a GPU.
    """

    def __init__(self, cfg: DiffusionPriorConfig, half_precision: bool = True) -> None:
        assert cfg.model is not None
        self.cfg = cfg
        self.half_precision = half_precision
        self._pipe: Any = None
        self._cond: Tensor | None = None
        self._uncond: Tensor | None = None

    @property
    def guided(self) -> bool:
        return self.cfg.guidance_scale > 1.0

    def _load(self, device: torch.device) -> Any:
        if self._pipe is not None and self._pipe.unet.device == device:
            return self._pipe
        diffusers = import_extra("diffusers")
        import_extra("transformers")  # the text encoder and tokenizer
        pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(
            self.cfg.model,
            local_files_only=local_files_only(self.cfg.model),
            dtype=model_dtype(device, self.half_precision),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        # DDIM: deterministic, and good in the few steps the repair pass runs.
        pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.eval().requires_grad_(False)
        with torch.no_grad():
            self._cond, self._uncond = pipe.encode_prompt(
                self.cfg.prompt, device, 1, self.guided, self.cfg.negative_prompt or None
            )
        pipe.text_encoder = None  # the prompt is encoded; free its memory
        self._pipe = pipe
        return pipe

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The size (h, w) renders of height × width are resized to: the longer side near `cfg.resolution`, both
        sides multiples of what the VAE and UNet downsample by (read from the loaded model)."""
        pipe = self._pipe
        multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        scale = self.cfg.resolution / max(height, width)
        h, w = (max(multiple, round(n * scale / multiple) * multiple) for n in (height, width))
        return h, w

    def _to_model(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B 3 h w"]:
        """Renders as the model's input images: channels first, resized (differentiably), in [0, 1]."""
        h, w = self.model_size(rgb.shape[1], rgb.shape[2])
        x = rgb.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(0.0, 1.0).to(self._pipe.unet.dtype)

    def _predict_noise(self, noisy: Tensor, t: Tensor) -> Tensor:
        """ε̂(z_t; y, t) with classifier-free guidance when `guided` (v-prediction models converted to ε)."""
        pipe = self._pipe
        assert self._cond is not None
        if self.guided:
            assert self._uncond is not None
            embeds = torch.cat([self._uncond, self._cond]).expand(2 * len(noisy), -1, -1)
            out = pipe.unet(torch.cat([noisy, noisy]), t, encoder_hidden_states=embeds).sample
            uncond, cond = out.chunk(2)
            out = uncond + self.cfg.guidance_scale * (cond - uncond)
        else:
            out = pipe.unet(noisy, t, encoder_hidden_states=self._cond.expand(len(noisy), -1, -1)).sample
        if pipe.scheduler.config.prediction_type == "v_prediction":
            # v = √ᾱ ε − √(1 − ᾱ) x₀ and z_t = √ᾱ x₀ + √(1 − ᾱ) ε give ε = √ᾱ v + √(1 − ᾱ) z_t.
            a = pipe.scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1).to(noisy.dtype)
            out = a.sqrt() * out + (1 - a).sqrt() * noisy
        return out

    def sds_loss(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, ""]:
        """Score distillation of renders (DreamFusion): z = E(x) with gradient, then at a random t in
        `cfg.sds_timesteps`, without gradient, g = w(t) · (ε̂(z_t) − ε) with w(t) = 1 − ᾱ_t; the loss hands g to
        z (`score_distillation_loss`), so the renders are pulled towards images the model finds likely."""
        pipe = self._load(rgb.device)
        x = self._to_model(rgb) * 2.0 - 1.0
        latents = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        T = pipe.scheduler.config.num_train_timesteps
        low, high = (round(f * T) for f in self.cfg.sds_timesteps)
        low, high = min(max(low, 1), T - 1), min(max(high, low + 1), T)
        t = torch.randint(low, high, (1,), device=rgb.device)
        with torch.no_grad():
            noise = torch.randn_like(latents)
            noisy = pipe.scheduler.add_noise(latents.detach(), noise, t)
            eps = self._predict_noise(noisy, t)
            w = 1.0 - pipe.scheduler.alphas_cumprod.to(rgb.device)[t].to(latents.dtype)
            grad = torch.nan_to_num(w * (eps - noise))
        return score_distillation_loss(latents, grad)

    @torch.no_grad()
    def repair(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 3"]:
        """Refined renders: img2img from each render at `cfg.repair_strength` over `cfg.repair_steps` DDIM steps,
        resized back to the renders' size."""
        pipe = self._load(rgb.device)
        B, H, W, _ = rgb.shape
        assert self._cond is not None
        images = pipe(
            image=self._to_model(rgb),
            prompt_embeds=self._cond.expand(B, -1, -1),
            negative_prompt_embeds=None if self._uncond is None else self._uncond.expand(B, -1, -1),
            strength=self.cfg.repair_strength,
            num_inference_steps=self.cfg.repair_steps,
            guidance_scale=self.cfg.guidance_scale,
            output_type="pt",
        ).images
        back = F.interpolate(
            images.float(), size=(H, W), mode="bilinear", align_corners=False, antialias=True
        )
        return back.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
