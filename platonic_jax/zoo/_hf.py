"""Hugging Face Flax models as layer-feature extractors (optional extra `[hf]`).

transformers 4.57 is the last line with Flax model classes. This adapter loads
one of them (ViT, Dinov2, CLIP vision or text tower, BERT, GPT-2, Llama, Bloom)
from a local directory or the hub, runs it with `output_hidden_states=True`
(the embeddings and every block) and pools every hidden state as the PRH
reference does:

- vision transformers: the CLS token (position 0) of every hidden state;
- language models: the mean over the attention mask of every hidden state.

The reference left-pads its tokens and averages over the mask. Here the
position ids are derived from the mask (`cumsum(mask) - 1`) for every model
that takes them, so the padding side and amount do not change a sample's
features (up to float rounding): absolute position embeddings (BERT, GPT-2,
CLIP text) see the same positions as the unpadded text, and RoPE (Llama) and
ALiBi (Bloom, positions from the mask) are shift-invariant anyway.

Differences from the reference to know about: the reference's vision features
are the block outputs only (timm `blocks.{i}.add_1`), without the embeddings;
pass `include_embeddings=False` to match. Known limits of the Flax classes in
transformers 4.57 (checked on jax 0.10.2 / flax 0.12.8):

- FlaxLlama builds its rotary table as `[..., :max_position_embeddings]` over a
  `2 * head_dim` axis, so it breaks whenever `max_position_embeddings <
  2 * head_dim`; it also hard-codes RoPE base 10000 and ignores `rope_scaling`
  (Llama 3 uses base 500000). `load_hf_model` rejects such configs instead of
  returning silently wrong features.
- Flax `from_pretrained` cannot read sharded safetensors checkpoints
  (`model.safetensors.index.json`, most models above a few GB) and needs
  torch for sharded PyTorch `.bin` checkpoints. Single-file safetensors
  (PyTorch layout) load without torch.

Nothing here is imported with the package: transformers is imported on first
use, and a missing install raises an ImportError naming the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from platonic_jax.zoo import _feature_store

# config.model_type -> (Flax class name, modality, takes position_ids).
_ARCHITECTURES = {
    "vit": ("FlaxViTModel", "image", False),
    "dinov2": ("FlaxDinov2Model", "image", False),
    "clip_vision_model": ("FlaxCLIPVisionModel", "image", False),
    "clip_text_model": ("FlaxCLIPTextModel", "text", True),
    "bert": ("FlaxBertModel", "text", True),
    "gpt2": ("FlaxGPT2Model", "text", True),
    "llama": ("FlaxLlamaModel", "text", True),
    "bloom": ("FlaxBloomModel", "text", False),
}
_POOLING = {"image": "cls", "text": "mean"}
_CLIP_TOWERS = {"vision": "clip_vision_model", "text": "clip_text_model"}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def hf_architectures() -> tuple[str, ...]:
  """The `config.model_type` values `load_hf_model` accepts (plus `clip`)."""
  return tuple(_ARCHITECTURES)


def _transformers():
  """The transformers module, imported on first use."""
  try:
    return importlib.import_module("transformers")
  except ImportError as e:
    raise ImportError(
        "Hugging Face Flax models need transformers>=4.57,<5: "
        "pip install 'platonic_jax[hf]'") from e


@dataclasses.dataclass(frozen=True)
class HFModel:
  """A loaded Hugging Face Flax model ready for feature extraction.

  Attributes:
    model: the `transformers.FlaxPreTrainedModel`; call it with `params=`.
    params: its weights (a pytree of arrays).
    architecture: a key of `hf_architectures()`, e.g. `'bert'`, `'clip_text_model'`.
    modality: `'image'` (input `pixel_values [N, C, H, W]`) or `'text'`.
    pooling: `'cls'` (token 0) for image models, `'mean'` (attention-masked) for text.
    source: the directory or hub id it was loaded from.
    tokenizer: the checkpoint's tokenizer set to left padding, or None.
    random_init: True when the weights are a fresh random initialisation.
    num_params: number of parameters.
  """
  model: Any
  params: Any
  architecture: str
  modality: str
  pooling: str
  source: str
  tokenizer: Any
  random_init: bool
  num_params: int

  @functools.cached_property
  def _forwards(self) -> dict:
    """The jitted forward pass with and without the embeddings, compiled once per model."""
    return {flag: _forward(self, flag) for flag in (True, False)}

  @property
  def layer_names(self) -> list[str]:
    """`['embeddings', 'block_01', ...]`, one per hidden state."""
    num_blocks = self.model.config.num_hidden_layers
    return ["embeddings"] + [f"block_{i:02d}" for i in range(1, num_blocks + 1)]


def _sub_config(config, architecture: str, tower: str | None):
  """The config of the tower to load, and its model type."""
  if config.model_type == "clip":
    if tower not in _CLIP_TOWERS:
      raise ValueError(f"tower must be 'vision' or 'text' for a CLIP checkpoint, got {tower!r}")
    return (config.vision_config if tower == "vision" else config.text_config), _CLIP_TOWERS[tower]
  if tower is not None:
    raise ValueError(f"tower is only for CLIP checkpoints, got {tower!r} for {architecture!r}")
  return config, config.model_type


def _check_supported(config, model_type: str, source: str) -> None:
  if model_type not in _ARCHITECTURES:
    raise ValueError(
        f"{source!r} has model_type {model_type!r}; supported: "
        f"{', '.join(sorted(_ARCHITECTURES) + ['clip'])}")
  if model_type == "llama":
    head_dim = config.hidden_size // config.num_attention_heads
    if config.max_position_embeddings < 2 * head_dim:
      raise ValueError(
          f"FlaxLlama (transformers 4.57) breaks when max_position_embeddings "
          f"({config.max_position_embeddings}) < 2 * head_dim ({2 * head_dim})")
    theta = getattr(config, "rope_theta", 10000.0)
    if theta != 10000.0 or getattr(config, "rope_scaling", None):
      raise ValueError(
          f"FlaxLlama (transformers 4.57) hard-codes RoPE base 10000 without scaling; "
          f"{source!r} has rope_theta={theta}, rope_scaling={config.rope_scaling}")


def _has_flax_weights(path: pathlib.Path) -> bool:
  """Flax msgpack weights, or a safetensors file that Flax `save_pretrained` wrote."""
  if (path / "flax_model.msgpack").is_file() or (path / "flax_model.msgpack.index.json").is_file():
    return True
  safetensors_file = path / "model.safetensors"
  if not safetensors_file.is_file():
    return False
  with safetensors.safe_open(str(safetensors_file), framework="numpy") as f:
    return (f.metadata() or {}).get("format") == "flax"


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model")


def _load_tokenizer(transformers, source: str, **kwargs):
  """The checkpoint's tokenizer, left-padded with a pad token, or None if it has none."""
  local = pathlib.Path(source)
  if local.is_dir() and not any((local / f).is_file() for f in _TOKENIZER_FILES):
    return None
  try:
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
  except (OSError, ValueError, TypeError, AttributeError):  # a hub repository without one
    return None
  tokenizer.padding_side = "left"
  if tokenizer.pad_token is None:
    # The pad id never reaches a feature (masked out; positions follow the mask).
    tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
  return tokenizer


def _from_pretrained(cls, source: str, config, dtype, from_pt: bool, hub_kwargs: dict):
  """`(model, params)`; Flax weights skip the random initialisation (`_do_init=False`),
  PyTorch-layout weights need it (transformers converts them against its shapes)."""
  if from_pt:
    model = cls.from_pretrained(source, config=config, dtype=dtype, from_pt=True, **hub_kwargs)
    return model, model.params
  return cls.from_pretrained(source, config=config, dtype=dtype, _do_init=False, **hub_kwargs)


def load_hf_model(
    name_or_path: str | pathlib.Path,
    *,
    tower: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    dtype: str = "float32",
    from_pt: bool | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
) -> HFModel:
  """Loads a Hugging Face Flax model from a local directory or the hub.

  Args:
    name_or_path: a directory written by `save_pretrained` (Flax msgpack, or
      PyTorch-layout `model.safetensors` / `pytorch_model.bin`) or a hub id.
    tower: `'vision'` or `'text'` for CLIP checkpoints (model_type `clip`);
      None otherwise.
    random_init: build the same architecture from the config with random
      weights (the random-init baseline) instead of reading the weights.
    seed: PRNG seed of the random initialisation.
    dtype: `'float32'` or `'bfloat16'` (computation and parameters).
    from_pt: read PyTorch-layout weights; None decides: a local directory
      without Flax weights, or a hub repository that has none, reads them.
    revision: hub revision (branch, tag or commit).
    local_files_only: never contact the hub.

  Returns:
    An `HFModel`; text models carry their tokenizer when the checkpoint has one.

  Raises:
    ImportError: transformers is not installed (the `[hf]` extra).
    ValueError: unsupported architecture, a config the Flax class cannot run,
      bad `tower` or `dtype`.
  """
  transformers = _transformers()
  if dtype not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
  source = str(name_or_path)
  hub_kwargs = {"revision": revision, "local_files_only": local_files_only}
  config = transformers.AutoConfig.from_pretrained(source, **hub_kwargs)
  config, model_type = _sub_config(config, config.model_type, tower)
  _check_supported(config, model_type, source)
  class_name, modality, _ = _ARCHITECTURES[model_type]
  cls = getattr(transformers, class_name)
  jdtype = _DTYPES[dtype]
  if random_init:
    model = cls(config, seed=seed, dtype=jdtype)
    params = model.params
  else:
    local = pathlib.Path(source)
    if from_pt is None and local.is_dir():
      from_pt = not _has_flax_weights(local)
    if from_pt is None:
      try:
        model, params = _from_pretrained(cls, source, config, jdtype, False, hub_kwargs)
      except OSError:  # the hub repository has no Flax weights
        model, params = _from_pretrained(cls, source, config, jdtype, True, hub_kwargs)
    else:
      model, params = _from_pretrained(cls, source, config, jdtype, from_pt, hub_kwargs)
  if dtype == "bfloat16":
    params = model.to_bf16(params)
  tokenizer = _load_tokenizer(transformers, source, **hub_kwargs) if modality == "text" else None
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
  return HFModel(model=model, params=params, architecture=model_type, modality=modality, pooling=_POOLING[modality],
                 source=source, tokenizer=tokenizer, random_init=random_init, num_params=num_params)


def pool_hidden_states(
    hidden_states: Float[ArrayLike, "l b t d"],
    attention_mask: Int[ArrayLike, "b t"] | None,
    pooling: str,
) -> Float[Array, "l b d"]:
  """Pools every hidden state over tokens, as the PRH reference does.

  Args:
    hidden_states: `[L, B, T, D]` stacked hidden states (embeddings + blocks).
    attention_mask: `[B, T]`, 1 for real tokens; required for `'mean'`.
    pooling: `'cls'`: token 0 of every hidden state (vision transformers);
      `'mean'`: mean over the tokens where the mask is 1 (language models; a
      row without tokens gives zeros).

  Returns:
    float32 `[L, B, D]`.

  Cost: O(L B T D).
  """
  hidden_states = jnp.asarray(hidden_states)
  if hidden_states.ndim != 4:
    raise ValueError(f"hidden_states must be [L, B, T, D], got shape {hidden_states.shape}")
  if pooling == "cls":
    return hidden_states[:, :, 0, :].astype(jnp.float32)
  if pooling != "mean":
    raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
  if attention_mask is None:
    raise ValueError("attention_mask is required for pooling='mean'")
  mask = jnp.asarray(attention_mask).astype(bool)
  if mask.shape != hidden_states.shape[1:3]:
    raise ValueError(f"attention_mask must be [B, T] = {hidden_states.shape[1:3]}, got {mask.shape}")
  # `where`, not a product: a padded position may hold inf/NaN from a fully masked row.
  summed = jnp.where(mask[None, :, :, None], hidden_states.astype(jnp.float32), 0.0).sum(axis=2)
  count = jnp.maximum(mask.sum(axis=1), 1).astype(jnp.float32)
  return summed / count[None, :, None]


def tokenize_left_padded(
    tokenizer, texts: Sequence[str], *, max_length: int | None = None, pad_to_multiple_of: int = 8,
) -> tuple[Int[np.ndarray, "n t"], Int[np.ndarray, "n t"]]:
  """Token ids and attention mask, left-padded as the reference pads them.

  Args:
    tokenizer: a Hugging Face tokenizer.
    texts: N strings.
    max_length: truncate longer texts to this many tokens (None: no limit).
    pad_to_multiple_of: round the padded length up to a multiple of this, so
      batches of similar length share one compiled shape.

  Returns:
    `(input_ids, attention_mask)`, int32 `[N, T]` each.
  """
  tokenizer.padding_side = "left"
  encoded = tokenizer(list(texts), padding=True, truncation=max_length is not None,
                      max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                      return_tensors="np")
  return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].astype(np.int32)


def _max_positions(config) -> int | None:
  if config.model_type == "bloom":
    return None  # ALiBi: no position table
  return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _forward(hf: HFModel, include_embeddings: bool):
  """Jitted `(params, inputs, mask) -> [L, B, D]` pooled hidden states."""
  _, _, takes_positions = _ARCHITECTURES[hf.architecture]
  model = hf.model
  first = 0 if include_embeddings else 1

  def forward(params, inputs, mask):
    if hf.modality == "image":
      out = model(pixel_values=inputs, params=params, output_hidden_states=True)
    else:
      kwargs = {}
      if takes_positions:
        kwargs["position_ids"] = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
      out = model(input_ids=inputs, attention_mask=mask, params=params,
                  output_hidden_states=True, **kwargs)
    hidden = jnp.stack(out.hidden_states[first:])
    return pool_hidden_states(hidden, mask, hf.pooling)

  return jax.jit(forward)


def _batched(hf: HFModel, batches, n: int, batch_size: int, include_embeddings: bool) -> list[np.ndarray]:
  """Runs every batch, accumulating pooled layers into host arrays."""
  forward = hf._forwards[include_embeddings]  # pylint: disable=protected-access
  layers = None
  for start, inputs, mask in batches:
    count = inputs.shape[0]
    if count < batch_size:  # pad with copies of row 0: one compiled batch shape
      fill = batch_size - count
      inputs = np.concatenate([inputs, np.repeat(inputs[:1], fill, axis=0)])
      if mask is not None:
        mask = np.concatenate([mask, np.repeat(mask[:1], fill, axis=0)])
    pooled = np.asarray(jax.device_get(forward(hf.params, inputs, mask)))[:, :count]
    if layers is None:
      layers = [np.empty((n, pooled.shape[-1]), np.float32) for _ in range(pooled.shape[0])]
    for layer, values in zip(layers, pooled):
      layer[start:start + count] = values
  return layers


def _check_batch_size(batch_size) -> None:
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def hf_text_features(
    hf: HFModel,
    texts: Sequence[str] | None = None,
    *,
    input_ids: Int[ArrayLike, "n t"] | None = None,
    attention_mask: Int[ArrayLike, "n t"] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    include_embeddings: bool = True,
) -> list[Float[np.ndarray, "n d"]]:
  """Every hidden state of a text model, mean-pooled over the attention mask.

  Give either `texts` (tokenised batch by batch with the model's tokenizer,
  left-padded, truncated to `max_length` or the model's position limit) or
  `input_ids` (with an optional `attention_mask`, default all ones; any
  padding side). Batches stream through one jitted forward pass and the
  pooled `[B, D]` rows accumulate on the host, so N is bounded by host memory
  for the `L` outputs only.

  Args:
    hf: a text `HFModel` from `load_hf_model`.
    texts: N strings.
    input_ids: int `[N, T]` token ids (instead of `texts`).
    attention_mask: int `[N, T]`, 1 for real tokens.
    batch_size: rows per forward pass.
    max_length: token limit when tokenising `texts`.
    include_embeddings: keep hidden state 0 (the embedding layer).

  Returns:
    A list of float32 `[N, D]` arrays, one per hidden state (embeddings first),
    ready for `platonic_jax.layer_grid` / `zoo_alignment`.

  Raises:
    ValueError: not a text model, both or neither of `texts`/`input_ids`, no
      tokenizer, shapes that disagree, a sample without tokens, bad batch_size.

  Cost: one forward pass per batch, O(N T (L D^2 + L T D)) for a transformer.
  """
  if hf.modality != "text":
    raise ValueError(f"hf_text_features needs a text model, got a {hf.modality} model ({hf.architecture})")
  if (texts is None) == (input_ids is None):
    raise ValueError("give exactly one of texts or input_ids")
  _check_batch_size(batch_size)
  limit = _max_positions(hf.model.config)
  if texts is not None:
    if isinstance(texts, str):
      raise ValueError("texts must be a sequence of strings, got one string")
    if hf.tokenizer is None:
      raise ValueError(f"{hf.source!r} has no tokenizer: pass input_ids instead of texts")
    texts = list(texts)
    n = len(texts)
    batch_size = max(1, min(batch_size, n))  # no padding a small N up to a large batch
    length = max_length if max_length is not None else limit

    def batches():
      for start in range(0, n, batch_size):
        ids, mask = tokenize_left_padded(hf.tokenizer, texts[start:start + batch_size], max_length=length)
        yield start, ids, mask
  else:
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"input_ids must be an int [N, T] array, got {ids.dtype} {ids.shape}")
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
    if mask.shape != ids.shape:
      raise ValueError(f"attention_mask must have the shape of input_ids {ids.shape}, got {mask.shape}")
    if limit is not None and ids.shape[1] > limit:
      raise ValueError(f"input_ids has {ids.shape[1]} positions; the model takes at most {limit}")
    n = ids.shape[0]
    batch_size = max(1, min(batch_size, n))
    ids, mask = ids.astype(np.int32), mask.astype(np.int32)

    def batches():
      for start in range(0, n, batch_size):
        yield start, ids[start:start + batch_size], mask[start:start + batch_size]
  if n == 0:
    raise ValueError("no samples: texts/input_ids is empty")

  def checked():
    for start, ids_b, mask_b in batches():
      if not mask_b.any(axis=1).all():
        raise ValueError(f"a sample in rows {start}..{start + len(mask_b) - 1} has no tokens")
      yield start, ids_b, mask_b

  return _batched(hf, checked(), n, batch_size, include_embeddings)


def hf_image_features(
    hf: HFModel,
    pixel_values: Float[ArrayLike, "n c h w"],
    *,
    batch_size: int = 32,
    include_embeddings: bool = True,
) -> list[Float[np.ndarray, "n d"]]:
  """The CLS token of every hidden state of a vision transformer.

  Args:
    hf: an image `HFModel` from `load_hf_model`.
    pixel_values: float `[N, C, H, W]`, already preprocessed for the model
      (e.g. by `transformers.AutoImageProcessor`); any array with slicing
      (a `np.memmap` streams from disk).
    batch_size: images per forward pass.
    include_embeddings: keep hidden state 0 (patch embeddings + CLS); the
      reference's vision features start at block 1 (pass False to match).

  Returns:
    A list of float32 `[N, D]` arrays, one per hidden state.

  Raises:
    ValueError: not an image model, pixel_values not `[N, C, H, W]`, bad batch_size.

  Cost: one forward pass per batch, O(N P (L D^2 + L P D)) for P patches.
  """
  if hf.modality != "image":
    raise ValueError(f"hf_image_features needs an image model, got a {hf.modality} model ({hf.architecture})")
  _check_batch_size(batch_size)
  shape = tuple(pixel_values.shape)
  channels = hf.model.config.num_channels
  if len(shape) != 4 or shape[1] != channels or shape[0] == 0:
    raise ValueError(f"pixel_values must be [N, {channels}, H, W] with N >= 1, got shape {shape}")

  batch_size = min(batch_size, shape[0])

  def batches():
    for start in range(0, shape[0], batch_size):
      yield start, np.asarray(pixel_values[start:start + batch_size], np.float32), None

  return _batched(hf, batches(), shape[0], batch_size, include_embeddings)


def hf_feature_metadata(hf: HFModel, *, include_embeddings: bool = True, **extra) -> dict:
  """The feature-store metadata of an `HFModel`'s layers (for `save_layer_features`).

  Args:
    hf: the model the layers came from.
    include_embeddings: as passed to the extraction.
    **extra: further JSON-serialisable entries (dataset, split, sample_ids, ...).

  Returns:
    A dict: model, architecture, checkpoint ('random_init' or 'pretrained'),
    layer_names, pooling, num_params, plus `extra`.
  """
  names = hf.layer_names if include_embeddings else hf.layer_names[1:]
  return {"model": hf.source, "architecture": hf.architecture,
          "checkpoint": "random_init" if hf.random_init else "pretrained",
          "layer_names": names, "pooling": hf.pooling, "num_params": hf.num_params, **extra}


def save_hf_features(
    directory: str | pathlib.Path,
    name: str,
    hf: HFModel,
    layers: Sequence[np.ndarray],
    *,
    include_embeddings: bool = True,
    **metadata,
) -> pathlib.Path:
  """Writes an `HFModel`'s layers through the feature store (`save_layer_features`).

  Args:
    directory: the feature-store directory.
    name: the entry name (`<name>.safetensors` and `<name>.json`).
    hf: the model the layers came from.
    layers: the `[N, D]` layers from `hf_text_features` / `hf_image_features`.
    include_embeddings: as passed to the extraction (names the layers).
    **metadata: further entries: dataset, split, sample_ids (int `[N]`), ...

  Returns:
    The path of the `.safetensors` file; `load_layer_features` reads it back.
  """
  meta = hf_feature_metadata(hf, include_embeddings=include_embeddings, **metadata)
  return _feature_store.save_layer_features(directory, name, layers, meta)
