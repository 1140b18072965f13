"""The training stages of Dysen-VDM as ``Task``s of the one loop (dysen_spec.md §6).

* Stage 1, ``VAETask``: the 3D KL video autoencoder, loss = L1(x̂, x) [+ perceptual_weight · LPIPS(x̂, x)]
  + kl_weight · KL(q(z|x) ‖ N(0, I)) [+ λ · PatchGAN generator term from ``disc_start``], as LVDM's
  ``LPIPSWithDiscriminator`` (``dysen.train.losses``); the discriminator is the loop's second module group.
* Stage 2, ``VDMTask``: the 3D-UNet and the RGTrm on latents of the frozen VAE, conditioned on the frozen
  text encoder's tokens and on the RGTrm's tokens of the clip's **gold** DSG, with text and DSG dropped
  independently for classifier-free guidance; loss = L_simple (``dysen.diffusion.diffusion_loss``).
  In-domain fine-tuning is the same task started from a trained model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dysen.config import DysenVDMConfig
from dysen.data.video import model_to_frames
from dysen.diffusion.guidance import stack_passes
from dysen.diffusion.loss import condition_dropout, diffusion_loss
from dysen.diffusion.sampler import SamplingSettings, denoise
from dysen.diffusion.sampling import step_kwargs
from dysen.encoders.text import TextEncoder
from dysen.errors import DysenError
from dysen.models.graph_batch import GraphBatch
from dysen.models.lpips import LPIPS
from dysen.models.patchgan import NLayerDiscriminator
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import DiagonalGaussian, KLVideoAutoencoder
from dysen.train.loop import StepOutput
from dysen.train.losses import adaptive_weight, generator_loss, hinge_d_loss, video_frames
from dysen.train.vae_loss import VAELossConfig


class StageError(DysenError):
    """A stage cannot train on what it was given (missing gold DSGs, an unsupported loss term)."""


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


class VAETask:
    """Stage 1: reconstruct clips through a posterior sample of the 3D KL autoencoder, with the loss ``loss``.

    With ``lpips`` (and ``perceptual_weight`` > 0) the reconstruction term adds LPIPS per frame; with a
    ``discriminator`` (trained by the loop's second optimizer, ``aux_modules``) the PatchGAN terms join from
    step ``disc_start`` on (``dysen.train.losses``). The discriminator sees the reconstructions of the same
    forward pass, detached, so both networks step together on one backward (Lightning alternated two passes).
    """

    def __init__(
        self,
        vae: KLVideoAutoencoder,
        loss: VAELossConfig | None = None,
        *,
        lpips: LPIPS | None = None,
        discriminator: NLayerDiscriminator | None = None,
    ) -> None:
        loss = loss if loss is not None else VAELossConfig()  # None: the defaults, declared once there
        if loss.recon_loss not in ("l1", "l2"):
            raise StageError(f"recon_loss must be l1 or l2, got {loss.recon_loss!r}")
        if loss.perceptual_weight < 0 or loss.disc_weight < 0 or loss.disc_start < 0:
            raise StageError("perceptual_weight, disc_weight and disc_start must be >= 0")
        if loss.perceptual_weight and lpips is None:
            raise StageError(
                "a perceptual weight needs the LPIPS network: pass --lpips HEADS --lpips-vgg VGG16 (local files)"
            )
        frames_per_clip = loss.frames_per_clip
        if frames_per_clip is not None and (frames_per_clip < 1 or vae.config.temporal_kernel != 1):
            raise StageError(
                "frames_per_clip needs a frame-wise autoencoder (vae.kl3d.temporal_kernel 1) and a count >= 1, "
                f"got {frames_per_clip} with temporal_kernel {vae.config.temporal_kernel}"
            )
        self.loss, self.lpips, self.discriminator = loss, lpips, discriminator
        self.recon_loss, self.perceptual_weight = loss.recon_loss, loss.perceptual_weight
        self.kl_weight, self.disc_start, self.disc_weight = loss.kl_weight, loss.disc_start, loss.disc_weight
        self.frames_per_clip = frames_per_clip
        self.vae = vae.train()
        self.current_step = 0

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def aux_modules(self) -> dict[str, nn.Module]:
        """The discriminator, stepped by its own optimizer on ``StepOutput.aux_loss`` (none without one)."""
        return {"disc": self.discriminator} if self.discriminator is not None else {}

    def begin_step(self, step: int) -> None:
        """The loop's optimizer step about to run (0-based): the adversarial terms start at ``disc_start``."""
        self.current_step = step

    def to(self, device: torch.device) -> VAETask:
        self.vae.to(device, memory_format=torch.channels_last_3d)  # ~1.2x faster Conv3d on CPU (oneDNN)
        for module in (self.lpips, self.discriminator):
            if module is not None:
                module.to(device)
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        video = self._frames(_video(batch, generator.device), generator)  # [B, 3, T', H, W]
        recon, posterior = self.vae(video, generator)  # [B, 3, T, H, W], q(z|x) [B, c, t, h, w]
        l1 = (recon - video).abs().mean()
        # L1 (LDM) seeks the per-pixel median: on sparse scenes (small shapes on a plain background, as Dynamic
        # Shapes) without LPIPS it settles on the background; L2 seeks the mean, so small objects keep a gradient.
        recon_term = l1 if self.recon_loss == "l1" else (recon - video).square().mean()
        logs = {"l1": l1.detach()}
        if self.perceptual_weight:
            perceptual = self.lpips(video_frames(recon), video_frames(video)).mean()  # type: ignore[misc]
            recon_term = recon_term + self.perceptual_weight * perceptual
            logs["lpips"] = perceptual.detach()
        kl = posterior.kl().mean()  # summed over latent elements, averaged over the batch (LDM)
        logs.update(kl=kl.detach(), recon=recon_term.detach())
        loss = recon_term + self.kl_weight * kl
        if self.discriminator is None:
            return StepOutput(loss, logs)
        if self.current_step < self.disc_start:  # no adversarial terms yet; every parameter still takes part (DDP)
            return StepOutput(loss + 0.0 * sum(p.sum() for p in self.discriminator.parameters()), logs)
        return self._adversarial(video, recon, recon_term, loss, logs)

    def _frames(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The clips, or ``frames_per_clip`` random frames of each: a frame-wise autoencoder sees frames one by
        one, so fewer frames from more clips buy more variety per step (neighbouring frames are near copies)."""
        if self.frames_per_clip is not None and self.frames_per_clip < video.shape[2]:
            b, c, t, h, w = video.shape
            order = torch.rand((b, t), generator=generator, device=video.device).argsort(dim=1)  # [B, T]
            index = order[:, : self.frames_per_clip].sort(dim=1).values  # [B, T'] in time order
            video = video.gather(2, index[:, None, :, None, None].expand(b, c, -1, h, w))  # [B, 3, T', H, W]
        return video.contiguous(memory_format=torch.channels_last_3d)  # ~1.2x faster Conv3d on CPU (oneDNN)

    def _adversarial(
        self,
        video: torch.Tensor,
        recon: torch.Tensor,
        recon_term: torch.Tensor,
        loss: torch.Tensor,
        logs: dict[str, torch.Tensor],
    ) -> StepOutput:
        """The generator term (adaptive weight at the decoder's last conv) and the discriminator's hinge loss."""
        disc = self.discriminator
        assert disc is not None
        real, fake = video_frames(video), video_frames(recon)  # [B·T, 3, H, W]
        disc.requires_grad_(False)  # the generator term trains the decoder only
        try:
            g_loss = generator_loss(disc(fake))
        finally:
            disc.requires_grad_(True)
        weight = adaptive_weight(recon_term, g_loss, self.vae.decoder[-1].weight, self.disc_weight)
        d_loss = hinge_d_loss(disc(real.detach()), disc(fake.detach()))
        logs.update(g_loss=g_loss.detach(), adaptive_weight=weight, disc_loss=d_loss.detach())
        return StepOutput(loss + weight * g_loss, logs, d_loss)

    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Each clip beside its reconstruction through the posterior mean: ``clip-<i>``, uint8 [T, H, 2W, 3]."""
        video = _video(batch, next(self.vae.parameters()).device)  # [B, 3, T, H, W]
        recon = self.vae.decode(self.vae.encode(video))  # [B, 3, T, H, W]
        pairs = torch.cat([video, recon], dim=-1)  # [B, 3, T, H, 2W]: input | reconstruction
        return {f"clip-{i}": model_to_frames(pair) for i, pair in enumerate(pairs)}


class VDMTask:
    """Stage 2 (and fine-tuning): denoise VAE latents under text and gold-DSG conditions."""

    def __init__(
        self,
        unet: UNet3D,
        rgtrm: RGTrm,
        vae: nn.Module,
        text_encoder: TextEncoder,
        config: DysenVDMConfig,
        sample_steps: int | None = None,
        sample_guidance: float | None = None,
    ) -> None:
        self.unet, self.rgtrm = unet.train(), rgtrm.train()
        self.vae, self.text_encoder, self.config = _freeze(vae), text_encoder, config
        self.sampling = SamplingSettings.resolve(config.diffusion, steps=sample_steps, guidance=sample_guidance)
        """How ``sample`` renders (None: the model's default; the sampler, η and s_dsg are the model's)."""

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "rgtrm": self.rgtrm}

    def to(self, device: torch.device) -> VDMTask:
        for module in (self.unet, self.rgtrm, self.vae):
            module.to(device)
        self.text_encoder.to(device)  # it encodes every batch's captions: on the GPU when training there
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        device = generator.device
        x0 = self._latents(batch, generator)  # [B, c, t, h, w]
        graphs = batch.get("graphs") or _gold_graphs(batch["dsg"], x0.shape[2])  # GraphCollate's, if any
        drop_text, drop_dsg = condition_dropout(len(x0), self.config.diffusion, generator, device)  # [B], [B]
        drops = drop_text.tolist()
        captions = ["" if drop else caption for caption, drop in zip(batch["caption"], drops, strict=True)]
        with torch.no_grad():
            tokens, mask = self.text_encoder(captions)  # [B, L, Dt], [B, L]
        graphs = graphs.with_label_embeddings(self.text_encoder)
        text = (tokens.to(device), mask.to(device))
        graph_cond = self.rgtrm(graphs.to(device)).dropped(drop_dsg)  # null DSG: every key and placed object masked
        loss = diffusion_loss(self._denoiser, x0, (text, graph_cond), self.config.diffusion, generator)
        return StepOutput(loss, {})

    @torch.no_grad()
    def _latents(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """Normalised x_0 [B, c, t, h, w]: z ~ q(z | x), or its mean (``diffusion.train_latents``), encoded now or
        read from cached moments (``train.latents``); a draw makes the same generator call as
        ``KLVideoAutoencoder.encode``, so both paths give the same x_0."""
        draw = self.config.diffusion.train_latents == "sample"
        if "latent_mean" not in batch:
            return self.vae.encode(_video(batch, generator.device), generator if draw else None)
        device = generator.device
        posterior = DiagonalGaussian(batch["latent_mean"].to(device), batch["latent_logvar"].to(device))
        z = posterior.sample(generator) if draw else posterior.mean  # [B, c, t, h, w]
        return self.vae.normalise(z)

    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A video per clip of ``batch`` from its caption and gold DSG with the live (not EMA) weights:
        ``self.sampling``, noise seeded by the clip's position (the same noise at every sampling step of the run);
        ``clip-<i>``, uint8 [T, H, W, 3]."""
        shape = self.vae.latent_shape(self.config.video.num_frames, self.config.video.height, self.config.video.width)
        graphs = batch.get("graphs") or _gold_graphs(batch["dsg"], shape[1])  # [B, ...]
        return {
            f"clip-{i}": self._generate(caption, graphs.select(i), seed=i)
            for i, caption in enumerate(batch["caption"])
        }

    def _generate(self, caption: str, graphs: GraphBatch, seed: int) -> torch.Tensor:
        """The pipeline's sampling (``dysen.diffusion.sampler.denoise``) under no_grad (not inference mode: the
        text encoder caches label vectors that training later uses in autograd), on the training device."""
        device = next(self.unet.parameters()).device
        video = self.config.video
        shape = self.vae.latent_shape(video.num_frames, video.height, video.width)  # (c, t, h, w)
        tokens, mask = self.text_encoder([caption, ""])  # [2, L, Dt], [2, L]
        tokens, mask = tokens.to(device), mask.to(device)
        graphs = graphs.with_label_embeddings(self.text_encoder).to(device)
        passes = self.sampling.passes
        conditions = stack_passes(passes, (tokens[:1], mask[:1]), (tokens[1:], mask[1:]), self.rgtrm(graphs))
        scheduler = self.sampling.scheduler(self.config.diffusion)
        generator = torch.Generator("cpu").manual_seed(seed)
        extra = step_kwargs(scheduler, self.sampling.eta, generator)
        noise = torch.randn((1, *shape), generator=generator).to(device)  # [1, c, t, h, w]
        latents = denoise(self._denoiser, scheduler, noise, conditions, passes, step_kwargs=extra)
        return model_to_frames(self.vae.decode(latents)[0])  # uint8 [T, H, W, 3]

    def _denoiser(self, z_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The UNet under ``cond`` = (text, graph condition): the model function of the loss and of ``denoise``."""
        return self.unet(z_t, t, text=cond[0], graph_cond=cond[1])  # [B, c, t, h, w]


class GraphCollate:
    """``collate``, with the batch's gold DSGs (``batch["dsg"]``) replaced by their ``GraphBatch`` for
    ``num_frames`` latent frames (``batch["graphs"]``, without label embeddings), built in the DataLoader's
    workers. Padding a DSG takes ~0.3 ms of Python, and sending the DSG objects themselves from a worker
    ~2 ms (pickled pydantic models): at batch 128 that was most of a GPU step. A batch with a missing DSG keeps
    its DSGs, and ``VDMTask.step`` reports it."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]], num_frames: int) -> None:
        self.collate, self.num_frames = collate, num_frames

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = self.collate(items)
        dsgs = batch.get("dsg") or []
        if not dsgs or any(dsg is None for dsg in dsgs):
            return batch
        return {
            **{k: v for k, v in batch.items() if k != "dsg"},
            "graphs": GraphBatch.from_dsgs(dsgs, self.num_frames),
        }


def _gold_graphs(dsgs: list[Any], num_frames: int) -> GraphBatch:
    """The batch's gold DSGs padded for ``num_frames`` latent frames; every clip must have one."""
    missing = [i for i, dsg in enumerate(dsgs) if dsg is None]
    if missing:
        raise StageError(
            f"clips {missing} of a batch have no gold DSG: annotate the dataset first (dysen dsg annotate) and pass "
            "it as gold"
        )
    return GraphBatch.from_dsgs(dsgs, num_frames)


def _video(batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    video = batch["video"]
    if video is None:
        raise StageError("every clip of a batch failed to load: check the dataset with `dysen data shards` or scan")
    return video.to(device)  # [B, 3, T, H, W]
