"""Streaming extraction: every layer's pooled features over N inputs, batch by batch.

The inputs stay on the host; each batch is placed on the device(s), run
through one jitted capture function, pooled there to `[B, D_l]` per layer,
and copied back into host `[N, D_l]` NumPy arrays before the next batch is
placed, so at most one batch of activations is ever on a device whatever N
is. With a mesh, each batch is split over its devices (data parallel; the
model's parameters are replicated).

Also the raw-input baseline: the inputs themselves as features (flattened
pixels, or bag-of-tokens counts for captions), stored like any model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from platonic_jax.zoo import _capture


def _batched_function(model_or_apply) -> tuple[Callable, Any]:
  """(jitted fn(params, batch) -> list of [B, D_l], params) for a model or an apply fn."""
  if isinstance(model_or_apply, nnx.Module):
    graphdef, state = nnx.split(model_or_apply)
    if getattr(model_or_apply, "capture_points", None):
      def layers(module, x):
        return _capture.layer_features(module, x)
    else:
      def layers(module, x):
        return list(_capture.nnx_layer_features(module, x).values())
    return jax.jit(lambda s, x: layers(nnx.merge(graphdef, s), x)), state
  if callable(model_or_apply):
    def apply(_, x):
      out = model_or_apply(x)
      return list(out.values()) if isinstance(out, dict) else list(out)
    return jax.jit(apply), None
  raise ValueError(f"`model_or_apply` must be an nnx.Module or a callable, got "
                   f"{type(model_or_apply).__name__}.")


def _num_examples(inputs) -> int:
  leaves = jax.tree.leaves(inputs)
  if not leaves:
    raise ValueError("`inputs` must be an array or a pytree of arrays [N, ...], got no arrays.")
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
  if len(sizes) != 1 or None in sizes or 0 in sizes:
    raise ValueError(f"every array of `inputs` must share a leading dimension N >= 1; got "
                     f"{sorted(map(str, sizes))}.")
  return sizes.pop()


def _auto_mesh(mesh: Mesh) -> Mesh:
  """The same devices and axis names with `Auto` axes (GSPMD shards the forward pass)."""
  if not isinstance(mesh, Mesh):
    raise ValueError(f"`mesh` must be a jax.sharding.Mesh or None, got {type(mesh).__name__}.")
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def _padded_batch(inputs, start: int, stop: int, batch_size: int):
  """Rows [start, stop) padded to `batch_size` by repeating the last row (one compile)."""
  def take(a):
    rows = np.asarray(a[start:stop])
    if stop - start < batch_size:
      rows = np.concatenate([rows, np.repeat(rows[-1:], batch_size - (stop - start), axis=0)])
    return rows
  return jax.tree.map(take, inputs)


def extract_features(model_or_apply: nnx.Module | Callable, inputs: Any, *,
                     batch_size: int = 256, mesh: Mesh | None = None) -> list[np.ndarray]:
  """Every layer's pooled features for N inputs, streamed in batches.

  Args:
    model_or_apply: a zoo encoder (`make_encoder`; layers of `layer_names`),
      any other `nnx.Module` (every float method output, as
      `nnx_layer_features`, ordered by name), or a jax-traceable
      `apply(batch) -> list (or dict) of [B, D_l]` (e.g. a closure over
      `linen_layer_features` with fixed variables).
    inputs: host array `[N, ...]` (or a pytree of them with one N); anything
      sliceable along rows, e.g. a NumPy memmap.
    batch_size: rows per step (on one device, or split over `mesh`; rounded
      up to a multiple of the mesh size).
    mesh: optional mesh; each batch is sharded over all its axes, parameters
      replicated. None: the default device.

  Returns:
    float32 host arrays `[N, D_l]`, one per layer.

  Cost: one forward pass per batch, ceil(N / batch_size) batches of one
  compiled function; device memory one batch of activations plus the model;
  host memory N * sum_l D_l floats.
  """
  if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
    raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
  n = _num_examples(inputs)
  fn, params = _batched_function(model_or_apply)
  batch_size = min(batch_size, n)
  if mesh is None:
    sharding = replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  else:
    mesh = _auto_mesh(mesh)
    batch_size = math.ceil(batch_size / mesh.size) * mesh.size
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
    replicated = NamedSharding(mesh, PartitionSpec())
  params = jax.device_put(params, replicated)
  out: list[np.ndarray] | None = None
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    batch = jax.device_put(_padded_batch(inputs, start, stop, batch_size), sharding)
    layers = fn(params, batch)
    if out is None:
      out = [np.empty((n, layer.shape[-1]), np.float32) for layer in layers]
    for host, layer in zip(out, layers):
      if layer.ndim != 2 or layer.shape[0] != batch_size:
        raise ValueError(f"a layer came back with shape {layer.shape}; expected "
                         f"[{batch_size}, D] per batch.")
      host[start:stop] = np.asarray(layer)[:stop - start]
  return out


def raw_input_features(inputs: np.ndarray, *, modality: str,
                       vocab_size: int | None = None) -> dict[str, np.ndarray]:
  """The raw-input baseline: the data themselves as one layer of features.

  Args:
    inputs: images `[N, H, W, C]` (uint8 scaled to [0, 1], as the encoders see
      them) or token ids `[N, T]` (0 = padding).
    modality: 'image' or 'caption'.
    vocab_size: vocabulary size V (captions only).

  Returns:
    {'pixels': float32 `[N, H*W*C]`} for images, or {'token_counts': float32
    `[N, V - 1]`} for captions: column v - 1 counts token v (padding is not
    counted; word order is lost).

  Cost: O(N * input size) time and memory, on the host.
  """
  inputs = np.asarray(inputs)
  if modality == "image":
    if inputs.ndim != 4:
      raise ValueError(f"`inputs` must be images [N, H, W, C], got shape {inputs.shape}.")
    pixels = inputs.reshape(len(inputs), -1).astype(np.float32)
    if np.issubdtype(inputs.dtype, np.integer):
      pixels /= 255.0
    return {"pixels": pixels}
  if modality == "caption":
    if inputs.ndim != 2 or not np.issubdtype(inputs.dtype, np.integer):
      raise ValueError(f"`inputs` must be integer token ids [N, T], got {inputs.dtype} "
                       f"{inputs.shape}.")
    if not isinstance(vocab_size, int) or vocab_size < 2:
      raise ValueError(f"`vocab_size` must be an int >= 2 for captions, got {vocab_size!r}.")
    if inputs.min(initial=0) < 0 or inputs.max(initial=0) >= vocab_size:
      raise ValueError(f"token ids must lie in [0, {vocab_size}), got "
                       f"[{inputs.min()}, {inputs.max()}].")
    counts = np.zeros((len(inputs), vocab_size), np.float32)
    rows = np.repeat(np.arange(len(inputs)), inputs.shape[1])
    np.add.at(counts, (rows, inputs.reshape(-1)), 1.0)
    return {"token_counts": counts[:, 1:]}
  raise ValueError(f"`modality` must be 'image' or 'caption', got {modality!r}.")
