"""Where each tensor of LVDM's released checkpoints goes in dysen, and the shape it has there.

LVDM (He et al. 2022) saves its whole ``LatentDiffusion`` (``research/backbones.md`` §2): the UNet under
``model.diffusion_model.``, the autoencoder under ``first_stage_model.``, CLIP (text-to-video) under
``cond_stage_model.transformer.``. Each map below is built from the dysen network it fills (never from a list of
LVDM's names), as ``{dysen name: (LVDM name, LVDM shape)}``; a tensor with no entry is dysen's own (the
zero-initialised DSG path). LVDM's per-frame Conv3d kernels ``[o, i, 1, k, k]`` and its 1x1 Conv3d/Conv1d
projections are dysen's Conv2d ``[o, i, k, k]`` and Linear ``[o, i]``: same values, fewer unit dimensions.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from dysen.models.lvdm_blocks import LVDMSTAttention, LVDMTransformer
from dysen.models.unet3d import UNet3D

KeyMap = dict[str, tuple[str, tuple[int, ...]]]
"""dysen tensor name -> (LVDM tensor name, its shape in LVDM's file)."""

_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "emb": "emb_layers.1", "norm2": "out_layers.0",
        "conv2": "out_layers.3", "skip": "skip_connection"}  # fmt: skip
_ATTN = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0",
         "rel_k.table": "relative_position_k.embeddings_table",
         "rel_v.table": "relative_position_v.embeddings_table"}  # fmt: skip
_ST_BLOCK = {"norm_self": "norm1", "attn_self": "attn1", "norm_time1": "norm4", "attn_time1": "attn1_tmp",
             "norm_text": "norm2", "attn_text": "attn2", "norm_time2": "norm5", "attn_time2": "attn2_tmp",
             "norm_ff": "norm3", "ff.proj_in": "ff.net.0.proj", "ff.proj_out": "ff.net.2"}  # fmt: skip
_ST_ATTENTION = {"norm_space": "norm_s", "qkv_space": "qkv_s", "out_space": "proj_out_s", "norm_time": "norm_t",
                 "qkv_time": "qkv_t", "out_time": "proj_out_t", "rel_k.table": "relative_position_k.embeddings_table",
                 "rel_v.table": "relative_position_v.embeddings_table"}  # fmt: skip


def _local(name: str, table: dict[str, str]) -> str | None:
    """``name`` with its longest leading module path found in ``table`` renamed (None: no entry)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            return ".".join([table[head], *parts[cut:]])
    return None


def _attention_block(name: str, block: nn.Module) -> str | None:
    """The LVDM name of parameter ``name`` of an LVDM-layout attention block (None: dysen's DSG path)."""
    if isinstance(block, LVDMSTAttention):
        return _local(name, _ST_ATTENTION)
    if not isinstance(block, LVDMTransformer):
        raise TypeError(f"{type(block).__name__} has no LVDM counterpart: build the UNet with an lvdm arch")
    if name.split(".")[0] in ("norm", "proj_in", "proj_out"):
        return name
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    sub = _local(match.group(2), _ST_BLOCK) if match else None
    if sub is None:
        return None
    head, _, rest = sub.partition(".")
    if head.startswith("attn"):
        attn = _local(rest, _ATTN)
        return None if attn is None else f"transformer_blocks.{match.group(1)}.{head}.{attn}"  # type: ignore[union-attr]
    return f"transformer_blocks.{match.group(1)}.{sub}"  # type: ignore[union-attr]


def _lvdm_shape(module: nn.Module, shape: torch.Size, kind: str) -> tuple[int, ...]:
    """The shape LVDM stores a dysen tensor in: a Conv2d kernel gains a unit time axis (Conv3d); the transformer's
    1x1 projections are Conv3d kernels, the short models' ``qkv``/``out`` Conv1d kernels."""
    if isinstance(module, nn.Conv2d) and len(shape) == 4:
        return (shape[0], shape[1], 1, shape[2], shape[3])
    if isinstance(module, nn.Linear) and len(shape) == 2 and kind in ("conv3d", "conv1d"):
        return (*shape, 1, 1, 1) if kind == "conv3d" else (*shape, 1)
    return tuple(shape)


def unet_key_map(unet: UNet3D) -> KeyMap:
    """Every LVDM tensor of ``unet`` (``arch`` lvdm-t2v or lvdm-short) with its name under LVDM's
    ``UNetModel`` (no ``model.diffusion_model.`` prefix) and shape there."""
    if unet.config.arch == "dysen":
        raise TypeError("a UNet3D with arch 'dysen' has no LVDM layout: use arch lvdm-t2v or lvdm-short")
    places: dict[str, str] = {"time_embed.mlp.0": "time_embed.0", "time_embed.mlp.2": "time_embed.2",
                              "conv_in": "input_blocks.0.0", "norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip
    paths: list[tuple[str, nn.Module, str]] = []  # (dysen prefix, block, LVDM prefix)
    for i, block in enumerate(unet.down):
        paths.append((f"down.{i}", block, f"input_blocks.{i + 1}"))
    for i, block in enumerate(unet.up):
        paths.append((f"up.{i}", block, f"output_blocks.{i}"))
    for prefix, block, target in paths:
        index = 0
        for part in ("res", "attn", "resample"):
            if getattr(block, part) is not None:
                places[f"{prefix}.{part}"] = f"{target}.{index}"
                index += 1
        if block.res is None:  # a down block of its own: LVDM's Downsample holds its conv as ``op``
            places[f"{prefix}.resample.conv"] = f"{target}.0.op"
    places.update({"mid.0.res": "middle_block.0", "mid.0.attn": "middle_block.1", "mid.1.res": "middle_block.2"})

    modules = dict(unet.named_modules())
    found: KeyMap = {}
    for name, tensor in unet.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        target, kind = _place(name, places, modules)
        if target is not None:
            found[name] = (target, _lvdm_shape(modules[owner], tensor.shape, kind))
    return found


def _place(name: str, places: dict[str, str], modules: dict[str, nn.Module]) -> tuple[str | None, str]:
    """LVDM's name for ``name`` and how its kernel is stored ("conv3d", "conv1d" or "plain")."""
    local = _local(name, places)
    if local is None:
        return None, "plain"
    parts = name.split(".")
    block_path = ".".join(parts[:3]) if parts[0] in ("down", "up", "mid") else ""
    block = modules.get(block_path)
    kind = parts[2] if block_path else ""
    rest = ".".join(parts[3:])
    if kind == "res":
        sub = _local(rest, _RES)
        return (None if sub is None else f"{places[block_path]}.{sub}"), "plain"
    if kind == "attn":
        sub = _attention_block(rest, block)  # type: ignore[arg-type]
        if sub is None:
            return None, "plain"
        head = sub.split(".")[0]
        if isinstance(block, LVDMTransformer) and head in ("proj_in", "proj_out"):
            return f"{places[block_path]}.{sub}", "conv3d"
        if isinstance(block, LVDMSTAttention) and head in ("qkv_s", "qkv_t", "proj_out_s", "proj_out_t"):
            return f"{places[block_path]}.{sub}", "conv1d"
        return f"{places[block_path]}.{sub}", "plain"
    return local, "plain"


_VAE_RULES = (  # diffusers AutoencoderKL name -> LDM's (``first_stage_model.``), applied in order
    (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.", r"\1.mid.attn_1.\2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", "UP{\\1}.block.\\2."),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", "UP{\\1}.upsample."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
)


def vae_key_map(vae: nn.Module) -> KeyMap:
    """Every tensor of a diffusers ``AutoencoderKL`` with its name in LDM's ``AutoencoderKL`` (LVDM's text-to-video
    ``first_stage_model``, without the prefix) and shape there: the decoder's levels are numbered the other way
    round, and the mid-block attention's q/k/v/out are 1x1 Conv2d kernels."""
    levels = len(vae.decoder.up_blocks)
    found: KeyMap = {}
    for name, tensor in vae.state_dict().items():
        target = name
        for pattern, replacement in _VAE_RULES:
            target = re.sub(pattern, replacement, target)
        target = re.sub(r"^UP\{(\d+)\}", lambda m: f"decoder.up.{levels - 1 - int(m[1])}", target)
        attention = re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", target) is not None
        found[name] = (target, (*tensor.shape, 1, 1) if attention else tuple(tensor.shape))
    return found


CLIP_PREFIX = "transformer.text_model."
"""Where LVDM's ``FrozenCLIPEmbedder`` keeps transformers' CLIP text model (under ``cond_stage_model.``)."""


def clip_key_map(clip: nn.Module) -> KeyMap:
    """Every tensor of a transformers ``CLIPTextModel`` (version 5: no ``text_model.`` level) with its name under
    LVDM's ``cond_stage_model.`` and shape there. LVDM's file also holds the persistent buffer
    ``…embeddings.position_ids`` [1, 77], which transformers 5 no longer saves (``CLIP_POSITION_IDS``)."""
    return {name: (CLIP_PREFIX + name, tuple(tensor.shape)) for name, tensor in clip.state_dict().items()}


CLIP_POSITION_IDS = CLIP_PREFIX + "embeddings.position_ids"


def ae_key_map(ae: nn.Module) -> KeyMap:
    """Every tensor of a ``KLVideoAutoencoder`` with ``arch="lvdm"`` with its name in LVDM's 3D ``AutoencoderKL``
    (``ae_*.ckpt``: no prefix) and shape there; LVDM's ``quant_conv``s are same-padded convs too (``.conv.``)."""
    return {
        name: (re.sub(r"^(quant_conv|post_quant_conv)\.", r"\1.conv.", name), tuple(tensor.shape))
        for name, tensor in ae.state_dict().items()
    }


def ae_aliases(ae: nn.Module) -> dict[str, str]:
    """LVDM's second names of one weight: each same-padded conv also stores its kernel as ``<conv>.weight`` beside
    ``<conv>.conv.weight`` (LVDM name -> the LVDM name it repeats)."""
    from dysen.models.lvdm_ae import SamePadConv3d

    paths = [path for path, module in ae.named_modules() if isinstance(module, SamePadConv3d)]
    return {f"{path}.weight": f"{path}.conv.weight" for path in [*paths, "quant_conv", "post_quant_conv"]}
