"""Typed configuration of a whole Dysen-VDM: component configs, named presets, strict YAML load/save.

A ``DysenVDMConfig`` composes the configs each component declares (``UNet3DConfig``, ``RGTrmConfig``,
``KLVideoAutoencoderConfig``, ``DiffusionConfig``, ``PlannerOptions``) with the few settings that belong to
the model as a whole (text encoder, video size). Defaults live in those dataclasses and in ``PRESETS``
only. A YAML recipe (``configs/*.yaml``) spells a config out; every key must name a declared field, and a
field left out takes its dataclass default.

Presets (``configs/`` holds each as YAML, checked equal by the tests):

* ``shapes-tiny`` — the offline default: 16×64×64 Dynamic Shapes clips, a frame-wise KL AE with 4× spatial
  downsampling (latents 4×16×16×16), a 1.9 M-parameter UNet with attention at its 4×4 level, a tiny RGTrm
  whose objects are also grounded in the DSG's boxes (layout maps), MiniLM text, Min-SNR-5 loss weighting:
  sized to train in under 2 hours on 2 CPU cores.
* ``shapes-tiny-text-only`` — its ablation: the same backbone without the DSG path (cross-attention, layout).
* ``paper-t2v-256`` — LVDM's text-to-video setup (dysen_spec.md §5.2): SD-VAE per frame (latents
  4×16×32×32), CLIP ViT-L/14 tokens (768-d), a 320-channel UNet [1, 2, 4, 4], + a 768-d RGTrm.
* ``lvdm-t2v`` — LVDM's released text-to-video model, tensor for tensor (UNet ``arch="lvdm-t2v"``: the weights of
  ``dysen convert lvdm t2v.ckpt --kind t2v`` load into it), + a zero-initialised DSG path and a 768-d RGTrm;
  LVDM's sampling defaults (DDIM 50 steps, η = 1, CFG 15).
* ``lvdm-short-ucf101`` — LVDM's short-video UNet and 3D AE, tensor for tensor (``dysen convert lvdm --kind
  short-unet``; its released Sky/Taichi models are the same networks with their own latent scale/shift), with
  UCF-101's scale/shift, + a zero-initialised DSG path; unconditional as LVDM's (no text cross-attention); LVDM's
  sampler (DDPM = DDIM with η = 1 over all 1000 steps), no guidance.
* ``lvdm-ucf101`` — LVDM's UCF-101 setup (dysen_spec.md §5.1): 3D AE latents 4×4×32×32, a 256-channel
  UNet [1, 2, 3, 4] with 3 res blocks, L1 loss, β linear in √β from 0.0015 to 0.0155.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from dysen.diffusion.schedules import DiffusionConfig
from dysen.errors import DysenError
from dysen.models.rgtrm import RGTrmConfig
from dysen.models.unet3d import UNet3DConfig
from dysen.models.vae import KLVideoAutoencoderConfig
from dysen.planner.build import PlannerOptions

_C = TypeVar("_C")


class ConfigError(DysenError, ValueError):
    """A config file or preset is missing, malformed, has unknown keys or inconsistent sizes."""


@dataclass(frozen=True)
class TextEncoderSpec:
    """Which frozen text encoder conditions the UNet and embeds the DSG node labels."""

    kind: Literal["minilm", "clip"] = "minilm"  # all-MiniLM-L6-v2 (offline, 384-d) or a CLIP text tower
    model: str | None = None  # folder or hub id; None = the bundled MiniLM (kind "minilm" only)
    tokenizer: str | None = None  # folder or hub id of the tokenizer (kind "clip"); None = model's own
    dim: int = 384  # token width D_t: MiniLM 384, CLIP ViT-L/14 768 (checked against the loaded encoder)
    max_length: int = 77  # prompt tokens


@dataclass(frozen=True)
class FrameVAESpec:
    """A pretrained diffusers ``AutoencoderKL`` applied per frame (stored by reference, never copied)."""

    source: str = "stabilityai/sd-vae-ft-mse"  # folder or hub id of the SD-1.x KL-f8 VAE
    subfolder: str | None = None  # "vae" when ``source`` is a whole Stable Diffusion repo
    latent_channels: int = 4  # c of the latents (SD VAE: 4)
    downsample: int = 8  # spatial factor (SD VAE: 8)
    frames_per_chunk: int = 16  # frames encoded/decoded at once


@dataclass(frozen=True)
class VAESpec:
    """The video autoencoder: an LVDM-style 3D KL AE trained by dysen, or a pretrained per-frame VAE."""

    kind: Literal["kl3d", "frame"] = "kl3d"
    kl3d: KLVideoAutoencoderConfig = field(default_factory=KLVideoAutoencoderConfig)  # used when kind = "kl3d"
    frame: FrameVAESpec = field(default_factory=FrameVAESpec)  # used when kind = "frame"

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of a ``num_frames × height × width`` video, from the config alone (no weights)."""
        c, ft, fs = (
            (self.frame.latent_channels, 1, self.frame.downsample)
            if self.kind == "frame"
            else (self.kl3d.latent_channels, self.kl3d.temporal_downsample, self.kl3d.spatial_downsample)
        )
        if num_frames % ft or height % fs or width % fs or num_frames < ft or min(height, width) < fs:
            raise ConfigError(
                f"a {num_frames}x{height}x{width} video does not fit the {self.kind} VAE: frames must be a positive "
                f"multiple of {ft} and height/width of {fs}"
            )
        return (c, num_frames // ft, height // fs, width // fs)


@dataclass(frozen=True)
class VideoSpec:
    """The videos the model makes (and is trained on)."""

    num_frames: int = 16  # T, frames per clip
    height: int = 64  # H in pixels
    width: int = 64  # W in pixels
    fps: int = 8  # frame rate of written videos


@dataclass(frozen=True)
class DysenVDMConfig:
    """Everything needed to build (and retrain) a Dysen-VDM; start from a preset (``PRESETS``), not the defaults."""

    unet: UNet3DConfig = field(default_factory=UNet3DConfig)
    rgtrm: RGTrmConfig = field(default_factory=RGTrmConfig)
    vae: VAESpec = field(default_factory=VAESpec)
    text_encoder: TextEncoderSpec = field(default_factory=TextEncoderSpec)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    video: VideoSpec = field(default_factory=VideoSpec)
    planner: PlannerOptions = field(default_factory=PlannerOptions)

    def __post_init__(self) -> None:
        channels = self.vae.latent_shape(self.video.num_frames, self.video.height, self.video.width)[0]
        unet_channels = (self.unet.in_channels, self.unet.out_channels)
        problems = {
            "unet.in_channels/out_channels != the VAE's latent channels": unet_channels != (channels, channels),
            "unet.text_dim != text_encoder.dim": self.unet.text_dim != self.text_encoder.dim,
            "rgtrm.label_dim != text_encoder.dim (the text encoder embeds the DSG node labels)": self.rgtrm.label_dim
            != self.text_encoder.dim,
            "unet.dsg_dim != rgtrm.dim": self.unet.dsg_dim != self.rgtrm.dim,
            "rgtrm.orientation needs rgtrm.layout": self.rgtrm.orientation and not self.rgtrm.layout,
            "unet.layout needs rgtrm.layout (the RGTrm grounds the objects the layout maps paint; set both true or "
            "both false)": self.unet.layout and not self.rgtrm.layout,
        }
        bad = [what for what, wrong in problems.items() if wrong]
        if bad:
            raise ConfigError("inconsistent DysenVDMConfig: " + "; ".join(bad))


def _shapes_tiny() -> DysenVDMConfig:
    return DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4,),
            text_dim=384, dsg_dim=64, temporal_max_distance=16, layout=True, layout_frames=True,
        ),
        rgtrm=RGTrmConfig(label_dim=384, dim=64, num_layers=2, num_heads=4, readout="nodes", layout=True,
                           orientation=True),
        vae=VAESpec(kl3d=KLVideoAutoencoderConfig(
            base_channels=16, channel_mult=(1, 2), spatial_downsample=4, temporal_downsample=1, temporal_kernel=1,
            norm_groups=8,
        )),
        diffusion=DiffusionConfig(snr_gamma=5.0),
    )  # fmt: skip


def _shapes_tiny_text_only() -> DysenVDMConfig:
    """The ablation of ``shapes-tiny``: the same backbone with the DSG path (cross-attention, layout) removed."""
    config = _shapes_tiny()
    unet = dataclasses.replace(config.unet, dsg_cross_attention="off", layout=False, layout_frames=False)
    rgtrm = dataclasses.replace(config.rgtrm, layout=False, orientation=False)
    return dataclasses.replace(config, unet=unet, rgtrm=rgtrm)


def _paper_t2v_256() -> DysenVDMConfig:
    return DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(1, 2, 4),
            head_dim=40, text_dim=768, dsg_dim=768, temporal_max_distance=16,
        ),
        rgtrm=RGTrmConfig(label_dim=768, dim=768, num_layers=4, num_heads=12),
        vae=VAESpec(kind="frame", frame=FrameVAESpec()),
        text_encoder=TextEncoderSpec(kind="clip", model="openai/clip-vit-large-patch14", dim=768),
        video=VideoSpec(num_frames=16, height=256, width=256, fps=8),
    )  # fmt: skip


def _lvdm_ucf101() -> DysenVDMConfig:
    return DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=256, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_resolutions=(2, 4, 8),
            head_dim=64, text_dim=768, dsg_dim=768, temporal_max_distance=4,
        ),
        rgtrm=RGTrmConfig(label_dim=768, dim=768, num_layers=4, num_heads=12),
        vae=VAESpec(kl3d=KLVideoAutoencoderConfig(scaling_factor=0.220142075, shift_factor=-0.5837740898)),
        text_encoder=TextEncoderSpec(kind="clip", model="openai/clip-vit-large-patch14", dim=768),
        diffusion=DiffusionConfig(beta_start=0.0015, beta_end=0.0155, loss="l1"),
        video=VideoSpec(num_frames=16, height=256, width=256, fps=8),
    )  # fmt: skip


def _lvdm_t2v() -> DysenVDMConfig:
    return DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(1, 2, 4),
            num_heads=8, text_dim=768, dsg_dim=768, temporal_max_distance=16, arch="lvdm-t2v",
        ),
        rgtrm=RGTrmConfig(label_dim=768, dim=768, num_layers=4, num_heads=12),
        vae=VAESpec(kind="frame", frame=FrameVAESpec()),
        text_encoder=TextEncoderSpec(kind="clip", model="openai/clip-vit-large-patch14", dim=768),
        diffusion=DiffusionConfig(eta=1.0, steps=50, guidance=15.0),
        video=VideoSpec(num_frames=16, height=256, width=256, fps=8),
    )  # fmt: skip


def _lvdm_short_ucf101() -> DysenVDMConfig:
    return DysenVDMConfig(
        unet=UNet3DConfig(
            model_channels=256, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_resolutions=(2, 4, 8),
            num_heads=4, use_text_cross_attention=False, text_dim=768, dsg_dim=768, temporal_max_distance=4,
            arch="lvdm-short",
        ),
        rgtrm=RGTrmConfig(label_dim=768, dim=768, num_layers=4, num_heads=12),
        vae=VAESpec(
            kl3d=KLVideoAutoencoderConfig(scaling_factor=0.220142075, shift_factor=-0.5837740898, arch="lvdm")
        ),
        text_encoder=TextEncoderSpec(kind="clip", model="openai/clip-vit-large-patch14", dim=768),
        diffusion=DiffusionConfig(beta_start=0.0015, beta_end=0.0155, loss="l1", eta=1.0, steps=1000, guidance=1.0),
        video=VideoSpec(num_frames=16, height=256, width=256, fps=8),
    )  # fmt: skip


PRESETS = {
    "shapes-tiny": _shapes_tiny,
    "shapes-tiny-text-only": _shapes_tiny_text_only,
    "paper-t2v-256": _paper_t2v_256,
    "lvdm-ucf101": _lvdm_ucf101,
    "lvdm-t2v": _lvdm_t2v,
    "lvdm-short-ucf101": _lvdm_short_ucf101,
}
"""Named configs: ``load_config(name)`` builds one; ``configs/<name>.yaml`` spells it out."""


def load_config(path_or_name: str | os.PathLike[str]) -> DysenVDMConfig:
    """A preset by name (``PRESETS``), or a YAML file whose keys all name ``DysenVDMConfig`` fields."""
    import yaml

    if str(path_or_name) in PRESETS:
        return PRESETS[str(path_or_name)]()
    path = Path(path_or_name)
    if not path.is_file():
        raise ConfigError(f"{path_or_name!s} is neither a preset ({', '.join(PRESETS)}) nor a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path} as YAML: {err}") from None
    return config_from_data(DysenVDMConfig, data or {}, where=str(path))


def save_config(config: DysenVDMConfig, path: str | os.PathLike[str]) -> Path:
    """Write the fully resolved ``config`` as YAML (atomically); ``load_config`` reads it back equal."""
    import yaml

    from dysen.atomic import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config_to_data(config), sort_keys=False, default_flow_style=None))
    return Path(path)


def config_to_data(config: Any) -> dict[str, Any]:
    """A (nested) dataclass config as plain YAML/JSON data (tuples as lists, paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return str(value) if isinstance(value, Path) else value

    return plain(dataclasses.asdict(config))


def config_from_data(cls: type[_C], data: Any, where: str = "config") -> _C:
    """Build dataclass ``cls`` from plain data; every key must be a field and every value of its type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; {cls.__name__} has {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (DysenError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _coerce(kind: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``kind``: dataclass, Literal, X | None, tuple, Path or scalar."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return config_from_data(kind, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where) if len(options) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is Path:
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and type(value) is not kind:
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value
