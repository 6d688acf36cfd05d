"""The sparse pipeline's learned priors: the pure loss terms, tiny random-weight depth and Stable Diffusion models
saved to disk and loaded through the priors' own `from_pretrained` path (never downloaded), gradients from each
term to the Gaussians, the repair pass, the command-line flags and a short end-to-end run with both priors."""

import dataclasses
import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tyro

from pipelines import PIPELINES
from pipelines.sparse_view.config import PRESETS, with_steps
from pipelines.sparse_view.priors import DepthPriorConfig, DiffusionPriorConfig, LearnedPriors, PriorsConfig
from pipelines.sparse_view.priors.depth import DepthPrior
from pipelines.sparse_view.priors.diffusion import DiffusionPrior
from pipelines.sparse_view.priors.losses import (
    depth_ranking_loss,
    patch_pearson_loss,
    sample_pixel_pairs,
    score_distillation_loss,
)
from pipelines.sparse_view.pseudo_views import nearest_cameras
from splat4d.data import load_scene
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.config import DataConfig
from splat4d.data.dataset import ImageDataset
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.errors import UsageError
from splat4d.gaussians import Gaussians
from splat4d.initialization import InitConfig, init_gaussians
from splat4d.reconstruct import load_trained, reconstruct
from splat4d.render import RenderSettings, render

STEPS = 12
"""Steps of the end-to-end run (the diffusion prior starts at step 4 and repairs every 4 steps)."""


# --- tiny random-weight models, saved as real checkpoints -------------------------------------------------------


def _save_tiny_depth_model(path: Path) -> Path:
    """A 4-layer DPT (ViT backbone of width 32) and its image processor, as `from_pretrained` reads them."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        backbone_out_indices=(0, 1, 2, 3),
        neck_hidden_sizes=(16, 16, 32, 32),
        fusion_hidden_size=16,
        use_auxiliary_head=False,
        initializer_range=0.1,  # the default 0.02 gives a near-constant (1e-8) random output
    )
    DPTForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(path)
    return path


def _save_tiny_stable_diffusion(path: Path) -> Path:
    """A Stable Diffusion img2img pipeline in the diffusers layout: a two-level UNet and VAE of width 32-64, a
    two-layer CLIP text encoder with a character-level tokenizer, a DDIM scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    vocab = path.parent / f"{path.name}-vocab"
    vocab.mkdir()
    letters = list(string.ascii_lowercase)
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    (vocab / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (vocab / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(vocab / "vocab.json"),
        str(vocab / "merges.txt"),
        model_max_length=77,
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are so small that a second thread costs more than it does: on a busy 2-core machine each of
    their thousands of tiny ops waits for it (a UNet forward took 2.5 s on two threads, 40 ms on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "depth": _save_tiny_depth_model(root / "depth"),
        "diffusion": _save_tiny_stable_diffusion(root / "sd"),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    config = SampleConfig(n_views=12, width=64, height=48, n_points=500)
    return write_sample_scene(config, tmp_path_factory.mktemp("sample") / "photos", progress=False)


@pytest.fixture(scope="module")
def scene(photos, tmp_path_factory) -> SceneData:
    return load_scene(DataConfig(path=photos), tmp_path_factory.mktemp("work"))


def _field(scene: SceneData) -> Gaussians:
    """Gaussians at the sample's surface points, opaque enough to cover most of each view."""
    g = init_gaussians(scene, InitConfig(sh_degree=0, init_opacity=0.9, init_scale=2.0))
    return g.requires_grad_(True)


def _finite_nonzero(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


# --- the loss terms --------------------------------------------------------------------------------------------


def test_depth_ranking_is_zero_when_the_orders_agree_and_positive_otherwise() -> None:
    depth = torch.linspace(1.0, 2.0, 12).reshape(1, 3, 4, 1)
    agreeing = 1.0 / depth  # nearer pixels have larger disparity
    pairs = sample_pixel_pairs(3, 4, 64, generator=torch.Generator().manual_seed(0))
    assert depth_ranking_loss(depth, agreeing, pairs) == 0
    assert depth_ranking_loss(depth, 5.0 * agreeing + 3.0, pairs, margin=0.01) == 0  # any scale of the prior
    reversed_prior = depth.clone()
    assert depth_ranking_loss(depth, reversed_prior, pairs) > 0
    # pairs touching an invalid pixel do not count; with none left the loss is 0
    none_valid = torch.zeros_like(depth, dtype=torch.bool)
    assert depth_ranking_loss(depth, reversed_prior, pairs, valid=none_valid) == 0


def test_local_pixel_pairs_stay_within_the_radius() -> None:
    pairs = sample_pixel_pairs(20, 30, 500, radius=2, generator=torch.Generator().manual_seed(0))
    ya, xa, yb, xb = pairs[:, 0] // 30, pairs[:, 0] % 30, pairs[:, 1] // 30, pairs[:, 1] % 30
    assert (ya - yb).abs().max() <= 2 and (xa - xb).abs().max() <= 2 and pairs.max() < 600


def test_patch_correlation_is_invariant_to_affine_maps_of_the_prior() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 16, 24, 1, generator=generator)
    prior = torch.rand(2, 16, 24, 1, generator=generator)
    for patch in (0, 8):
        loss = patch_pearson_loss(pred, prior, patch)
        torch.testing.assert_close(patch_pearson_loss(pred, 3.0 * prior + 7.0, patch), loss)
        torch.testing.assert_close(patch_pearson_loss(1e-3 * pred, prior, patch), loss)  # and of the render
        assert 0.5 < loss < 1.5  # unrelated maps
        assert patch_pearson_loss(pred, 2.0 * pred - 1.0, patch) < 1e-4
        assert patch_pearson_loss(pred, -pred, patch) > 2.0 - 1e-4
    # only patches with enough valid pixels count: unrelated pixels left out leave a perfect match
    mixed = torch.where(torch.arange(24).view(1, 1, 24, 1) < 8, pred, prior)
    valid = (torch.arange(24) < 8).view(1, 1, 24, 1).expand(2, 16, 24, 1)
    assert patch_pearson_loss(mixed, pred, 8, valid) < 1e-4


def test_depth_terms_pass_finite_gradients_to_the_rendered_depth() -> None:
    generator = torch.Generator().manual_seed(0)
    depth = (1.0 + torch.rand(1, 16, 16, 1, generator=generator)).requires_grad_(True)
    prior = torch.rand(1, 16, 16, 1, generator=generator)
    pairs = sample_pixel_pairs(16, 16, 256, radius=3, generator=generator)
    loss = depth_ranking_loss(depth, prior, pairs) + patch_pearson_loss(1.0 / depth, prior, 4)
    loss.backward()
    assert _finite_nonzero(depth.grad)
    flat = torch.ones(1, 16, 16, 1, requires_grad=True)  # a flat render: finite, zero-free correlation
    patch_pearson_loss(flat, prior, 4).backward()
    assert torch.isfinite(flat.grad).all()


def test_score_distillation_loss_hands_its_gradient_to_the_latents() -> None:
    latents = torch.randn(1, 4, 3, 5, requires_grad=True)
    grad = torch.randn(1, 4, 3, 5)
    loss = score_distillation_loss(latents, grad)
    loss.backward()
    torch.testing.assert_close(latents.grad, grad / grad.numel())
    torch.testing.assert_close(loss, 0.5 * (grad**2).mean())


# --- the models, through their loading path --------------------------------------------------------------------


def test_depth_prior_gives_each_training_photo_a_map_at_the_training_resolution(models, scene) -> None:
    prior = DepthPrior(DepthPriorConfig(model=str(models["depth"])), half_precision=False)
    views = ImageDataset(scene, scene.train_indices[:3], downscale=1)
    prior.bind_views(views)
    maps = [prior.disparity(views[i]) for i in range(len(views))]
    assert all(m.shape == (1, 48, 64, 1) for m in maps)
    assert all(m.min() == 0 and m.max() == 1 and m.std() > 0 for m in maps)  # relative, scaled per photo
    assert prior.estimator._model is None  # freed once every photo has its map
    coarse = ImageDataset(scene, scene.train_indices[:3], downscale=2)
    prior.bind_views(coarse)  # the trainer's coarse-to-fine switch
    assert prior.disparity(coarse[0]).shape == (1, 24, 32, 1)
    assert {key[1:] for key in prior._disparities} == {(24, 32)}


def test_depth_terms_reach_the_gaussians(models, scene) -> None:
    cfg = DepthPriorConfig(model=str(models["depth"]), patch=8)
    prior = DepthPrior(cfg, half_precision=False)
    batch = ImageDataset(scene, scene.train_indices[:1])[0]
    g = _field(scene)
    out = render(g, batch.cameras)
    parts: dict[str, torch.Tensor] = {}
    loss = prior.loss(out, batch, parts)
    assert set(parts) == {"depth_rank", "depth_corr"}
    assert all(torch.isfinite(v) and v > 0 for v in parts.values())
    loss.backward()
    assert _finite_nonzero(g.params["means"].grad)


def _priors(models, **diffusion) -> LearnedPriors:
    cfg = DiffusionPriorConfig(
        model=str(models["diffusion"]), resolution=32, start=0, repair_steps=4, **diffusion
    )
    return LearnedPriors(PriorsConfig(diffusion=cfg, half_precision=False))


def test_score_distillation_reaches_the_gaussians(models, scene) -> None:
    priors = _priors(models, sds_weight=1.0, repair_every=0)
    views = ImageDataset(scene, scene.train_indices[:3])
    priors.bind_views(views, nearest_cameras(views.cameras, 2))
    g = _field(scene)
    loss, logs = priors.novel_view_loss(g, RenderSettings(), step=0)
    assert set(logs) == {"sds"} and logs["sds"] > 0
    assert priors.diffusion is not None and priors.diffusion.model_size(48, 64) == (24, 32)
    loss.backward()
    for name in ("means", "sh0", "opacity_logits"):
        assert _finite_nonzero(g.params[name].grad), name


def test_repair_pass_keeps_refined_pseudo_views_and_trains_on_them(models, scene) -> None:
    priors = _priors(models, sds_weight=0.0, repair_every=3, repair_views=2, repair_strength=0.5)
    views = ImageDataset(scene, scene.train_indices[:3])
    priors.bind_views(views, nearest_cameras(views.cameras, 2))
    g = _field(scene)
    loss, logs = priors.novel_view_loss(g, RenderSettings(), step=0)
    assert set(logs) == {"repair"} and logs["repair"] > 0
    stored = priors.repaired.views
    assert len(stored) == 2
    for view in stored:
        assert view.rgb.shape == (1, 48, 64, 3) and (view.camera.width, view.camera.height) == (64, 48)
        assert view.rgb.min() >= 0 and view.rgb.max() <= 1 and not view.rgb.requires_grad
        before = render(g, view.camera).rgb.detach()
        assert (view.rgb - before).abs().mean() > 1e-3  # refined, not the render itself
    loss.backward()
    assert _finite_nonzero(g.params["sh0"].grad)
    priors.novel_view_loss(g, RenderSettings(), step=1)
    assert priors.repaired.views is stored  # kept between passes
    priors.novel_view_loss(g, RenderSettings(), step=3)
    assert priors.repaired.views is not stored and len(priors.repaired) == 2
    priors.bind_views(ImageDataset(scene, scene.train_indices[:3], downscale=2), [[1], [0], [0]])
    assert len(priors.repaired) == 0  # made at the old resolution


# --- optional dependencies and the command line ----------------------------------------------------------------


def test_importing_the_pipelines_loads_neither_transformers_nor_diffusers() -> None:
    code = "import sys, pipelines, splat4d.cli; print([m for m in ('transformers', 'diffusers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_prior_without_the_gen_extra_fails_with_the_install_command(monkeypatch, scene) -> None:
    batch = ImageDataset(scene, scene.train_indices[:1])[0]
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    prior = DepthPrior(DepthPriorConfig(model="depth-anything/Depth-Anything-V2-Small-hf"))
    with pytest.raises(ImportError, match=r"^the sparse pipeline's learned priors need transformers: "):
        prior.disparity(batch)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match=r"pip install 'splat4d\[gen\]'$"):
        DiffusionPrior(DiffusionPriorConfig(model="some/model")).sds_loss(batch.rgb)


def test_priors_flags_reach_the_sparse_config_and_are_refused_elsewhere(
    tmp_path, monkeypatch, capsys
) -> None:
    import splat4d.reconstruct
    from splat4d.cli import Reconstruct

    seen = {}

    def fake(spec, name, preset, cfg, *args, **kwargs):
        seen["cfg"] = cfg
        raise DatasetError("stop here")

    monkeypatch.setattr(splat4d.reconstruct, "reconstruct", fake)
    flags = ["--priors.depth.model", "depth-anything/Depth-Anything-V2-Small-hf", "--priors.depth.patch", "8"]
    flags += ["--priors.diffusion.model", str(tmp_path / "sd")]
    flags += ["--priors.diffusion.sds-timesteps", "0.1", "0.3"]
    command = tyro.cli(Reconstruct, args=[str(tmp_path), "--pipeline", "sparse", "--preset", "fast", *flags])
    with pytest.raises(DatasetError, match="stop here"):
        command.main()
    priors = seen["cfg"].priors
    assert priors.depth.model == "depth-anything/Depth-Anything-V2-Small-hf" and priors.depth.patch == 8
    assert priors.diffusion.model == str(tmp_path / "sd") and priors.diffusion.sds_timesteps == (0.1, 0.3)
    with pytest.raises(UsageError, match="--priors: applies to the sparse pipeline only"):
        tyro.cli(Reconstruct, args=[str(tmp_path), *flags[:2]]).main()  # the static pipeline
    with pytest.raises(SystemExit):
        tyro.cli(Reconstruct, args=["--help"])
    help_text = capsys.readouterr().out
    for flag in ("--priors.depth.model", "--priors.depth.corr-weight", "--priors.diffusion.repair-every"):
        assert flag in help_text


# --- end to end ------------------------------------------------------------------------------------------------


def test_a_short_sparse_run_with_both_priors_logs_their_terms(models, photos, tmp_path) -> None:
    cfg = with_steps(PRESETS["fast"], STEPS)
    priors = PriorsConfig(
        depth=DepthPriorConfig(model=str(models["depth"]), patch=8),
        diffusion=DiffusionPriorConfig(
            model=str(models["diffusion"]),
            resolution=32,
            start=4,
            repair_every=4,
            repair_views=2,
            repair_steps=4,
        ),
    )
    cfg = dataclasses.replace(
        cfg,
        data=DataConfig(path=photos),
        views=3,
        priors=priors,
        trainer=dataclasses.replace(cfg.trainer, progress=False, log_every=1),
    )
    out = tmp_path / "scene"
    result = reconstruct(PIPELINES["sparse"], "sparse", "fast", cfg, out, torch.device("cpu"))
    assert result.metrics["steps"] == STEPS
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all({"depth_rank", "depth_corr"} <= set(line) for line in logs)
    late = [line for line in logs if line["step"] > 4]
    assert late and all({"sds", "repair"} <= set(line) for line in late)
    assert not any("sds" in line for line in logs if line["step"] <= 4)  # logged after step 4: start = 4
    assert all(torch.isfinite(torch.tensor(line["loss"])) for line in logs)
    # the scene folder reads back with its priors configured and nothing loaded
    trained = load_trained(out, PIPELINES, torch.device("cpu"))
    assert trained.cfg.priors == priors
    assert trained.pipeline.priors.diffusion is not None and trained.pipeline.priors.diffusion._pipe is None
