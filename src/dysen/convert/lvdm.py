"""``dysen convert lvdm``: LVDM's released checkpoints -> a dysen pipeline folder in safetensors.

LVDM (He et al. 2022) releases PyTorch Lightning checkpoints of its whole ``LatentDiffusion`` (``t2v.ckpt``;
``short_{sky,taichi}.ckpt``) and of its 3D autoencoders (``ae_{sky,taichi}.ckpt``) (``research/backbones.md`` §2).
A file is read with ``torch.load(weights_only=True)``; one that needs unpickling is refused unless the caller
trusts it (``trust=True``, the CLI's ``--trust-checkpoint``), which is warned about. Every tensor of the file is
accounted for by name: placed in a dysen network (``lvdm_keys``), dropped as a known group (each listed in the
report, with why), or dropped because the caller named its prefix (``drop``). Anything else, a tensor the network
needs that the file lacks, or a shape that does not fit, stops the conversion with the names.

Kinds:

* ``t2v`` — ``model.diffusion_model.`` -> ``UNet3D`` (``arch="lvdm-t2v"``); ``first_stage_model.`` -> a diffusers
  ``AutoencoderKL`` folder (``vae/``, scale 0.18215); ``cond_stage_model.transformer.text_model.`` -> a transformers
  ``CLIPTextModel`` folder (``text_encoder/``; its tokenizer is named by reference). LatentDiffusion's schedule
  buffers are checked against the preset's β and dropped; CLIP's ``position_ids`` is checked and dropped.

The DSG path and the RGTrm are freshly initialised (seeded); the DSG cross-attention's output is zero, so the
converted pipeline computes what LVDM's model does until it is trained (``dysen train-vdm --init``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dysen import __version__
from dysen.atomic import staged_dir, write_text_atomic
from dysen.config import DysenVDMConfig, config_to_data, load_config
from dysen.convert.lvdm_keys import (
    CLIP_POSITION_IDS,
    KeyMap,
    ae_aliases,
    ae_key_map,
    clip_key_map,
    unet_key_map,
    vae_key_map,
)
from dysen.diffusion.schedules import make_betas
from dysen.errors import DysenError
from dysen.models.pretrained import CheckpointError, PickledCheckpointError, read_state_dict
from dysen.models.rgtrm import RGTrm
from dysen.models.unet3d import UNet3D
from dysen.models.vae import KLVideoAutoencoder, KLVideoAutoencoderConfig

Kind = Literal["t2v", "short-ae", "short-unet"]
KINDS: tuple[str, ...] = ("t2v", "short-ae", "short-unet")
CONVERSION_NAME = "conversion.json"  # what was converted from where, and what was dropped, in the output folder

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_OWNER = "cond_stage_model."

SD_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "sample_size": 256,
    "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "scaling_factor": 0.18215,
}  # fmt: skip
"""LVDM's text-to-video ``first_stage_config`` (LDM KL-f8: ch 128, ch_mult 1 2 4 4, 2 res blocks, z 4) in diffusers'
terms, with LVDM's latent scale."""

CLIP_L_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
}  # fmt: skip
"""The text tower of ``openai/clip-vit-large-patch14``, LVDM's ``FrozenCLIPEmbedder``."""

SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)  # fmt: skip
"""LatentDiffusion's noise-schedule buffers: dysen computes them from ``DiffusionConfig``; ``betas`` is compared."""


class ConversionError(DysenError):
    """A checkpoint cannot be converted: unreadable, pickled and untrusted, or its tensors do not fit (named)."""


def read_checkpoint(
    path: str | os.PathLike[str], *, trust: bool = False, warn: Callable[[str], None] | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (a Lightning ``{"state_dict": …}`` is unwrapped), read with ``weights_only=True``
    (``dysen.models.pretrained.read_state_dict``). A file that holds other pickled objects is refused unless
    ``trust``; then it is unpickled, after ``warn``."""
    try:
        return read_state_dict(path, "the LVDM checkpoint's", trust=trust, warn=warn)
    except PickledCheckpointError as err:
        raise ConversionError(
            f"{err}. Or, since unpickling can run arbitrary code, pass --trust-checkpoint only for a file from a "
            "source you trust"
        ) from None
    except CheckpointError as err:
        raise ConversionError(str(err)) from None


@dataclass(frozen=True)
class Slot:
    """Where a tensor of the file goes: a component, its name there, its shape in the file and in the network."""

    component: str
    name: str
    file_shape: tuple[int, ...]
    shape: tuple[int, ...]


@dataclass
class Matched:
    """The file's tensors sorted: placed per component, dropped per group (with the reason), and the problems."""

    placed: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    misshaped: list[str] = field(default_factory=list)

    def raise_problems(self, source: str, out: str | os.PathLike[str]) -> None:
        """A ``ConversionError`` naming the unknown, missing and mis-shaped tensors, if there are any: the first
        ``SHOWN`` of each in the message, all of them in ``<out>.problems.json`` beside the output folder."""
        kinds = {
            "unknown": ("unknown tensor(s) (not in the network; --drop PREFIX drops a group by name)", self.unknown),
            "missing": ("missing tensor(s) (the network needs them)", self.missing),
            "misshaped": ("mis-shaped tensor(s)", self.misshaped),
        }
        if not any(names for _, names in kinds.values()):
            return
        listing = Path(out).with_name(Path(out).name + ".problems.json")
        write_text_atomic(listing, json.dumps({k: names for k, (_, names) in kinds.items()}, indent=2) + "\n")
        parts = [
            f"{len(names)} {what}: {', '.join(names[:SHOWN])}"
            + (f", … ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")
            for what, names in kinds.values()
            if names
        ]
        hint = (
            " (most tensors do not fit: another --kind, or a checkpoint of another size?)"
            if len(self.misshaped) > len(self.placed_names())
            else ""
        )
        raise ConversionError(f"{source} does not fit{hint}: " + "; ".join(parts) + f"; every name is in {listing}")

    def placed_names(self) -> list[str]:
        return [name for tensors in self.placed.values() for name in tensors]


SHOWN = 20
"""How many names of each kind of problem a conversion error shows (the listing file has them all)."""


def slots(component: str, prefix: str, key_map: KeyMap, network: nn.Module) -> dict[str, Slot]:
    """The file names of ``network``'s LVDM tensors (``key_map``, under ``prefix``) and where they go."""
    state = network.state_dict()
    return {
        prefix + lvdm_name: Slot(component, name, file_shape, tuple(state[name].shape))
        for name, (lvdm_name, file_shape) in key_map.items()
    }


def match(
    state: dict[str, torch.Tensor],
    expected: dict[str, Slot],
    known_drops: dict[str, tuple[str, Callable[[str], bool]]],
    drop_prefixes: Iterable[str] = (),
) -> Matched:
    """Sort the file's tensors (``Matched``). ``known_drops``: group -> (why, does a name belong to it)."""
    found = Matched()
    prefixes = tuple(drop_prefixes)
    for name, tensor in state.items():
        slot = expected.get(name)
        if slot is not None:
            if tuple(tensor.shape) != slot.file_shape:
                found.misshaped.append(f"{name} {list(tensor.shape)} (expected {list(slot.file_shape)})")
                continue
            found.placed.setdefault(slot.component, {})[slot.name] = tensor.reshape(slot.shape)
            continue
        group = next((g for g, (_, belongs) in known_drops.items() if belongs(name)), None)
        if group is None and name.startswith(prefixes):
            group = "--drop " + next(p for p in prefixes if name.startswith(p))
        if group is None:
            found.unknown.append(name)
        else:
            found.dropped.setdefault(group, []).append(name)
    found.missing = sorted(name for name in expected if name not in state)
    return found


def load_into(network: nn.Module, tensors: dict[str, torch.Tensor], keep: Iterable[str] = ()) -> None:
    """Copy ``tensors`` into ``network`` (cast to its dtype); every other tensor must be in ``keep`` (dysen's own)."""
    state = network.state_dict()
    left = set(state) - set(tensors) - set(keep)
    if left:
        raise ConversionError(f"no weights for {sorted(left)[:10]}: the key map does not cover the network")
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor.to(state[name].dtype))


def check_schedule(state: dict[str, torch.Tensor], config: DysenVDMConfig, source: str) -> None:
    """The file's β (LatentDiffusion's ``betas`` buffer) must be the preset's schedule."""
    betas = state.get("betas")
    if betas is None:
        return
    expected = make_betas(config.diffusion).double()
    if betas.shape != expected.shape or not torch.allclose(betas.double(), expected, rtol=1e-5, atol=1e-8):
        raise ConversionError(
            f"{source}: its noise schedule (betas {betas[0].item():.6g} .. {betas[-1].item():.6g}) is not the "
            f"preset's ({expected[0].item():.6g} .. {expected[-1].item():.6g}): wrong --kind or preset?"
        )


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class T2VParts:
    """The architecture of each network of a text-to-video conversion (defaults: LVDM's released model)."""

    config: DysenVDMConfig = field(default_factory=lambda: load_config("lvdm-t2v"))
    vae: dict[str, Any] = field(default_factory=lambda: dict(SD_VAE_CONFIG))  # diffusers AutoencoderKL kwargs
    clip: dict[str, Any] = field(default_factory=lambda: dict(CLIP_L_TEXT_CONFIG))  # transformers CLIPTextConfig
    tokenizer: str = "openai/clip-vit-large-patch14"  # the CLIP tokenizer, by reference (LVDM's files hold none)


def t2v_networks(parts: T2VParts) -> dict[str, nn.Module]:
    """The networks a text-to-video conversion fills, built in the current default device (``meta`` for counts)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    return {
        "unet": UNet3D(parts.config.unet),
        "rgtrm": RGTrm(parts.config.rgtrm),
        "vae": AutoencoderKL(**parts.vae),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**parts.clip)),
    }


def t2v_slots(networks: dict[str, nn.Module]) -> dict[str, Slot]:
    """Every tensor of LVDM's text-to-video checkpoint, by its name in the file, and where it goes."""
    return {
        **slots("unet", UNET_PREFIX, unet_key_map(networks["unet"]), networks["unet"]),  # type: ignore[arg-type]
        **slots("vae", VAE_PREFIX, vae_key_map(networks["vae"]), networks["vae"]),
        **slots("text_encoder", CLIP_OWNER, clip_key_map(networks["text_encoder"]), networks["text_encoder"]),
    }


T2V_DROPS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "schedule": ("LatentDiffusion's noise-schedule buffers (betas checked; dysen computes them)",
                 lambda name: name in SCHEDULE_BUFFERS),
    "clip position_ids": ("CLIP's position ids 0..76 (checked; transformers 5 does not save them)",
                          lambda name: name == CLIP_OWNER + CLIP_POSITION_IDS),
}  # fmt: skip


def convert_t2v(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    parts: T2VParts | None = None,
    trust: bool = False,
    drop: Iterable[str] = (),
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert LVDM's ``t2v.ckpt`` into the pipeline folder ``out``; returns the report written there."""
    parts = parts or T2VParts()
    source = Path(checkpoint)
    state = read_checkpoint(source, trust=trust, warn=warn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        networks = t2v_networks(parts)
    found = match(state, t2v_slots(networks), T2V_DROPS, drop)
    found.raise_problems(str(source), out)
    check_schedule(state, parts.config, str(source))
    position_ids = state.get(CLIP_OWNER + CLIP_POSITION_IDS)
    if position_ids is not None and not torch.equal(position_ids.flatten().long(), torch.arange(position_ids.numel())):
        raise ConversionError(f"{source}: CLIP's position_ids are not 0..{position_ids.numel() - 1}")
    unet = networks["unet"]
    lvdm_names = set(found.placed.get("unet", {}))
    load_into(unet, found.placed.get("unet", {}), keep=set(unet.state_dict()) - lvdm_names)
    load_into(networks["vae"], found.placed.get("vae", {}))
    load_into(networks["text_encoder"], found.placed.get("text_encoder", {}))

    config = dataclasses.replace(
        parts.config,
        vae=dataclasses.replace(parts.config.vae, kind="frame", frame=dataclasses.replace(
            parts.config.vae.frame, source="vae", subfolder=None, latent_channels=int(parts.vae["latent_channels"]),
            downsample=2 ** (len(parts.vae["block_out_channels"]) - 1),
        )),
        text_encoder=dataclasses.replace(
            parts.config.text_encoder, kind="clip", model="text_encoder", tokenizer=parts.tokenizer,
            dim=int(parts.clip["hidden_size"]),
        ),
    )  # fmt: skip
    report = _report(source, "t2v", found, {name: net for name, net in networks.items() if name != "rgtrm"}, seed)
    with staged_dir(out) as staging:
        unet.save_pretrained(staging / "unet")  # type: ignore[operator]
        networks["rgtrm"].save_pretrained(staging / "rgtrm")  # type: ignore[operator]
        networks["vae"].save_pretrained(staging / "vae", safe_serialization=True)  # type: ignore[operator]
        networks["text_encoder"].save_pretrained(staging / "text_encoder", safe_serialization=True)  # type: ignore
        _write_index(staging, config, report)
    return report


def _report(source: Path, kind: str, found: Matched, networks: dict[str, nn.Module], seed: int) -> dict[str, Any]:
    return {
        "source": source.name,
        "sha256": file_digest(source),
        "kind": kind,
        "converted": {name: len(found.placed.get(name, {})) for name in networks},
        "parameters": {name: sum(t.numel() for t in found.placed.get(name, {}).values()) for name in networks},
        "dropped": {group: len(names) for group, names in sorted(found.dropped.items())},
        "dropped_names": {group: names for group, names in sorted(found.dropped.items())},
        "fresh": "the DSG path (zero-initialised output) and the RGTrm, seeded",
        "seed": seed,
    }


def _write_index(staging: Path, config: DysenVDMConfig, report: dict[str, Any]) -> None:
    from dysen.pipeline import INDEX_NAME, DysenVDMPipeline

    index = {"_class": DysenVDMPipeline.__name__, "dysen_version": __version__, "config": config_to_data(config)}
    (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (staging / CONVERSION_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


# -- the short-video autoencoder -------------------------------------------------------------------------------------

LVDM_LATENT_STATS: dict[str, tuple[float, float]] = {
    "sky": (0.33422927, 1.4606637),
    "taichi": (0.175733933, 0.03291025),
    "ucf101": (0.220142075, 0.5837740898),
}
"""LVDM's per-dataset latent normalisation z' = scale · (z + shift), (scale, shift), from its
``configs/lvdm_short/{sky,taichi,ucf}.yaml`` (the checkpoints do not hold them)."""


def lvdm_ae_config(scale: float, shift: float) -> KLVideoAutoencoderConfig:
    """LVDM's 3D AE (``KLVideoAutoencoderConfig`` defaults, ``arch="lvdm"``) normalising latents by LVDM's
    ``scale · (z + shift)``, i.e. dysen's ``(z − shift_factor) · scaling_factor`` with shift_factor = −shift."""
    return KLVideoAutoencoderConfig(arch="lvdm", scaling_factor=scale, shift_factor=-shift)


def ae_slots_and_drops(
    ae: KLVideoAutoencoder, prefix: str
) -> tuple[dict[str, Slot], dict[str, str], dict[str, tuple[str, Callable[[str], bool]]]]:
    """The file names of the AE's tensors under ``prefix``, LVDM's alias names (alias -> original), and the groups
    an AE file holds besides: the aliases and the training loss's own weights."""
    aliases = {prefix + alias: prefix + original for alias, original in ae_aliases(ae).items()}
    drops: dict[str, tuple[str, Callable[[str], bool]]] = {
        "alias": ("a second name of a conv kernel (checked equal to it)", lambda name: name in aliases),
        "loss": ("the AE training loss's own weights (LPIPS, discriminator, logvar)",
                 lambda name: name.startswith(prefix + "loss.")),
    }  # fmt: skip
    return slots("vae", prefix, ae_key_map(ae), ae), aliases, drops


def check_aliases(state: dict[str, torch.Tensor], aliases: dict[str, str], source: str) -> None:
    """Each alias in the file must hold exactly its original's values."""
    differ = [a for a, o in aliases.items() if a in state and o in state and not torch.equal(state[a], state[o])]
    if differ:
        raise ConversionError(f"{source}: these second names differ from the weights they repeat: {differ}")


def convert_short_ae(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: KLVideoAutoencoderConfig,
    trust: bool = False,
    drop: Iterable[str] = (),
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert LVDM's ``ae_*.ckpt`` into ``out/vae`` (a ``KLVideoAutoencoder`` folder with ``config``'s scale and
    shift; ``dysen train-vdm --vae out`` reads it) + ``out/conversion.json``; returns the report."""
    if config.arch != "lvdm":
        raise ConversionError("the short-video AE converts into arch 'lvdm' only")
    source = Path(checkpoint)
    state = read_checkpoint(source, trust=trust, warn=warn)
    ae = KLVideoAutoencoder(config)
    expected, aliases, drops = ae_slots_and_drops(ae, "")
    found = match(state, expected, drops, drop)
    found.raise_problems(str(source), out)
    check_aliases(state, aliases, str(source))
    load_into(ae, found.placed.get("vae", {}))
    report = _report(source, "short-ae", found, {"vae": ae}, seed=0)
    report["fresh"] = "nothing"
    report["latent_normalisation"] = {"scaling_factor": config.scaling_factor, "shift_factor": config.shift_factor}
    with staged_dir(out) as staging:
        ae.save_pretrained(staging / "vae")
        (staging / CONVERSION_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


# -- the short-video models -------------------------------------------------------------------------------------------


def short_unet_drops(aliases: dict[str, str]) -> dict[str, tuple[str, Callable[[str], bool]]]:
    """What a short ``LatentDiffusion`` file holds besides its networks: the schedule, the EMA copy, the AE's
    second names of its conv kernels."""
    return {
        "schedule": T2V_DROPS["schedule"],
        "ema": ("the EMA copy (model_ema.*: dot-less names, decay, num_updates), unused by LVDM's sampling scripts",
                lambda name: name.startswith("model_ema.")),
        "alias": ("a second name of an AE conv kernel (checked equal to it)", lambda name: name in aliases),
    }  # fmt: skip


def convert_short_unet(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: DysenVDMConfig,
    trust: bool = False,
    drop: Iterable[str] = (),
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert LVDM's ``short_*.ckpt`` (UNet under ``model.diffusion_model.``, its 3D AE under
    ``first_stage_model.``) into the pipeline folder ``out``, with ``config``'s latent scale/shift; returns the
    report written there."""
    if config.unet.arch != "lvdm-short" or config.vae.kind != "kl3d" or config.vae.kl3d.arch != "lvdm":
        raise ConversionError("short-unet converts into a config with unet.arch lvdm-short and a kl3d AE of arch lvdm")
    source = Path(checkpoint)
    state = read_checkpoint(source, trust=trust, warn=warn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, rgtrm, ae = UNet3D(config.unet), RGTrm(config.rgtrm), KLVideoAutoencoder(config.vae.kl3d)
    ae_slots, aliases, _ = ae_slots_and_drops(ae, VAE_PREFIX)
    expected = {**slots("unet", UNET_PREFIX, unet_key_map(unet), unet), **ae_slots}
    found = match(state, expected, short_unet_drops(aliases), drop)
    found.raise_problems(str(source), out)
    check_schedule(state, config, str(source))
    check_aliases(state, aliases, str(source))
    placed = found.placed.get("unet", {})
    load_into(unet, placed, keep=set(unet.state_dict()) - set(placed))
    load_into(ae, found.placed.get("vae", {}))
    report = _report(source, "short-unet", found, {"unet": unet, "vae": ae}, seed)
    report["latent_normalisation"] = {
        "scaling_factor": ae.config.scaling_factor,
        "shift_factor": ae.config.shift_factor,
    }
    with staged_dir(out) as staging:
        unet.save_pretrained(staging / "unet")
        rgtrm.save_pretrained(staging / "rgtrm")
        ae.save_pretrained(staging / "vae")
        _write_index(staging, config, report)
    return report
