"""``DysenVDMPipeline``: prompt (or a dynamic scene graph) -> video with Dysen-VDM. Inference only.

Dysen-VDM (Fei et al., CVPR 2024, Fig. 2): the planner (Dysen) turns the prompt into a DSG; the RGTrm
encodes it into a ``GraphCondition``: keys per scene graph (its pooled token, with ``readout="nodes"`` also its
nodes) aligned to the latent frames, and for a layout-grounded model its objects in their boxes; the 3D-UNet
denoises latent noise z_T ~ N(0, I) under text and DSG cross-attention with a diffusers scheduler (DDIM, LVDM's
sampler; DPM-Solver++; Euler) and compositional classifier-free guidance (``dysen.diffusion.guidance``); the
video autoencoder decodes z_0. The loop is ``dysen.diffusion.sampler.denoise``, shared with the training-time samples.

Saved as a folder in the diffusers format: ``model_index.json`` (the resolved ``DysenVDMConfig``, which
names the text encoder, the planner and a per-frame VAE by reference) + ``unet/``, ``rgtrm/`` and, for the
3D autoencoder, ``vae/``, each ``config.json`` + ``model.safetensors`` (``dysen.models.pretrained``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import numbers
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dysen import __version__
from dysen.atomic import staged_dir, write_text_atomic
from dysen.config import DysenVDMConfig, TextEncoderSpec, VAESpec, config_from_data, config_to_data, load_config
from dysen.diffusion.guidance import Text, stack_passes
from dysen.diffusion.sampler import SamplingSettings, denoise
from dysen.diffusion.sampling import step_kwargs
from dysen.diffusion.schedules import DiffusionConfig, SamplerName
from dysen.dsg.types import DynamicSceneGraph
from dysen.encoders.text import TextEncoder
from dysen.errors import DysenError
from dysen.models.frames import model_to_frames
from dysen.models.graph_batch import GraphBatch
from dysen.models.pretrained import CheckpointError
from dysen.models.rgtrm import GraphCondition, RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder, VideoAutoencoder
from dysen.planner.layout import imagine_layout
from dysen.planner.motion import with_motion
from dysen.planner.rl import copy_policy
from dysen.planner.types import Planner

logger = logging.getLogger(__name__)

INDEX_NAME = "model_index.json"
POLICY_DIR = "policy"  # a pipeline folder's own RL demonstration selector, named relative to the folder

MAX_FRAMES_FACTOR = 8
"""A model makes videos of at most this many times the frames it was trained on (``VideoSpec.num_frames``); its
temporal attention clips relative positions (``UNet3DConfig.temporal_max_distance``), so longer is untested."""


@dataclass(frozen=True, eq=False)
class VideoResult:
    """One generated video, the DSG it followed and where the time went."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    dsg: DynamicSceneGraph  # the DSG used (planned, or the one given)
    prompt: str  # the text the UNet saw
    timings: dict[str, float]  # seconds spent in "plan", "encode", "sample", "decode"
    seed: int  # the seed of the initial noise (and of DDIM's η-noise)


class DysenVDMPipeline:
    """Planner + text encoder + RGTrm + 3D-UNet + video autoencoder, configured by one ``DysenVDMConfig``."""

    def __init__(
        self,
        planner: Planner,
        text_encoder: TextEncoder,
        rgtrm: RGTrm,
        unet: UNet3D,
        vae: VideoAutoencoder,
        config: DysenVDMConfig,
    ) -> None:
        vae_spec = config.vae
        if isinstance(vae, KLVideoAutoencoder):  # fit_scale may have replaced the AE's config
            vae_spec = dataclasses.replace(vae_spec, kind="kl3d", kl3d=vae.config)
        self.config = dataclasses.replace(config, unet=unet.config, rgtrm=rgtrm.config, vae=vae_spec)
        if text_encoder.dim != self.config.text_encoder.dim:
            raise DysenError(
                f"the text encoder gives {text_encoder.dim}-d tokens but the config expects "
                f"text_encoder.dim={self.config.text_encoder.dim}"
            )
        self.planner, self.text_encoder = planner, text_encoder
        self.rgtrm, self.unet, self.vae = rgtrm.eval(), unet.eval(), vae
        if isinstance(vae, torch.nn.Module):
            vae.eval()

    # -- building, saving, loading ------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: DysenVDMConfig,
        *,
        seed: int = 0,
        planner: Planner | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> DysenVDMPipeline:
        """A pipeline with **randomly initialised** networks (seeded), e.g. before ``shapes-tiny`` is trained."""
        logger.warning(
            "Dysen-VDM weights are random (built from a config, not trained): videos will be noise-like. "
            "Pass a trained model folder to make meaningful videos."
        )
        check_hub_sources(config)  # before building the networks: no network, no wait
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rgtrm, unet = RGTrm(config.rgtrm), UNet3D(config.unet)
            vae = _build_vae(config.vae, None)
        return cls(
            planner or _build_planner(config),
            text_encoder or build_text_encoder(config.text_encoder),
            rgtrm,
            unet,
            vae,
            config,
        )

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        *,
        planner: Planner | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> DysenVDMPipeline:
        """Load a folder written by ``save_pretrained`` (safetensors only; pickled weights are refused)."""
        folder = Path(directory)
        config = read_pipeline_config(folder)
        if text_encoder is None:
            check_hub_sources(config)
        return cls(
            planner or _build_planner(config),
            text_encoder or build_text_encoder(config.text_encoder),
            RGTrm.from_pretrained(folder / "rgtrm"),
            UNet3D.from_pretrained(folder / "unet"),
            _build_vae(config.vae, folder / "vae"),
            config,
        )

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model_index.json`` + ``unet/``, ``rgtrm/`` (+ ``vae/`` for the 3D AE, + ``policy/`` when the
        planner has an RL demonstration selector) atomically."""
        with staged_dir(directory) as staging:
            self.unet.save_pretrained(staging / "unet")
            self.rgtrm.save_pretrained(staging / "rgtrm")
            if isinstance(self.vae, KLVideoAutoencoder):
                self.vae.save_pretrained(staging / "vae")
            index = {"_class": type(self).__name__, "dysen_version": __version__}
            index["config"] = config_to_data(self.config)  # names the text encoder, planner and frame VAE
            if self.config.planner.policy is not None:  # the planner's RL selector travels with the model
                copy_policy(self.config.planner.policy, staging / POLICY_DIR)
                index["config"]["planner"]["policy"] = POLICY_DIR
            (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    # -- generation ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str | None = None,
        *,
        dsg: DynamicSceneGraph | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        dsg_guidance: float | None = None,
        seed: int = 0,
        num_frames: int | None = None,
        sampler: SamplerName | None = None,
        eta: float | None = None,
        progress: bool = True,
    ) -> VideoResult:
        """Generate one video from ``prompt`` (planned into a DSG) or from a given ``dsg`` (no planning).

        ``guidance`` is s_text and ``dsg_guidance`` s_dsg of the compositional guidance; None takes the model's
        defaults (``SamplingSettings.resolve``: ``config.diffusion``; an unset s_dsg = s_text, plain CFG on the
        joint condition, two UNet passes per step). ``steps``/``sampler``/``eta`` None: the config's.
        Same arguments, same video.
        """
        if prompt is None and dsg is None:
            raise DysenError("give a prompt, a DSG, or both")
        settings = SamplingSettings.resolve(
            self.config.diffusion, steps=steps, guidance=guidance, dsg_guidance=dsg_guidance, sampler=sampler, eta=eta
        )
        video = self.config.video
        shape = self.latent_shape(video.num_frames if num_frames is None else num_frames)  # (c, t, h, w)
        check_memory(self.config, shape, len(settings.passes), self.device)
        timings: dict[str, float] = {}

        clock = time.perf_counter()
        planned = dsg is None
        dsg = self.planner.plan(prompt) if planned else dsg  # type: ignore[arg-type]
        if not planned or any(event.motion is None for event in dsg.events):  # dysen's planners have set them
            dsg = with_motion(dsg, self.config.planner.colours)  # a given plan (--plan, the demo's edit) too
        if self.unet.config.layout:
            dsg = imagine_layout(dsg, seed=seed)  # boxes for a layout-grounded UNet (kept if the DSG has them)
        prompt = prompt if prompt is not None else describe(dsg)
        timings["plan"] = time.perf_counter() - clock

        clock = time.perf_counter()
        text, null_text, graph_cond = self.encode_conditions(prompt, dsg, shape[1])
        passes = settings.passes
        conditions = stack_passes(passes, text, null_text, graph_cond)  # text [P, L, Dt], graph condition [P, ...]
        timings["encode"] = time.perf_counter() - clock

        clock = time.perf_counter()
        scheduler = settings.scheduler(self.config.diffusion)
        generator = torch.Generator("cpu").manual_seed(seed)
        extra = step_kwargs(scheduler, settings.eta, generator)
        noise = torch.randn((1, *shape), generator=generator).to(self.device)  # [1, c, t, h, w]
        latents = denoise(self.denoiser, scheduler, noise, conditions, passes, step_kwargs=extra, progress=progress)
        timings["sample"] = time.perf_counter() - clock

        clock = time.perf_counter()
        decoded = self.vae.decode(latents)  # [1, 3, T, H, W] in ~[-1, 1]
        frames_u8 = model_to_frames(decoded[0]).numpy()  # uint8 [T, H, W, 3]
        timings["decode"] = time.perf_counter() - clock
        return VideoResult(frames_u8, dsg, prompt, timings, seed)

    def latent_shape(self, num_frames: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of a ``num_frames`` video at the model's size; refuses a count the model cannot make."""
        video = self.config.video
        most = MAX_FRAMES_FACTOR * video.num_frames
        if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral):
            raise DysenError(f"num_frames must be a whole number, got {num_frames!r}")
        if not 1 <= num_frames <= most:
            raise DysenError(
                f"num_frames must be in 1..{most} ({MAX_FRAMES_FACTOR} x the {video.num_frames} frames this model "
                f"was trained on), got {num_frames}; lower --frames"
            )
        try:
            return self.vae.latent_shape(int(num_frames), video.height, video.width)
        except DysenError as err:
            raise DysenError(f"num_frames {num_frames} does not fit this model: {err}") from None

    def denoiser(self, z_t: torch.Tensor, t: torch.Tensor, conditions: tuple[Text, GraphCondition]) -> torch.Tensor:
        """The model function of ``denoise``: the UNet's prediction [P, c, t, h, w] under (text, graph condition)."""
        return self.unet(z_t, t, text=conditions[0], graph_cond=conditions[1])

    @property
    def device(self) -> torch.device:
        """Where the UNet (and so the denoising loop) runs."""
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device) -> DysenVDMPipeline:
        """Move the networks (not the text encoder, which keeps its own device) to ``device``."""
        for module in (self.unet, self.rgtrm, self.vae):
            module.to(device)  # type: ignore[attr-defined]
        return self

    def encode_conditions(
        self, prompt: str, dsg: DynamicSceneGraph, latent_frames: int
    ) -> tuple[Text, Text, GraphCondition]:
        """The prompt's and the null prompt's ("", as LVDM) tokens, and the DSG's RGTrm tokens for the latents."""
        tokens, mask = self.text_encoder([prompt, ""])  # [2, L, Dt], [2, L]
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        graphs = GraphBatch.from_dsgs([dsg], latent_frames).with_label_embeddings(self.text_encoder).to(self.device)
        return (tokens[:1], mask[:1]), (tokens[1:], mask[1:]), self.rgtrm(graphs)  # DSG keys [1, K, Dg], ...


# -- memory of one video ---------------------------------------------------------------------------------------

_FLOAT_BYTES = 4  # float32 activations
_WORK_COPIES = 4  # tensors of a block's size alive at once besides the skips (input, norm, output, residual)


def sampling_memory(config: DysenVDMConfig, shape: tuple[int, int, int, int], passes: int) -> dict[str, int]:
    """A coarse estimate of the bytes generating one video of latents ``shape`` (c, t, h, w) holds at its peak,
    by part: the UNet's activations (skip connections and one block's work) for ``passes`` guidance passes, its
    largest attention matrices (temporal, over t), and the autoencoder's full-resolution decode. It errs high: the
    shipped model's peak grows by 0.14 GB from 16 to 128 frames, the estimate by 0.38 GB."""
    unet, video = config.unet, config.video
    _, t, h, w = shape
    levels = [(m * unet.model_channels, h // 2**i, w // 2**i) for i, m in enumerate(unet.channel_mult)]
    skips = sum(passes * t * y * x * width * (unet.num_res_blocks + 1) for width, y, x in levels)
    ff = max(unet.ff_mult) if isinstance(unet.ff_mult, tuple) else unet.ff_mult
    work = max(passes * t * y * x * width * (2 * ff + _WORK_COPIES) for width, y, x in levels)
    # temporal attention writes out its [t, t] scores and probabilities per pixel and head (``models.layers``);
    # spatial attention runs in F.scaled_dot_product_attention, whose fused kernels hold no [hw, hw] matrix
    attention = max(passes * (width // unet.head_dim) * y * x * t**2 * 2 for width, y, x in levels)
    if config.vae.kind == "kl3d":
        ae = config.vae.kl3d
        top = ae.base_channels * ae.channel_mult[0]
        decode = video.height * video.width * shape[1] * ae.temporal_downsample * top * _WORK_COPIES
        if ae.mid_attention:
            decode += (t * h * w) ** 2
    else:  # a per-frame VAE decodes a chunk of frames at a time (``FrameVAE.frames_per_chunk``)
        decode = video.height * video.width * min(t, 16) * 128 * _WORK_COPIES
    return {k: v * _FLOAT_BYTES for k, v in {"unet": skips + work, "attention": attention, "decode": decode}.items()}


def available_memory(device: torch.device) -> int | None:
    """Bytes the process can still allocate on ``device``: free GPU memory, or Linux's MemAvailable; None if
    unknown (then nothing is refused)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_memory(config: DysenVDMConfig, shape: tuple[int, int, int, int], passes: int, device: torch.device) -> None:
    """Refuse, before allocating anything, a video whose estimated peak (``sampling_memory``) exceeds what
    ``device`` has free."""
    parts = sampling_memory(config, shape, passes)
    free = available_memory(device)
    if free is not None and sum(parts.values()) > free:
        frames = shape[1] * (config.vae.kl3d.temporal_downsample if config.vae.kind == "kl3d" else 1)
        detail = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in parts.items())
        raise DysenError(
            f"{frames} frames need about {sum(parts.values()) / 1e9:.2f} GB ({detail}) but {device} has "
            f"{free / 1e9:.2f} GB free: lower --frames (num_frames; the model's own is {config.video.num_frames}), "
            "or pass --guidance/--dsg-guidance values that need fewer passes"
        )


WEIGHTS_DIR = Path(__file__).parent / "weights"
# the trained models inside the package: preset name -> pipeline folder (with its model card, README.md)
SHIPPED_MODELS = {name: WEIGHTS_DIR / name for name in ("shapes-tiny", "shapes-tiny-text-only")}


def read_pipeline_config(directory: str | os.PathLike[str]) -> DysenVDMConfig:
    """The configuration in a pipeline folder's ``model_index.json``, read without loading any network."""
    index = Path(directory) / INDEX_NAME
    if not index.is_file():
        raise CheckpointError(f"{directory} is not a Dysen-VDM folder: {INDEX_NAME} is missing")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {index}: {err}") from None
    if not isinstance(data, dict) or data.get("_class") != DysenVDMPipeline.__name__:
        raise CheckpointError(f"{index} does not describe a {DysenVDMPipeline.__name__}")
    config = config_from_data(DysenVDMConfig, data.get("config"), where=str(index))
    policy = config.planner.policy
    if policy is not None and not policy.is_absolute():  # a selector inside the folder, e.g. "policy"
        config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, policy=index.parent / policy))
    return _inside_folder(config, index.parent)


def _inside_folder(config: DysenVDMConfig, folder: Path) -> DysenVDMConfig:
    """``config`` with the text encoder, tokenizer and frame VAE that name a subfolder of the pipeline ``folder``
    (e.g. ``text_encoder``, ``vae``: written by ``dysen convert``) named by absolute path."""

    def inside(source: str | None) -> str | None:
        if source is None or Path(source).is_absolute() or not (folder / source).is_dir():
            return source
        return str(folder / source)

    text, frame = config.text_encoder, config.vae.frame
    text = dataclasses.replace(text, model=inside(text.model), tokenizer=inside(text.tokenizer))
    frame = dataclasses.replace(frame, source=inside(frame.source) or frame.source)
    vae = dataclasses.replace(config.vae, frame=frame)
    return dataclasses.replace(config, text_encoder=text, vae=vae)


def attach_policy(directory: str | os.PathLike[str], policy: str | os.PathLike[str]) -> Path:
    """Make the RL demonstration selector ``policy`` (a ``dysen train-dysen`` folder) part of the pipeline folder
    ``directory``: copied into its ``policy/`` and named by its planner settings, so its planner uses it by default."""
    folder = Path(directory)
    read_pipeline_config(folder)  # it is a pipeline folder
    index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
    copy_policy(policy, folder / POLICY_DIR)
    index["config"]["planner"]["policy"] = POLICY_DIR
    write_text_atomic(folder / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    return folder / POLICY_DIR


SAMPLING_FIELDS = ("sampler", "steps", "guidance", "dsg_guidance", "eta")
"""The ``DiffusionConfig`` fields that are a saved model's sampling defaults (the rest belong to training)."""


def set_sampling_defaults(
    folder: str | os.PathLike[str], changes: Mapping[str, Any], *, allow_shipped: bool = False
) -> tuple[DiffusionConfig, DiffusionConfig]:
    """Change the sampling defaults of the pipeline folder ``folder``: ``changes`` maps ``SAMPLING_FIELDS`` to new
    values (None: unchanged; ``'none'`` for ``dsg_guidance``: unset). Returns the old and the new
    ``DiffusionConfig``; bad values raise a ``DysenError`` and leave the folder untouched."""
    folder = Path(folder)
    unknown = sorted(set(changes) - set(SAMPLING_FIELDS))
    if unknown:
        raise DysenError(f"set-defaults changes only {', '.join(SAMPLING_FIELDS)}, not {unknown}")
    shipped = [name for name, path in SHIPPED_MODELS.items() if path.resolve() == folder.resolve()]
    if shipped and not allow_shipped:
        raise DysenError(
            f"{folder} is the model {shipped[0]} shipped inside the dysen package: copy it (cp -r {folder} "
            "my-model) and change the copy, or pass --allow-shipped (a reinstall undoes it)"
        )
    given = {name: (None if value == "none" else value) for name, value in changes.items() if value is not None}
    if not given:
        raise DysenError(f"nothing to change: give a new value for at least one of {', '.join(SAMPLING_FIELDS)}")
    old = read_pipeline_config(folder).diffusion  # also checks that this is a pipeline folder
    index_path = folder / INDEX_NAME
    data = {**dataclasses.asdict(old), **given}  # checked as a saved config is: types, then DiffusionConfig's checks
    new = config_from_data(DiffusionConfig, data, where=f"the new sampling defaults of {folder}")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["config"].setdefault("diffusion", {}).update({name: getattr(new, name) for name in SAMPLING_FIELDS})
    write_text_atomic(index_path, json.dumps(index, indent=2) + "\n")
    return old, new


def load_pipeline(
    model: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] = "shapes-tiny",
    planner: Planner | None = None,
    planner_changes: Mapping[str, Any] | None = None,
) -> DysenVDMPipeline:
    """The pipeline ``dysen generate`` runs: ``model`` (a pipeline folder) when given, else the trained model
    shipped for the preset ``config`` (``shapes-tiny``), else random weights built from ``config`` (warned).

    ``planner_changes`` (``PlannerOptions`` fields) replace those of the model's own planner settings.
    """
    folder = model if model is not None else shipped_model(config)
    if planner is None and planner_changes:
        from dysen.planner.build import build_planner, changed_options

        settings = read_pipeline_config(folder) if folder is not None else load_config(config)
        planner = build_planner(changed_options(settings.planner, planner_changes))
    if folder is not None:
        return DysenVDMPipeline.from_pretrained(folder, planner=planner)
    return DysenVDMPipeline.from_config(load_config(config), planner=planner)


def shipped_model(config: str | os.PathLike[str]) -> Path | None:
    """The trained pipeline folder the package ships for preset ``config``, if there is one."""
    folder = SHIPPED_MODELS.get(str(config))
    return folder if folder is not None and (folder / INDEX_NAME).is_file() else None


def describe(dsg: DynamicSceneGraph) -> str:
    """A plain caption of a DSG's events in time order (the text condition when only a DSG is given)."""
    events = sorted(dsg.events, key=lambda e: (e.start, e.end))
    clauses = [" ".join(part for part in e.triplet if part) for e in events]
    return ", then ".join(clauses) if clauses else ", ".join(dsg.graphs[0].objects)


def build_text_encoder(spec: TextEncoderSpec) -> TextEncoder:
    """The frozen text encoder ``spec`` names (loaded lazily, on first use)."""
    from dysen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder

    if spec.kind == "clip":
        model = spec.model or "openai/clip-vit-large-patch14"
        return CLIPTextEncoder(model, tokenizer=spec.tokenizer, max_length=spec.max_length)
    return MiniLMTextEncoder(spec.model, max_length=spec.max_length)


def check_hub_sources(config: DysenVDMConfig) -> None:
    """Fail fast (``HubUnavailableError``) when a hub id the config names cannot be fetched (``encoders.hub``)."""
    from dysen.encoders.hub import require_hub_source

    field = "in the model config (--config YAML)"
    spec = config.text_encoder
    if spec.kind == "clip" or spec.model is not None:
        source = spec.model or "openai/clip-vit-large-patch14"
        require_hub_source(source, f"the {spec.kind} text encoder", f"text_encoder.model {field}")
        if spec.tokenizer is not None:
            require_hub_source(spec.tokenizer, "the CLIP tokenizer", f"text_encoder.tokenizer {field}")
    if config.vae.kind == "frame":
        frame = config.vae.frame
        require_hub_source(frame.source, "the frame VAE", f"vae.frame.source {field}", frame.subfolder)


def _build_planner(config: DysenVDMConfig) -> Planner:
    from dysen.planner.build import build_planner

    return build_planner(config.planner)


def _build_vae(spec: VAESpec, folder: Path | None) -> Any:
    """The 3D KL AE (random, or loaded from ``folder``), or the pretrained per-frame VAE ``spec`` names."""
    from dysen.models.vae import FrameVAE

    if spec.kind == "frame":
        frame = spec.frame
        return FrameVAE.load(frame.source, subfolder=frame.subfolder, frames_per_chunk=frame.frames_per_chunk)
    if folder is None:
        return KLVideoAutoencoder(spec.kl3d)
    return KLVideoAutoencoder.from_pretrained(folder)
