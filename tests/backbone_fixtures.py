"""Tiny random backbones saved as local diffusers folders (no network): a Wan and a ModelScope-style UNet3D.

Each is built from the real diffusers/transformers classes at a few thousand parameters, with an offline
tokenizer, and written the way diffusers writes a pipeline (``model_index.json`` + one subfolder per component).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ("a", "red", "circle", "moves", "right", "blue", "square", "jumps", "the", "left")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def t5_tokenizer():
    """A T5 tokenizer (Unigram over a few words and the letters) built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", *(f"▁{w}" for w in WORDS), *(f"▁{c}" for c in LETTERS), *LETTERS]
    tok = Tokenizer(models.Unigram([(piece, -1.0) for piece in dict.fromkeys(pieces)], unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0)


def clip_tokenizer(folder: Path, max_length: int = 8):
    """A CLIP BPE tokenizer over the letters (vocab.json + merges.txt written to ``folder``)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*LETTERS, *(c + "</w>" for c in LETTERS)]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def wan_components(seed: int = 0) -> dict:
    """The components of a tiny Wan 2.1 (causal 4x temporal, 8x spatial VAE; patch (1, 2, 2))."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    text_config = UMT5Config(
        vocab_size=64, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
        relative_attention_num_buckets=4, relative_attention_max_distance=8,
    )  # fmt: skip
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 2.0, 0.5, 1.0],
    )  # fmt: skip
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=4,
        text_dim=8, freq_dim=8, ffn_dim=16, num_layers=1, rope_max_seq_len=32,
    )  # fmt: skip
    return {
        "tokenizer": t5_tokenizer(),
        "text_encoder": UMT5EncoderModel(text_config),
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "transformer": transformer,
    }


def save_wan(folder: Path, seed: int = 0) -> Path:
    """A tiny Wan written by a real ``WanPipeline.save_pretrained`` (the exact diffusers format)."""
    from diffusers import WanPipeline

    WanPipeline(**wan_components(seed)).save_pretrained(folder)
    return folder


def unet3d_components(folder: Path, seed: int = 0, text_tokens: int = 8, channels: tuple[int, int] = (4, 4)) -> dict:
    """The components of a tiny ModelScope-style model (per-frame 2x VAE, CLIP text of ``text_tokens``, DDIM; its two
    levels ``channels`` wide)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(folder / "_tokenizer_files", text_tokens)
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=text_tokens, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[4, 4], layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=16,
    )  # fmt: skip
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=channels, layers_per_block=1,
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=2,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": CLIPTextModel(text_config),
        "vae": vae,
        "scheduler": scheduler,
        "unet": unet,
    }


def save_unet3d(folder: Path, seed: int = 0, text_tokens: int = 8, channels: tuple[int, int] = (4, 4)) -> Path:
    """A tiny ModelScope-style folder in the format ``TextToVideoSDPipeline.save_pretrained`` writes (that pipeline
    is deprecated in diffusers, so the index is written here: the same keys, ``[library, class]`` per component)."""
    components = unet3d_components(folder, seed, text_tokens, channels)
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1"}
    for name, component in components.items():
        component.save_pretrained(folder / name)
        library = "transformers" if type(component).__module__.startswith("transformers") else "diffusers"
        index[name] = [library, type(component).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder
