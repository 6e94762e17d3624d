"""The feature store: every layer of one model on one set of samples, pickle-free.

One entry is two files in a directory:

  <name>.safetensors   tensors `layer_000`, `layer_001`, ... (float32 `[N, D_l]`;
                       one tensor per layer since widths differ) and
                       `sample_ids` (int64 `[N]`, row i of every layer)
  <name>.json          metadata: model, checkpoint step, layer_names, pooling,
                       dataset, split, ... plus num_examples, layer_dims and
                       format_version written here

Both are written atomically (temp file, fsync, rename; the JSON last), so an
interrupted write leaves either a whole entry, the previous one, or a
safetensors file without its sidecar, which the loader rejects and a resumed
extraction rewrites.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from platonic_jax import _files, _validation

FORMAT_VERSION = 1
SAMPLE_IDS = "sample_ids"
_SUFFIX = ".safetensors"
# Leading bytes of pickles (protocol 2+) and of zip archives (torch.save, .npz).
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def _layer_key(i: int) -> str:
  return f"layer_{i:03d}"


def _as_layers(layers: Sequence[Any]) -> list[np.ndarray]:
  if isinstance(layers, np.ndarray) or not isinstance(layers, Sequence) or not layers:
    raise ValueError("`layers` must be a non-empty list of [N, D_l] arrays.")
  out = []
  for i, layer in enumerate(layers):
    layer = np.asarray(layer)
    if layer.ndim != 2:
      raise ValueError(f"`layers[{i}]` must be a non-empty [N, D] array, got shape {layer.shape}.")
    out.append(_validation.host_layer(layer, f"`layers[{i}]`"))
  sizes = [layer.shape[0] for layer in out]
  if len(set(sizes)) != 1:
    raise ValueError(f"every layer must have the same N (rows = samples); got N per layer {sizes}.")
  return out


def _as_sample_ids(sample_ids: Any, n: int) -> np.ndarray:
  if sample_ids is None:
    return np.arange(n, dtype=np.int64)
  ids = np.asarray(sample_ids)
  if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"`sample_ids` must be integers of shape [N] = ({n},), got "
                     f"{ids.dtype} {ids.shape}.")
  if len(np.unique(ids)) != n:
    raise ValueError("`sample_ids` must be unique: each row is one sample.")
  return ids.astype(np.int64)


def save_layer_features(directory: str | os.PathLike, name: str, layers: Sequence[Any],
                        metadata: Mapping[str, Any]) -> pathlib.Path:
  """Writes every layer of one model (and the sample ids) to the store.

  Args:
    directory: where to write (created if missing).
    name: the entry name; files `<name>.safetensors` and `<name>.json`.
    layers: `[N, D_l]` arrays, one per layer (widths may differ), stored float32.
    metadata: JSON-serialisable description (model, step, layer_names, pooling,
      dataset, split, ...). `metadata['sample_ids']` (int `[N]`, unique), when
      present, is stored as the `sample_ids` tensor (default: 0..N-1);
      `layer_names`, when present, must name every layer (default:
      'layer_000', ...).

  Returns:
    The path of the `.safetensors` file.

  Cost: O(N * sum_l D_l) host memory for one serialised copy, and that much I/O.

  Raises:
    ValueError: bad name, layers of different N, non-finite values, sample ids
      of the wrong shape or repeated, layer names of the wrong length, or
      metadata that JSON cannot encode.
  """
  if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
    raise ValueError(f"`name` must be a plain file name (no separators, not hidden), got {name!r}.")
  if not isinstance(metadata, Mapping):
    raise ValueError(f"`metadata` must be a mapping, got {type(metadata).__name__}.")
  layers = _as_layers(layers)
  n = layers[0].shape[0]
  meta = dict(metadata)
  ids = _as_sample_ids(meta.pop(SAMPLE_IDS, None), n)
  names = list(meta.get("layer_names") or [_layer_key(i) for i in range(len(layers))])
  if len(names) != len(layers) or not all(isinstance(s, str) for s in names):
    raise ValueError(f"`metadata['layer_names']` must be {len(layers)} strings (one per layer), "
                     f"got {names!r}.")
  meta.update(layer_names=names, num_examples=n, layer_dims=[int(x.shape[1]) for x in layers],
              format_version=FORMAT_VERSION)
  try:
    sidecar = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False) + "\n"
  except (TypeError, ValueError) as e:
    raise ValueError(f"`metadata` must be JSON-serialisable (finite numbers): {e}") from e

  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tensors = {_layer_key(i): layer for i, layer in enumerate(layers)}
  tensors[SAMPLE_IDS] = ids
  path = directory / f"{name}{_SUFFIX}"
  _files.write_atomic(path, safetensors.numpy.save(tensors))
  _files.write_atomic(directory / f"{name}.json", sidecar.encode())
  return path


def _entry_paths(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
  path = pathlib.Path(path)
  if path.suffix in _PICKLE_SUFFIXES:
    raise ValueError(f"`path` {path} looks like a pickle/torch file; the store reads only "
                     f"safetensors + JSON (unpickling can run arbitrary code).")
  stem = path.with_suffix("") if path.suffix in (_SUFFIX, ".json") else path
  return stem.with_name(stem.name + _SUFFIX), stem.with_name(stem.name + ".json")


def _read_tensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  with open(path, "rb") as f:
    head = f.read(4)
  if any(head.startswith(magic) for magic in _PICKLE_MAGIC):
    raise ValueError(f"{path} holds a pickle or zip archive, not safetensors; the store does "
                     f"not unpickle (it can run arbitrary code).")
  try:
    return safetensors.numpy.load_file(str(path))
  except Exception as e:  # safetensors raises several exception types for corrupt files
    raise ValueError(f"{path} is not a readable safetensors file: {e}") from e


def _read_metadata(path: pathlib.Path) -> dict[str, Any]:
  try:
    with open(path) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a readable JSON sidecar: {e}") from e
  if not isinstance(meta, dict) or not isinstance(meta.get("layer_names"), list):
    raise ValueError(f"{path} must be a JSON object with a 'layer_names' list.")
  return meta


def load_layer_features(path: str | os.PathLike) -> tuple[list[np.ndarray], dict[str, Any]]:
  """Reads one store entry written by `save_layer_features`.

  Args:
    path: the `.safetensors` file, its `.json` sidecar, or the name without suffix.

  Returns:
    (layers, metadata): float32 `[N, D_l]` arrays in layer order (what
    `layer_grid`/`zoo_alignment` take), and the sidecar's metadata with
    `metadata['sample_ids']` the int64 `[N]` sample ids.

  Cost: O(N * sum_l D_l) reads and a finiteness pass over every value.

  Raises:
    ValueError: a missing file, a pickle, a file safetensors or JSON cannot
      read, missing or extra layers, layers of different N, non-finite values,
      or sample ids that do not match the rows.
  """
  tensor_path, meta_path = _entry_paths(path)
  for p in (tensor_path, meta_path):
    if not p.is_file():
      raise ValueError(f"feature store entry incomplete: {p} does not exist (an interrupted "
                       f"write leaves no sidecar; extract again).")
  tensors = _read_tensors(tensor_path)
  meta = _read_metadata(meta_path)
  num_layers = len(meta["layer_names"])
  expected = {_layer_key(i) for i in range(num_layers)} | {SAMPLE_IDS}
  if set(tensors) != expected:
    raise ValueError(f"{tensor_path} holds tensors {sorted(tensors)}; its sidecar names "
                     f"{num_layers} layers, so expected {sorted(expected)}.")
  layers = [tensors[_layer_key(i)] for i in range(num_layers)]
  for i, layer in enumerate(layers):
    if layer.dtype != np.float32 or layer.ndim != 2:
      raise ValueError(f"{tensor_path}: {_layer_key(i)} must be float32 [N, D], got "
                       f"{layer.dtype} {layer.shape}.")
    if not np.isfinite(layer).all():
      raise ValueError(f"{tensor_path}: {_layer_key(i)} has non-finite values (NaN or Inf).")
  sizes = [layer.shape[0] for layer in layers]
  if len(set(sizes)) != 1:
    raise ValueError(f"{tensor_path}: layers have different N (rows) {sizes}.")
  ids = tensors[SAMPLE_IDS]
  if ids.dtype != np.int64 or ids.shape != (sizes[0],):
    raise ValueError(f"{tensor_path}: sample_ids must be int64 [{sizes[0]}], got "
                     f"{ids.dtype} {ids.shape}.")
  meta[SAMPLE_IDS] = ids
  return layers, meta
