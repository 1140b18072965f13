"""Training a DSG adapter on a frozen backbone: ``AdapterTask`` for the one loop (issue 25).

Only the adapter (``dysen.backbones.adapter.DSGAdapter``: its RGTrm, grounding projection and gated layers) is
trained; every module of the backbone has ``requires_grad`` off and is not among the task's modules, so the
optimizer, EMA and checkpoints hold the adapter alone. The loss is the backbone's own: rectified flow for a
flow-matching backbone (Wan; ``dysen.diffusion.loss.flow_matching_loss``, σ logit-normal then shifted by the
backbone's scheduler shift), L_simple on ε or v under the scheduler's own ᾱ for a DDPM-trained one (ModelScope's
UNet3D; ``noise_prediction_loss``), with the backbone's ``encode_prompt`` and ``denoise_fn`` and the adapter's
layers hooked after their blocks for the task's life (each step sets its grounding, which stays set through the
backward pass: gradient checkpointing reruns the blocks, hooks included, there). Caption and DSG are dropped
independently (``text_dropout``, ``dsg_dropout``: a dropped DSG leaves every grounding token masked, the null DSG),
so sampling can guide with and without the plan.
Latents: the clip's cached posterior moments for a backbone with dysen's own autoencoder (``DysenWanBackbone``:
the same cache ``train-backbone`` writes), else the backbone's ``encode_video`` of each clip.

Gold DSGs come with the clips (Dynamic Shapes, or a dataset annotated by ``dysen dsg annotate`` and boxed by
``dysen dsg boxes`` from a tracker's output): the grounding tokens are the objects in their boxes, and a clip
without boxes trains as the null DSG (counted in the metrics as ``unboxed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dysen.backbones.adapter import AdapterConfig, AdapterError, DSGAdapter, Grounding, adapter_config
from dysen.backbones.base import Backbone
from dysen.backbones.schedule import latent_frame_spans
from dysen.diffusion.loss import FlowSigmas, flow_matching_loss, noise_prediction_loss
from dysen.dsg import DynamicSceneGraph, SceneGraph
from dysen.encoders.text import TextEncoder
from dysen.models.frames import model_to_frames
from dysen.models.graph_batch import GraphBatch
from dysen.models.rgtrm import RGTrmConfig
from dysen.models.vae import KLVideoAutoencoder
from dysen.train.loop import StepOutput

log = logging.getLogger(__name__)

EMPTY_DSG = DynamicSceneGraph(graphs=(SceneGraph(),))
"""What a clip without a boxed gold DSG is grounded by: no objects, so only the null token (the null DSG)."""


def _tiny_rgtrm() -> RGTrmConfig:
    return RGTrmConfig(label_dim=384, dim=32, num_layers=1, num_heads=4, layout=True)


@dataclass(frozen=True)
class AdapterTrainConfig:
    """The adapter's size (its width and depth follow the backbone) and how it is trained."""

    every: int = 2  # an adapter layer after every this many blocks
    heads: int | None = None  # attention heads of each layer (None: the backbone's)
    width: int = 0  # width of the grounding tokens and the layers' attention (0: the backbone's)
    neighbours: int = 1  # latent frames on each side whose grounding tokens a video token sees
    rgtrm: RGTrmConfig = field(default_factory=_tiny_rgtrm)  # reads the DSG; label_dim: MiniLM's 384
    text_dropout: float = 0.1  # P(caption -> "") per clip
    dsg_dropout: float = 0.1  # P(DSG -> null) per clip, drawn independently of the caption's

    def __post_init__(self) -> None:
        if not (0 <= self.text_dropout < 1 and 0 <= self.dsg_dropout < 1):
            raise AdapterError(f"text_dropout and dsg_dropout must be in [0, 1): {self}")

    def adapter_config(self, backbone: Backbone) -> AdapterConfig:
        """The ``AdapterConfig`` of this size for ``backbone``'s denoiser."""
        changes: dict[str, Any] = {
            "every": self.every, "neighbours": self.neighbours, "rgtrm": self.rgtrm, "width": self.width,
        }  # fmt: skip
        if self.heads is not None:
            changes["heads"] = self.heads
        return adapter_config(backbone, **changes)


ADAPTER_PRESETS: dict[str, AdapterTrainConfig] = {
    # for shapes-wan-tiny (width 128, 4 blocks, 1.27M parameters): a 64-wide layer after blocks 1 and 3, a 32-wide
    # RGTrm; 101k parameters, 8% of the backbone's
    "adapter-tiny": AdapterTrainConfig(width=64),
    "adapter-test": AdapterTrainConfig(every=1, rgtrm=RGTrmConfig(label_dim=384, dim=16, num_layers=1, num_heads=2,
                                                                  layout=True)),  # fmt: skip
}


def flow_sigmas(backbone: Backbone) -> FlowSigmas:
    """σ sampling of a flow-matching backbone's own training: logit-normal, shifted as its scheduler shifts."""
    shift = float(backbone.make_scheduler().config.get("shift", 1.0))
    return FlowSigmas(shift=shift, num_train_timesteps=backbone.num_train_timesteps)


def backbone_loss(backbone: Backbone) -> Callable[[Any, torch.Tensor, Any, torch.Generator], torch.Tensor]:
    """The loss the backbone was trained with, as ``loss(model_fn, x0, text, generator)``: rectified flow (Wan), or
    L_simple on ε or v under its scheduler's ᾱ (a DDPM-trained UNet3D)."""
    if backbone.prediction_type == "flow":
        sigmas = flow_sigmas(backbone)
        return lambda model_fn, x0, text, generator: flow_matching_loss(model_fn, x0, text, sigmas, generator)
    abar = getattr(backbone.make_scheduler(), "alphas_cumprod", None)
    if abar is None:
        raise AdapterError(f"the {backbone.name} backbone's scheduler has no alphas_cumprod to train an adapter under")
    kind = backbone.prediction_type
    return lambda model_fn, x0, text, generator: noise_prediction_loss(model_fn, x0, text, abar, kind, generator)


class AdapterTask:
    """The adapter on the frozen backbone, by the backbone's loss, under dropped-out captions and DSGs."""

    def __init__(
        self, backbone: Backbone, adapter: DSGAdapter, labels: TextEncoder, config: AdapterTrainConfig,
        num_frames: int,
    ) -> None:  # fmt: skip
        self.backbone, self.adapter, self.labels, self.config = backbone, adapter.train(), labels, config
        for module in _frozen_modules(backbone):
            module.eval().requires_grad_(False)
        self.loss = backbone_loss(backbone)
        self.num_frames = num_frames
        self.spans = latent_frame_spans(num_frames, backbone.geometry.temporal_factor)
        self.unboxed, self._warned = 0, False  # clips of the last batch without boxes; warned once
        self._hooks = ExitStack()  # the adapter's layers stay after their blocks while the task lives
        self._hooks.enter_context(adapter.installed(backbone.adapter_sites(), None))

    def modules(self) -> dict[str, nn.Module]:
        return {"adapter": self.adapter}

    def to(self, device: torch.device) -> AdapterTask:
        self.adapter.to(device)
        for module in _frozen_modules(self.backbone):
            module.to(device)
        text_encoder = getattr(self.backbone, "text_encoder", None)
        if text_encoder is not None and not isinstance(text_encoder, nn.Module):
            text_encoder.to(device)  # dysen's MiniLM states
        self.labels.to(device)
        self.backbone.device = device
        return self

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        device = generator.device
        x0 = self._latents(batch, device)  # [B, c, t, h, w]
        drop_text = torch.rand((len(x0),), generator=generator, device=device) < self.config.text_dropout  # [B]
        drop_dsg = torch.rand((len(x0),), generator=generator, device=device) < self.config.dsg_dropout  # [B]
        captions = ["" if d else caption for caption, d in zip(batch["caption"], drop_text.tolist(), strict=True)]
        with torch.no_grad():
            text = self.backbone.encode_prompt(captions)  # [B, L, D], [B, L]
        self.adapter.use_grounding(self.grounding(batch["dsg"], drop_dsg))  # read again by a checkpointed backward
        loss = self.loss(self.backbone.denoise_fn, x0, text, generator)
        return StepOutput(loss, {"unboxed": torch.tensor(float(self.unboxed))})

    def grounding(self, dsgs: list[Any], drop: torch.Tensor) -> Grounding:
        """The grounding tokens of the batch's gold DSGs, those of ``drop`` [B] masked out (the null DSG); a clip
        without a gold DSG with boxes (real data the tracker found nothing in) trains as the null DSG too."""
        unboxed = [dsg is None or dsg.boxes is None for dsg in dsgs]
        if any(unboxed) and not self._warned:
            log.warning(
                "%d of %d clips of a batch have no gold DSG with boxes: they train as the null DSG (boxes for real "
                "videos: dysen dsg boxes)", sum(unboxed), len(dsgs),
            )  # fmt: skip
            self._warned = True
        self.unboxed = sum(unboxed)
        dsgs = [EMPTY_DSG if missing else dsg for dsg, missing in zip(dsgs, unboxed, strict=True)]
        graphs = GraphBatch.from_dsgs(dsgs, self.num_frames).with_label_embeddings(self.labels)
        objects = self.adapter.rgtrm(graphs.to(drop.device)).objects
        assert objects is not None  # AdapterConfig requires the RGTrm's layout grounding
        objects = objects._replace(mask=objects.mask & ~drop[:, None, None])
        return self.adapter.ground(objects, self.spans)

    @torch.no_grad()
    def _latents(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """The backbone's normalised latents [B, c, t, h, w]: from cached moments (dysen's autoencoder) or encoded."""
        vae = getattr(self.backbone, "vae", None)
        if "latent_mean" in batch:
            if not isinstance(vae, KLVideoAutoencoder):
                raise AdapterError("cached latents are dysen autoencoder moments; this backbone has its own VAE")
            return vae.normalise(batch["latent_mean"].to(device))  # the posterior mean of the cached moments
        video = batch["video"]  # [B, 3, T, H, W] in [-1, 1]
        if video is None:
            raise AdapterError("every clip of a batch failed to load: check the dataset")
        frames = [model_to_frames(clip) for clip in video]  # uint8 [T, H, W, 3] each
        return torch.cat([self.backbone.encode_video(clip) for clip in frames]).to(device)


def _frozen_modules(backbone: Backbone) -> list[nn.Module]:
    """Every torch module of the backbone (transformer, VAE, text encoder's model when loaded)."""
    return [value for value in vars(backbone).values() if isinstance(value, nn.Module)]
