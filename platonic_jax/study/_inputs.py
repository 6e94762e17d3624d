"""Bring your own features: feature sets read from `.npy`, `.npz` and safetensors files.

A feature set is one model's layers on N samples (row i of every layer and of
every set is the same sample). Accepted layouts:

* `.npy`: one array, `[N, D]` (one layer) or `[L, N, D]` (stacked layers).
* `.npz` / `.safetensors`: every rank-2 array is a layer `[N, D_l]`, in
  natural key order (`layer_2` before `layer_10`); a rank-3 array is stacked
  layers `[L, N, D]`, except one named `feats`, read as the reference's
  `[N, L, D]`. Rank-0 arrays (e.g. `num_params`, `bpb`) and safetensors
  header metadata go to the set's metadata; an int array `sample_ids` `[N]`
  names the rows.
* A feature-store entry (`platonic_jax.zoo.save_layer_features`: a
  `.safetensors` file with a JSON sidecar) is read by
  `platonic_jax.zoo.load_layer_features`, metadata included.
* A directory: each supported file in it is one feature set, in name order
  (as the reference's `measure_alignment.py` reads a folder of per-model files).

Nothing is unpickled: `.npy`/`.npz` are read with `allow_pickle=False` and
`.pt`/`.pth`/`.pkl` files are refused with a pointer to
`scripts/convert_reference_features.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from platonic_jax import _validation

SUFFIXES = (".npy", ".npz", ".safetensors")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_REFERENCE_STACK = "feats"  # the reference's .pt key: [N, L, D]
_SAMPLE_IDS = "sample_ids"


@dataclasses.dataclass(frozen=True)
class FeatureSet:
  """One model's features on N samples.

  Attributes:
    name: the file name without its suffix (unique within one load).
    layers: float32 `[N, D_l]` arrays, one per layer, in layer order.
    metadata: what the file says about the model (e.g. `num_params`, `bpb`,
      `sample_ids`), plus `path` (str) and `format`.
  """
  name: str
  layers: list[np.ndarray]
  metadata: dict[str, Any]

  @property
  def num_samples(self) -> int:
    return int(self.layers[0].shape[0])


def _natural_key(key: str):
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _split_stack(array: np.ndarray, where: str, samples_first: bool) -> list[np.ndarray]:
  stack = np.moveaxis(array, 1, 0) if samples_first else array
  return [_validation.host_layer(layer, f"{where}[layer {l}]") for l, layer in enumerate(stack)]


def _from_arrays(arrays: dict[str, np.ndarray], path: pathlib.Path) -> tuple[list, dict]:
  """Layers and metadata from named arrays (an `.npz` or a plain safetensors file)."""
  layers, metadata = [], {}
  for key in sorted(arrays, key=_natural_key):
    array, where = arrays[key], f"{path}: array {key!r}"
    if array.dtype == object:
      raise ValueError(f"{where} is an object (pickled) array; save plain numeric arrays.")
    if key == _SAMPLE_IDS:
      metadata[_SAMPLE_IDS] = np.asarray(array)
    elif array.ndim == 0:
      metadata[key] = array.item()
    elif array.ndim == 2:
      layers.append(_validation.host_layer(array, where))
    elif array.ndim == 3:
      layers.extend(_split_stack(array, where, samples_first=key == _REFERENCE_STACK))
    else:
      raise ValueError(f"{where} has shape {array.shape}; expected a layer [N, D], stacked "
                       f"layers [L, N, D] ('{_REFERENCE_STACK}': [N, L, D]) or a scalar.")
  if not layers:
    raise ValueError(f"{path} holds no layer: expected [N, D] or [L, N, D] arrays, found "
                     f"{ {k: v.shape for k, v in arrays.items()} }.")
  return layers, metadata


def _read_npy(path: pathlib.Path) -> tuple[list, dict]:
  array = np.load(path, allow_pickle=False)
  if array.ndim == 2:
    return [_validation.host_layer(array, str(path))], {}
  if array.ndim == 3:
    return _split_stack(array, str(path), samples_first=False), {}
  raise ValueError(f"{path} has shape {array.shape}; expected [N, D] or [L, N, D].")


def _read_npz(path: pathlib.Path) -> tuple[list, dict]:
  with np.load(path, allow_pickle=False) as archive:
    arrays = {key: archive[key] for key in archive.files}
  return _from_arrays(arrays, path)


def _is_store_entry(path: pathlib.Path) -> bool:
  sidecar = path.with_suffix(".json")
  if not sidecar.is_file():
    return False
  try:
    meta = json.loads(sidecar.read_text())
  except (OSError, ValueError):
    return False
  return isinstance(meta, dict) and isinstance(meta.get("layer_names"), list)


def _read_safetensors(path: pathlib.Path) -> tuple[list, dict]:
  if _is_store_entry(path):
    from platonic_jax import zoo  # pylint: disable=g-import-not-at-top - heavy, only when needed
    layers, metadata = zoo.load_layer_features(path)
    return [_validation.host_layer(x, f"{path}: layer {l}") for l, x in enumerate(layers)], metadata
  import safetensors  # pylint: disable=g-import-not-at-top
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  with safetensors.safe_open(str(path), framework="numpy") as f:
    header = dict(f.metadata() or {})
  layers, metadata = _from_arrays(safetensors.numpy.load_file(str(path)), path)
  for key, value in header.items():  # safetensors header values are strings; JSON when it parses
    try:
      metadata.setdefault(key, json.loads(value))
    except ValueError:
      metadata.setdefault(key, value)
  return layers, metadata


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".safetensors": _read_safetensors}


def _read(path: pathlib.Path) -> FeatureSet:
  suffix = path.suffix.lower()
  if suffix in _PICKLE_SUFFIXES:
    raise ValueError(
        f"{path} is a pickle/torch file; it is not read (unpickling can run arbitrary code). "
        f"Convert the reference's .pt features with scripts/convert_reference_features.py.")
  if suffix not in _READERS:
    raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {SUFFIXES}.")
  try:
    layers, metadata = _READERS[suffix](path)
  except ValueError as e:
    if str(path) in str(e):
      raise
    # numpy's message for object arrays names allow_pickle; say what it means here.
    reason = ("it holds pickled (object) arrays" if "allow_pickle" in str(e) else str(e))
    raise ValueError(f"cannot read {path}: {reason}.") from e
  except Exception as e:
    raise ValueError(f"cannot read {path}: {type(e).__name__}: {e}") from e
  sizes = {layer.shape[0] for layer in layers}
  if len(sizes) != 1:
    raise ValueError(f"{path}: layers have different numbers of samples (rows): "
                     f"{[layer.shape[0] for layer in layers]}.")
  ids = metadata.get(_SAMPLE_IDS)
  if ids is not None and (np.ndim(ids) != 1 or len(ids) != layers[0].shape[0]):
    raise ValueError(f"{path}: `sample_ids` must be [N] = [{layers[0].shape[0]}], got shape "
                     f"{np.shape(ids)}.")
  return FeatureSet(path.stem, layers, {**metadata, "path": str(path), "format": suffix[1:]})


def from_reference_dict(name: str, contents: dict[str, Any]) -> FeatureSet:
  """A feature set from the contents of one of the reference's `.pt` feature files.

  The reference (`extract_features.py`) saves `feats` `[N, L, D]` (pooled per
  layer) and `num_params`; language models also `mask` (the token mask the
  pooling already used: dropped here), `loss` and `bpb`. Load the file with
  the caller's torch (`torch.load(path, weights_only=True)`) and pass the
  values as NumPy arrays or Python numbers; this module never imports torch.

  Args:
    name: the feature set's name (e.g. the file name without suffix).
    contents: the loaded dict, tensors converted with `.numpy()`.

  Returns:
    `FeatureSet(name, L layers float32 [N, D], metadata)`; scalars become
    numbers, other arrays (e.g. a per-sample `loss`) lists.

  Raises:
    ValueError: no `feats`, `feats` not `[N, L, D]`, non-numeric values, NaN/Inf.
  """
  if not isinstance(contents, dict) or _REFERENCE_STACK not in contents:
    raise ValueError(f"`contents` of {name!r} must be the reference's dict with a "
                     f"'{_REFERENCE_STACK}' [N, L, D] entry, got keys "
                     f"{sorted(contents) if isinstance(contents, dict) else type(contents)}.")
  feats = np.asarray(contents[_REFERENCE_STACK])
  if feats.ndim != 3:
    raise ValueError(f"`{_REFERENCE_STACK}` of {name!r} must be [N, L, D], got shape "
                     f"{feats.shape}.")
  layers = _split_stack(feats, f"{name}: {_REFERENCE_STACK}", samples_first=True)
  metadata: dict[str, Any] = {"source": "platonic-rep .pt"}
  for key, value in contents.items():
    if key in (_REFERENCE_STACK, "mask"):
      continue
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
      raise ValueError(f"`{key}` of {name!r} must be numeric, got dtype {array.dtype}.")
    metadata[key] = array.item() if array.ndim == 0 else array.tolist()
  return FeatureSet(name, layers, metadata)


def _expand(paths: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
  files = []
  for raw in paths:
    path = pathlib.Path(raw)
    if path.is_dir():
      found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
      if not found:
        raise ValueError(f"directory {path} holds no feature file ({', '.join(SUFFIXES)}).")
      files.extend(found)
    elif path.is_file():
      files.append(path)
    else:
      raise ValueError(f"feature path {path} does not exist.")
  return files


def load_feature_sets(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[FeatureSet]:
  """Reads feature sets from files and folders, checking they describe the same samples.

  Args:
    paths: files (`.npy`, `.npz`, `.safetensors`, feature-store entries) and
      directories of such files (one feature set per file), or one such path.

  Returns:
    One `FeatureSet` per file, in the order given (directory contents sorted
    by name); every layer float32 `[N, D_l]` with the same N.

  Raises:
    ValueError: a missing path or an empty directory; an unreadable or
      unsupported file, a pickle or object array; an array of the wrong rank;
      NaN/Inf; layers or files with different N (naming both files and their
      N); sample ids that differ between files; two files with the same name.

  Cost: reads every file once; O(total elements) time and memory.
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  if not isinstance(paths, Sequence) or not paths:
    raise ValueError(f"`paths` must be a non-empty list of files or folders, got {paths!r}.")
  sets = [_read(path) for path in _expand(paths)]
  first = sets[0]
  seen: dict[str, str] = {}
  for s in sets:
    if s.name in seen:
      raise ValueError(f"two feature sets are named {s.name!r}: {seen[s.name]} and "
                       f"{s.metadata['path']}; rename one.")
    seen[s.name] = s.metadata["path"]
    if s.num_samples != first.num_samples:
      raise ValueError(
          f"feature sets must describe the same N samples: {first.metadata['path']} has "
          f"N={first.num_samples}, but {s.metadata['path']} has N={s.num_samples}.")
  with_ids = [s for s in sets if _SAMPLE_IDS in s.metadata]
  for s in with_ids[1:]:
    if not np.array_equal(s.metadata[_SAMPLE_IDS], with_ids[0].metadata[_SAMPLE_IDS]):
      raise ValueError(
          f"{s.metadata['path']} and {with_ids[0].metadata['path']} list different sample ids: "
          f"row i must be the same sample in every file.")
  return sets
