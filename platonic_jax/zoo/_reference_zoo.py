"""The PRH reference study's model lists, with their Flax-loadable Hugging Face ids.

The reference (minyoungg/platonic-rep, `tasks.get_models('val')`) measures 17
vision transformers (timm names) and 12 language models (Hugging Face ids) on
1024 WIT image-caption pairs. This module names each of them and, where the
same weights exist on the Hugging Face hub in a layout a transformers 4.57
Flax class reads, the id to pass to `platonic_jax.zoo.load_hf_model`. For
users with hub access and the memory for the model; nothing here runs in CI.

Where there is no Flax path (`flax_id is None`), the reason says why; the
usual route is to extract features with the reference's PyTorch
`extract_features.py` and bring them in as saved features (the study's
bring-your-own-features loader reads `[N, L, D]` arrays).

Caveats that hold for every entry with a Flax id:
- timm's vision features are the block outputs (`blocks.{i}.add_1`) without
  the embedding layer: extract with `include_embeddings=False` to match.
- The Hugging Face ports of timm/DINOv2/CLIP weights are the same weights but
  preprocess with their own image processors (resolution, crop, mean/std), so
  features agree with timm's only up to those differences.
- Checkpoints stored only as sharded safetensors cannot be read by Flax
  `from_pretrained` in transformers 4.57 (see `platonic_jax.zoo._hf`); sharded
  PyTorch `.bin` checkpoints need torch installed. The larger language models
  here are published sharded, so they need torch (or a local Flax re-save).
- The hub ids were chosen from the reference's names and the hub's model
  cards; they were not downloaded here (no network), so their file layouts
  were not checked on this machine.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ReferenceModel:
  """One model of the reference study.

  Attributes:
    reference_name: the name the reference uses (timm name or hub id).
    modality: `'vision'` or `'language'`.
    family: e.g. `'augreg'`, `'mae'`, `'dinov2'`, `'clip'`, `'clip_in12k'`,
      `'bloomz'`, `'open_llama'`, `'llama'`.
    flax_id: hub id loadable by `load_hf_model` (with `tower`), or None.
    tower: `'vision'` for CLIP checkpoints, else None.
    pooling: `'cls'` (vision, every block's CLS token) or `'mean'` (language,
      attention-masked mean of every hidden state), as the reference pools.
    note: why there is no Flax path, or what differs from the reference.
  """
  reference_name: str
  modality: str
  family: str
  flax_id: str | None
  tower: str | None = None
  pooling: str = "cls"
  note: str = ""


_NO_TIMM_FLAX = ("timm-only weights (no transformers config); no Flax class reads them: extract "
                 "with the reference's PyTorch code and bring the features")
_MAE = ("transformers has no Flax ViT-MAE class; the encoder has ViT's layout but mapping its "
        "weights into FlaxViTModel is unverified: extract with PyTorch and bring the features")
_CLIP_IN12K = ("ImageNet-12k fine-tune exists only as timm weights: extract with PyTorch and "
               "bring the features")


def _augreg(size: str) -> ReferenceModel:
  return ReferenceModel(f"vit_{size}_patch16_224.augreg_in21k", "vision", "augreg", None,
                        note=_NO_TIMM_FLAX)


def _mae(name: str, hub: str) -> ReferenceModel:
  return ReferenceModel(name, "vision", "mae", None, note=f"{_MAE} (PyTorch weights: {hub})")


def _dinov2(size: str) -> ReferenceModel:
  return ReferenceModel(f"vit_{size}_patch14_dinov2.lvd142m", "vision", "dinov2",
                        f"facebook/dinov2-{size}",
                        note="same weights; timm runs them at 518 px, the HF processor at 224 px")


def _clip(name: str, hub: str) -> ReferenceModel:
  return ReferenceModel(name, "vision", "clip", hub, tower="vision",
                        note="LAION-2B OpenCLIP weights in transformers layout; vision tower")


def _language(name: str, family: str, note: str) -> ReferenceModel:
  return ReferenceModel(name, "language", family, name, pooling="mean", note=note)


_LLAMA_NOTE = "Llama 1 architecture (RoPE base 10000): FlaxLlamaModel runs it"

REFERENCE_VISION_MODELS: tuple[ReferenceModel, ...] = (
    _augreg("tiny"), _augreg("small"), _augreg("base"), _augreg("large"),
    _mae("vit_base_patch16_224.mae", "facebook/vit-mae-base"),
    _mae("vit_large_patch16_224.mae", "facebook/vit-mae-large"),
    _mae("vit_huge_patch14_224.mae", "facebook/vit-mae-huge"),
    _dinov2("small"), _dinov2("base"), _dinov2("large"), _dinov2("giant"),
    _clip("vit_base_patch16_clip_224.laion2b", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
    _clip("vit_large_patch14_clip_224.laion2b", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
    _clip("vit_huge_patch14_clip_224.laion2b", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    ReferenceModel("vit_base_patch16_clip_224.laion2b_ft_in12k", "vision", "clip_in12k", None,
                   note=_CLIP_IN12K),
    ReferenceModel("vit_large_patch14_clip_224.laion2b_ft_in12k", "vision", "clip_in12k", None,
                   note=_CLIP_IN12K),
    ReferenceModel("vit_huge_patch14_clip_224.laion2b_ft_in12k", "vision", "clip_in12k", None,
                   note=_CLIP_IN12K),
)

REFERENCE_LANGUAGE_MODELS: tuple[ReferenceModel, ...] = (
    _language("bigscience/bloomz-560m", "bloomz", "FlaxBloomModel (ALiBi)"),
    _language("bigscience/bloomz-1b1", "bloomz", "FlaxBloomModel (ALiBi)"),
    _language("bigscience/bloomz-1b7", "bloomz", "FlaxBloomModel (ALiBi)"),
    _language("bigscience/bloomz-3b", "bloomz", "FlaxBloomModel (ALiBi)"),
    _language("bigscience/bloomz-7b1", "bloomz", "FlaxBloomModel (ALiBi)"),
    _language("openlm-research/open_llama_3b", "open_llama", _LLAMA_NOTE),
    _language("openlm-research/open_llama_7b", "open_llama", _LLAMA_NOTE),
    _language("openlm-research/open_llama_13b", "open_llama", _LLAMA_NOTE),
    _language("huggyllama/llama-7b", "llama", _LLAMA_NOTE),
    _language("huggyllama/llama-13b", "llama", _LLAMA_NOTE),
    _language("huggyllama/llama-30b", "llama", _LLAMA_NOTE),
    _language("huggyllama/llama-65b", "llama", _LLAMA_NOTE),
)


def reference_zoo(modality: str = "all") -> tuple[ReferenceModel, ...]:
  """The reference study's models (its `val` set), vision first.

  Args:
    modality: `'all'`, `'vision'` (17 models) or `'language'` (12 models).

  Returns:
    A tuple of `ReferenceModel`.

  Raises:
    ValueError: unknown modality.
  """
  if modality == "vision":
    return REFERENCE_VISION_MODELS
  if modality == "language":
    return REFERENCE_LANGUAGE_MODELS
  if modality == "all":
    return REFERENCE_VISION_MODELS + REFERENCE_LANGUAGE_MODELS
  raise ValueError(f"modality must be 'all', 'vision' or 'language', got {modality!r}")
