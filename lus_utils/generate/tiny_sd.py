"""A tiny Stable-Diffusion pipeline built offline from configs, with the real CLIP tokenizer.

Tests and the smoke profile need a `StableDiffusionPipeline` without downloading weights. Everything
here is built locally: a small `UNet2DConditionModel`, `AutoencoderKL` and `CLIPTextModel` with random
(seeded) weights, and the real CLIP BPE tokenizer, whose `vocab.json` and `merges.txt` are written from
the BPE file that open_clip ships (`bpe_simple_vocab_16e6.txt.gz`), built the way CLIP's own tokenizer
builds its vocabulary. Its images are noise: it exercises the code paths, it says nothing about the data.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from lus_utils.paths import cache_dir
from lus_utils.provenance import atomic_dir, write_text_atomic

CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
# CLIP keeps the first 49152 - 256 - 2 merges of the BPE file (after its header line).
N_MERGES = 49152 - 256 - 2


def clip_bpe_path() -> Path:
    """open_clip's copy of CLIP's BPE merges (shipped inside the open_clip_torch wheel)."""
    try:  # lazy: open_clip (and torch's vision stack it loads) only for its BPE file, with a clear error if absent
        from open_clip.tokenizer import default_bpe  # lazy: open_clip only for the offline test pipeline
    except ImportError as err:
        raise ImportError("the offline CLIP tokenizer is built from open_clip's BPE file: "
                          "pip install open_clip_torch") from err
    path = Path(default_bpe())
    if not path.is_file():
        raise FileNotFoundError(f"open_clip's BPE file {path} is missing; reinstall open_clip_torch")
    return path


def clip_vocab_and_merges(bpe_path: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary (token -> id) and merge list, as `clip.simple_tokenizer.SimpleTokenizer` builds them."""
    from open_clip.tokenizer import bytes_to_unicode  # lazy, as in clip_bpe_path

    lines = gzip.open(bpe_path or clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1:N_MERGES + 1]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += [START_TOKEN, END_TOKEN]
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary built from {bpe_path} has {len(vocab)} tokens, expected "
                         f"{CLIP_VOCAB_SIZE}: not CLIP's BPE file")
    return {token: i for i, token in enumerate(vocab)}, merges


def write_clip_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` (the files `transformers.CLIPTokenizer` reads) into `folder`."""
    folder = Path(folder)
    vocab, merges = clip_vocab_and_merges()
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    write_text_atomic(vocab_file, json.dumps(vocab, ensure_ascii=False))
    # CLIPTokenizer skips the first line of merges.txt (a version header), as CLIP skips the BPE file's.
    write_text_atomic(merges_file, "#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


def clip_tokenizer(folder: Path | None = None):
    """The real CLIP tokenizer, from files written once into `folder` (default: the study's cache)."""
    folder = Path(folder) if folder else cache_dir() / "clip_tokenizer"
    if not ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
        with atomic_dir(folder) as tmp:
            write_clip_tokenizer_files(tmp)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=CLIP_CONTEXT_LENGTH)


def text_encoder_config(hidden_size: int = 32, layers: int = 2, heads: int = 2):
    """A small CLIP text transformer over CLIP's real vocabulary (ids 49406/49407 start and end)."""
    return CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          max_position_embeddings=CLIP_CONTEXT_LENGTH, bos_token_id=CLIP_VOCAB_SIZE - 2,
                          eos_token_id=CLIP_VOCAB_SIZE - 1, pad_token_id=CLIP_VOCAB_SIZE - 1)


def unet_config(sample_size: int, channels: tuple[int, ...], cross_attention_dim: int,
                head_dim: int = 8, layers_per_block: int = 1) -> dict:
    """A `UNet2DConditionModel` config: plain blocks at full size, cross-attention below it."""
    n = len(channels)
    return dict(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=layers_per_block,
                block_out_channels=tuple(channels),
                down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
                up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
                cross_attention_dim=cross_attention_dim, attention_head_dim=head_dim,
                norm_num_groups=min(8, min(channels)))


def vae_config(channels: tuple[int, ...]) -> dict:
    """An `AutoencoderKL` config: 4 latent channels, downsampling by 2 ** (len(channels) - 1)."""
    n = len(channels)
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(channels),
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                layers_per_block=1, norm_num_groups=min(8, min(channels)), sample_size=32)


def scheduler_config() -> dict:
    """Stable Diffusion v1's noise schedule (scaled-linear betas, epsilon prediction)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, steps_offset=1, prediction_type="epsilon")


def build_pipeline(unet, vae, text_encoder, tokenizer):
    """A `StableDiffusionPipeline` from components, without safety checker (no weights to load)."""
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDPMScheduler(**scheduler_config()), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline(seed: int = 0, resolution: int = 32, tokenizer_dir: Path | None = None):
    """A seeded tiny `StableDiffusionPipeline` producing `resolution`-pixel images (noise: untrained)."""
    if resolution % 2 or resolution < 16:
        raise ValueError(f"tiny pipeline resolution must be even and >= 16, got {resolution}")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_encoder_config(hidden_size=32, layers=2, heads=2))
    vae = AutoencoderKL(**vae_config((8, 16)))
    unet = UNet2DConditionModel(**unet_config(resolution // 2, (16, 32), cross_attention_dim=32))
    for model in (text_encoder, vae, unet):
        model.eval()
    return build_pipeline(unet, vae, text_encoder, clip_tokenizer(tokenizer_dir))
