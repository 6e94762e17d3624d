"""Flax NNX encoder families with width and depth knobs, for images and captions.

Every encoder maps a batch to its final representation, `__call__(x) -> [B, D]`
(classification or projection heads belong to the trainer). Images are uint8
`[B, H, W, C]` (scaled to [0, 1] inside; float images are taken as already
scaled); captions are int32 token ids `[B, T]` with 0 = padding.

Each encoder also names its layers: `capture_points` lists, in forward order,
(layer name, submodule path) pairs whose `__call__` output is one layer, and
`token_pooling` says how a `[B, T, D]` token output becomes `[B, D]` ('cls':
token 0; 'mean': mean over the non-padding tokens). `layer_features` (in
`_capture`) reads those outputs with `nnx.capture` without editing the model.
The last layer is always the final representation.

Families (`width` / `depth` meaning; default sizes fit 2-CPU training in minutes):
  mlp          image    hidden units / hidden layers (ReLU)
  cnn          image    channels / 3x3 stride-2 conv layers, then global average
                        pooling and a dense ReLU layer (the Small CNN Zoo shape at depth 3)
  resnet       image    channels / residual blocks (GroupNorm; every second block
                        halves the resolution)
  vit          image    model dim / pre-LN Transformer blocks on patches + CLS token
  bow          caption  model dim / hidden layers of an MLP on the mean token embedding
  transformer  caption  model dim / pre-LN Transformer blocks, mean over tokens
  transformer_cls caption  the same with a CLS token
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

IMAGE = "image"
CAPTION = "caption"


def _scale_image(x: jax.Array) -> Float[Array, "B H W C"]:
  """uint8 (or any integer) pixels to float32 in [0, 1]; floats pass unchanged."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def _check_rank(x: jax.Array, rank: int, what: str) -> None:
  if x.ndim != rank:
    raise ValueError(f"`x` must be {what}, got shape {tuple(x.shape)}.")


def _num_heads(width: int) -> int:
  """Up to 4 heads of at least 16 dims each, dividing `width`."""
  for heads in range(min(4, width // 16), 0, -1):
    if width % heads == 0:
      return heads
  return 1


def _num_groups(channels: int) -> int:
  return math.gcd(channels, 8)


def _default_patch_size(height: int, width: int) -> int:
  """Smallest patch dividing both sides that gives at most a 4 x 4 patch grid."""
  side = math.gcd(height, width)
  for patch in range(1, side + 1):
    if side % patch == 0 and (height // patch) * (width // patch) <= 16:
      return patch
  return side


# ---------------------------------------------------------------------------
# Shared blocks


class DenseBlock(nnx.Module):
  """Linear then ReLU: `[B, Din] -> [B, Dout]`."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.linear(x))


class ConvBlock(nnx.Module):
  """3x3 convolution (SAME padding) then ReLU: `[B, H, W, Cin] -> [B, H/s, W/s, Cout]`."""

  def __init__(self, in_channels: int, out_channels: int, *, strides: int, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_channels, out_channels, (3, 3), strides=strides, padding="SAME",
                         rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.conv(x))


class ResidualBlock(nnx.Module):
  """Two 3x3 conv + GroupNorm layers with a skip: `[B, H, W, C] -> [B, H/s, W/s, C]`."""

  def __init__(self, channels: int, *, strides: int, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels, channels, (3, 3), strides=strides, padding="SAME",
                          use_bias=False, rngs=rngs)
    self.norm1 = nnx.GroupNorm(channels, num_groups=_num_groups(channels), rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
    # Zero-initialised last scale: each block starts as the identity (plus shortcut).
    self.norm2 = nnx.GroupNorm(channels, num_groups=_num_groups(channels),
                               scale_init=nnx.initializers.zeros_init(), rngs=rngs)
    self.shortcut = (nnx.Conv(channels, channels, (1, 1), strides=strides, use_bias=False,
                              rngs=rngs) if strides > 1 else None)

  def __call__(self, x):
    y = jax.nn.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    skip = x if self.shortcut is None else self.shortcut(x)
    return jax.nn.relu(skip + y)


class TransformerBlock(nnx.Module):
  """Pre-LayerNorm self-attention and MLP, both residual: `[B, T, D] -> [B, T, D]`."""

  def __init__(self, width: int, *, mlp_ratio: int, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(width, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(
        num_heads=_num_heads(width), in_features=width, decode=False, keep_rngs=False,
        rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, rngs=rngs)
    self.mlp_in = nnx.Linear(width, mlp_ratio * width, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_ratio * width, width, rngs=rngs)

  def __call__(self, x, mask=None):
    """`mask`: bool `[B, T]`, True at real tokens; padded keys get no attention."""
    attention_mask = None if mask is None else nnx.make_attention_mask(mask, mask)
    x = x + self.attention(self.norm1(x), mask=attention_mask)
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm2(x))))


def _masked_mean(x: Float[Array, "B T D"], mask: jax.Array) -> Float[Array, "B D"]:
  """Mean over the True positions of `mask` `[B, T]`; an all-padding row gives zeros."""
  weights = mask.astype(x.dtype)[..., None]
  return (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


# ---------------------------------------------------------------------------
# Image families


class MLPEncoder(nnx.Module):
  """Flattened pixels through `depth` dense ReLU layers of `width` units; D = width."""

  token_pooling = "mean"

  def __init__(self, image_shape: tuple[int, int, int], *, width: int, depth: int,
               rngs: nnx.Rngs):
    sizes = [math.prod(image_shape)] + [width] * depth
    self.blocks = nnx.List([DenseBlock(i, o, rngs=rngs) for i, o in zip(sizes, sizes[1:])])
    self.capture_points = tuple((f"block_{i}", ("blocks", i)) for i in range(depth))

  def __call__(self, x):
    _check_rank(x, 4, "images [B, H, W, C]")
    x = _scale_image(x).reshape(x.shape[0], -1)
    for block in self.blocks:
      x = block(x)
    return x


class CNNEncoder(nnx.Module):
  """`depth` stride-2 3x3 conv layers of `width` channels, global average pooling,
  one dense ReLU layer; D = width. Layers: each conv (mean over positions), dense."""

  token_pooling = "mean"

  def __init__(self, image_shape: tuple[int, int, int], *, width: int, depth: int,
               rngs: nnx.Rngs):
    channels = [image_shape[-1]] + [width] * depth
    self.blocks = nnx.List([ConvBlock(i, o, strides=2, rngs=rngs)
                            for i, o in zip(channels, channels[1:])])
    self.dense = DenseBlock(width, width, rngs=rngs)
    self.capture_points = (tuple((f"conv_{i}", ("blocks", i)) for i in range(depth))
                           + (("dense", ("dense",)),))

  def __call__(self, x):
    _check_rank(x, 4, "images [B, H, W, C]")
    x = _scale_image(x)
    for block in self.blocks:
      x = block(x)
    return self.dense(x.mean(axis=(1, 2)))


class ResNetEncoder(nnx.Module):
  """A 3x3 stem conv, then `depth` residual blocks of `width` channels (odd-numbered
  blocks stride 2 while the feature map is at least 4 x 4), global average pooling;
  D = width. Layers: stem and each block (mean over positions); the last is the
  final representation."""

  token_pooling = "mean"

  def __init__(self, image_shape: tuple[int, int, int], *, width: int, depth: int,
               rngs: nnx.Rngs):
    self.stem = ConvBlock(image_shape[-1], width, strides=1, rngs=rngs)
    blocks, side = [], min(image_shape[:2])
    for i in range(depth):
      strides = 2 if i % 2 == 1 and side >= 4 else 1
      side = -(-side // strides)
      blocks.append(ResidualBlock(width, strides=strides, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.capture_points = ((("stem", ("stem",)),)
                           + tuple((f"block_{i}", ("blocks", i)) for i in range(depth)))

  def __call__(self, x):
    _check_rank(x, 4, "images [B, H, W, C]")
    x = self.stem(_scale_image(x))
    for block in self.blocks:
      x = block(x)
    return x.mean(axis=(1, 2))


class PatchEmbedding(nnx.Module):
  """Non-overlapping patches to tokens, a CLS token first, learned positions:
  `[B, H, W, C] -> [B, 1 + HW/p^2, D]`."""

  def __init__(self, image_shape: tuple[int, int, int], width: int, patch_size: int, *,
               rngs: nnx.Rngs):
    height, wide, channels = image_shape
    if height % patch_size or wide % patch_size:
      raise ValueError(f"`patch_size` {patch_size} must divide the image sides {height}x{wide}.")
    num_tokens = 1 + (height // patch_size) * (wide // patch_size)
    self.patches = nnx.Conv(channels, width, (patch_size, patch_size), strides=patch_size,
                            padding="VALID", rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.cls = nnx.Param(init(rngs.params(), (1, 1, width)))
    self.positions = nnx.Param(init(rngs.params(), (1, num_tokens, width)))

  def __call__(self, x):
    tokens = self.patches(x)
    tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
    cls = jnp.broadcast_to(self.cls[...], (tokens.shape[0], 1, tokens.shape[-1]))
    return jnp.concatenate([cls, tokens], axis=1) + self.positions[...]


class ViTEncoder(nnx.Module):
  """Vision Transformer: patch tokens plus a CLS token through `depth` pre-LN blocks of
  model dim `width`; the final representation is the LayerNormed CLS token; D = width.
  Layers: each block's CLS token, then the final representation."""

  token_pooling = "cls"

  def __init__(self, image_shape: tuple[int, int, int], *, width: int, depth: int,
               rngs: nnx.Rngs, patch_size: int | None = None, mlp_ratio: int = 2):
    patch_size = patch_size or _default_patch_size(*image_shape[:2])
    self.embedding = PatchEmbedding(image_shape, width, patch_size, rngs=rngs)
    self.blocks = nnx.List([TransformerBlock(width, mlp_ratio=mlp_ratio, rngs=rngs)
                            for _ in range(depth)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.capture_points = (tuple((f"block_{i}", ("blocks", i)) for i in range(depth))
                           + (("final", ()),))

  def __call__(self, x):
    _check_rank(x, 4, "images [B, H, W, C]")
    x = self.embedding(_scale_image(x))
    for block in self.blocks:
      x = block(x)
    return self.norm(x[:, 0])


# ---------------------------------------------------------------------------
# Caption families


def _check_tokens(x: jax.Array) -> None:
  _check_rank(x, 2, "token ids [B, T]")
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"`x` must hold integer token ids, got dtype {x.dtype}.")


class BagEmbedding(nnx.Module):
  """Mean embedding of the non-padding tokens: `[B, T] -> [B, D]`."""

  def __init__(self, vocab_size: int, width: int, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs)

  def __call__(self, tokens):
    return _masked_mean(self.embed(tokens), tokens != 0)


class BagOfTokensEncoder(nnx.Module):
  """Bag of tokens: mean token embedding (padding excluded), then `depth` dense ReLU
  layers of `width` units; D = width. Word order is ignored by construction."""

  token_pooling = "mean"

  def __init__(self, vocab_size: int, *, width: int, depth: int, rngs: nnx.Rngs):
    self.bag = BagEmbedding(vocab_size, width, rngs=rngs)
    self.blocks = nnx.List([DenseBlock(width, width, rngs=rngs) for _ in range(depth)])
    self.capture_points = ((("bag", ("bag",)),)
                           + tuple((f"block_{i}", ("blocks", i)) for i in range(depth)))

  def __call__(self, x):
    _check_tokens(x)
    x = self.bag(x)
    for block in self.blocks:
      x = block(x)
    return x


class TokenEmbedding(nnx.Module):
  """Token embeddings plus learned positions, optionally after a CLS token:
  `[B, T] -> [B, T (+1), D]` for any T up to `max_length`."""

  def __init__(self, vocab_size: int, width: int, max_length: int, *, with_cls: bool,
               rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs)
    self.cls = nnx.Param(init(rngs.params(), (1, 1, width))) if with_cls else None
    self.positions = nnx.Param(init(rngs.params(), (1, max_length + int(with_cls), width)))
    self.max_length = max_length

  def __call__(self, tokens):
    if tokens.shape[1] > self.max_length:
      raise ValueError(f"captions have {tokens.shape[1]} tokens; this encoder takes at most "
                       f"{self.max_length} (the dataset's caption_length).")
    x = self.embed(tokens)
    if self.cls is not None:
      cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1]))
      x = jnp.concatenate([cls, x], axis=1)
    return x + self.positions[:, :x.shape[1]]


class TransformerCaptionEncoder(nnx.Module):
  """Transformer encoder over token ids: `depth` pre-LN blocks of model dim `width`
  (padded keys masked), final LayerNorm, then the mean over non-padding tokens
  (`pooling='mean'`) or the CLS token (`pooling='cls'`); D = width. Layers: the
  embeddings (mean pooling only: a CLS embedding is the same for every input),
  each block, the final representation."""

  def __init__(self, vocab_size: int, max_length: int, *, width: int, depth: int,
               rngs: nnx.Rngs, pooling: str = "mean", mlp_ratio: int = 2):
    if pooling not in ("mean", "cls"):
      raise ValueError(f"`pooling` must be 'mean' or 'cls', got {pooling!r}.")
    self.token_pooling = pooling
    self.embedding = TokenEmbedding(vocab_size, width, max_length, with_cls=pooling == "cls",
                                    rngs=rngs)
    self.blocks = nnx.List([TransformerBlock(width, mlp_ratio=mlp_ratio, rngs=rngs)
                            for _ in range(depth)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    embedding = (("embedding", ("embedding",)),) if pooling == "mean" else ()
    self.capture_points = (embedding
                           + tuple((f"block_{i}", ("blocks", i)) for i in range(depth))
                           + (("final", ()),))

  def token_mask(self, tokens: Int[Array, "B T"]) -> jax.Array:
    """bool `[B, T (+1)]`: True at the real tokens of the block inputs (CLS included)."""
    mask = tokens != 0
    if self.token_pooling == "cls":
      mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    return mask

  def __call__(self, x):
    _check_tokens(x)
    mask = self.token_mask(x)
    h = self.embedding(x)
    for block in self.blocks:
      h = block(h, mask)
    h = self.norm(h)
    return h[:, 0] if self.token_pooling == "cls" else _masked_mean(h, mask)


# ---------------------------------------------------------------------------
# Registry


@dataclasses.dataclass(frozen=True)
class EncoderFamily:
  """One encoder family of the zoo.

  Attributes:
    name: registry key ('mlp', 'cnn', ...).
    modality: 'image' (uint8 `[B, H, W, C]`) or 'caption' (int32 `[B, T]`, 0 = padding).
    default_width: width knob at the small default size.
    default_depth: depth knob at the small default size.
    build: `build(dataset_spec, width=, depth=, rngs=) -> nnx.Module`.
    description: what the knobs mean.
  """
  name: str
  modality: str
  default_width: int
  default_depth: int
  build: Callable[..., nnx.Module]
  description: str


def _image_shape(spec) -> tuple[int, int, int]:
  shape = getattr(spec, "image_shape", None)
  if shape is None or len(shape) != 3:
    raise ValueError(f"`dataset_spec` must have image_shape (H, W, C) for an image encoder, "
                     f"got {shape!r}.")
  return tuple(int(s) for s in shape)


def _vocabulary(spec) -> tuple[int, int]:
  vocab, length = getattr(spec, "vocab_size", None), getattr(spec, "caption_length", None)
  if not vocab or not length:
    raise ValueError(f"`dataset_spec` must have vocab_size and caption_length for a caption "
                     f"encoder (dataset {getattr(spec, 'name', '?')!r} has {vocab!r}, "
                     f"{length!r}).")
  return int(vocab), int(length)


_FAMILIES = {f.name: f for f in (
    EncoderFamily("mlp", IMAGE, 64, 2,
                  lambda s, **kw: MLPEncoder(_image_shape(s), **kw),
                  "width: hidden units; depth: hidden layers"),
    EncoderFamily("cnn", IMAGE, 16, 3,
                  lambda s, **kw: CNNEncoder(_image_shape(s), **kw),
                  "width: channels (and dense units); depth: stride-2 conv layers"),
    EncoderFamily("resnet", IMAGE, 16, 2,
                  lambda s, **kw: ResNetEncoder(_image_shape(s), **kw),
                  "width: channels; depth: residual blocks"),
    EncoderFamily("vit", IMAGE, 32, 2,
                  lambda s, **kw: ViTEncoder(_image_shape(s), **kw),
                  "width: model dim; depth: Transformer blocks; CLS token"),
    EncoderFamily("bow", CAPTION, 64, 2,
                  lambda s, **kw: BagOfTokensEncoder(_vocabulary(s)[0], **kw),
                  "width: embedding and hidden units; depth: hidden layers"),
    EncoderFamily("transformer", CAPTION, 32, 2,
                  lambda s, **kw: TransformerCaptionEncoder(*_vocabulary(s), **kw),
                  "width: model dim; depth: Transformer blocks; mean over tokens"),
    EncoderFamily("transformer_cls", CAPTION, 32, 2,
                  lambda s, **kw: TransformerCaptionEncoder(*_vocabulary(s), pooling="cls",
                                                            **kw),
                  "width: model dim; depth: Transformer blocks; CLS token"),
)}


def encoder_families() -> dict[str, EncoderFamily]:
  """The registered encoder families by name (a copy)."""
  return dict(_FAMILIES)


def make_encoder(family: str, *, width: int, depth: int, dataset_spec: Any, modality: str,
                 rngs: nnx.Rngs) -> nnx.Module:
  """Builds one encoder of a registered family for a dataset.

  Args:
    family: a name from `encoder_families()`.
    width: the family's width knob (>= 1).
    depth: the family's depth knob (>= 1).
    dataset_spec: a `DatasetSpec` (or any object with its attributes): image
      encoders read `image_shape` (H, W, C); caption encoders `vocab_size` and
      `caption_length`.
    modality: 'image' or 'caption'; must be the family's.
    rngs: parameter initialisation.

  Returns:
    An `nnx.Module` whose `__call__(x)` gives the final representation
    `[B, width]`, with `capture_points` and `token_pooling` for `layer_features`.
  """
  if family not in _FAMILIES:
    raise ValueError(f"unknown encoder `family` {family!r}; known: {sorted(_FAMILIES)}.")
  entry = _FAMILIES[family]
  if modality != entry.modality:
    raise ValueError(f"`modality` {modality!r} does not match family {family!r}, which encodes "
                     f"{entry.modality!r} inputs.")
  for name, value in (("width", width), ("depth", depth)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
  return entry.build(dataset_spec, width=width, depth=depth, rngs=rngs)
