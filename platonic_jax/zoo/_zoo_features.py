"""Every layer's features for every member and checkpoint of a trained zoo.

Reads `<zoo_dir>/<member>/manifest.json` (the trainer's contract), restores
each requested checkpoint's encoder, streams one dataset split through it
(`extract_features`) and writes one feature-store entry per checkpoint:

  <output_dir>/<split>/<member>/step_<step, 6 digits>.safetensors / .json
  <output_dir>/<split>/raw-<dataset>-<modality>/step_000000.*   (raw-input baseline;
                                                              '/' in a dataset name -> '_')

An entry already written for the same dataset, split and samples is skipped,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from platonic_jax.zoo import _capture
from platonic_jax.zoo import _checkpoint
from platonic_jax.zoo import _data
from platonic_jax.zoo import _extract
from platonic_jax.zoo import _families
from platonic_jax.zoo import _feature_store

MANIFEST = _checkpoint.MANIFEST
_INPUT_KEYS = {"image": "image", "caption": "caption"}


def zoo_members(zoo_dir: str | os.PathLike, patterns: Sequence[str] | None = None) -> list[str]:
  """Member names under `zoo_dir` (directories with a manifest), sorted.

  Args:
    zoo_dir: the zoo directory.
    patterns: member names or shell globs ('*-cnn-*'); None or ['all']: every member.
  """
  zoo_dir = pathlib.Path(zoo_dir)
  if not zoo_dir.is_dir():
    raise ValueError(f"`zoo_dir` {zoo_dir} is not a directory.")
  names = sorted(p.parent.name for p in zoo_dir.glob(f"*/{MANIFEST}"))
  if not names:
    raise ValueError(f"`zoo_dir` {zoo_dir} has no members (no */{MANIFEST}); train a zoo first.")
  if patterns is None or list(patterns) == ["all"]:
    return names
  chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
  unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
  if unmatched:
    raise ValueError(f"`members` {unmatched} match no member of {zoo_dir}; members: {names}.")
  return chosen


def features_path(output_dir: str | os.PathLike, split: str, member: str,
                  step: int) -> pathlib.Path:
  """The store entry (`.safetensors` path) of one member's checkpoint on one split."""
  return pathlib.Path(output_dir) / split / member / f"step_{step:06d}.safetensors"


def _select_steps(available: list[int], steps: Sequence[int] | str) -> list[int]:
  if steps == "all":
    return available
  if steps == "last":
    return available[-1:]
  return [s for s in available if s in set(steps)]


def _already_written(path: pathlib.Path, expected: dict[str, Any]) -> bool:
  """True when the entry exists whole and was extracted from the same samples."""
  sidecar = path.with_suffix(".json")
  if not (path.is_file() and sidecar.is_file()):
    return False
  try:
    with open(sidecar) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  return all(meta.get(k) == v for k, v in expected.items())


def _pooling(model) -> str:
  tokens = ("CLS token" if model.token_pooling == "cls"
            else "mean over tokens (padding excluded)")
  return f"[B,T,D] outputs: {tokens}; feature maps: mean over positions; [B,D] as is"


def extract_zoo_features(zoo_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                         members: Sequence[str] | None = None,
                         steps: Sequence[int] | str = "all", split: str = "test",
                         num_examples: int | None = None, batch_size: int = 256,
                         mesh: Mesh | None = None, raw_baseline: bool = True,
                         data_dir: str | None = None,
                         load_dataset: Callable | None = None,
                         dataset_spec: Callable | None = None,
                         restore: Callable[[pathlib.Path, int], Any] | None = None,
                         log: Callable[[str], None] = print) -> list[pathlib.Path]:
  """Writes every layer's features of every chosen member and checkpoint.

  Args:
    zoo_dir: the trained zoo (member directories with manifest.json).
    output_dir: the feature store root (layout in the module docstring).
    members: member names or globs (None: all).
    steps: 'all', 'last', or checkpoint steps (members lacking one skip it).
    split: dataset split to extract ('test', 'train').
    num_examples: the first N examples of the split (None: all).
    batch_size: rows per device step (see `extract_features`).
    mesh: shard each batch over this mesh (None: one device).
    raw_baseline: also write the raw inputs of each (dataset, modality) met.
    data_dir: passed to `load_dataset`.
    load_dataset, dataset_spec: the zoo's dataset functions (defaults:
      `platonic_jax.zoo.load_dataset` / `dataset_spec`).
    restore: `restore(member_dir, step) -> encoder` (default:
      `platonic_jax.zoo.restore_member` with `make_encoder` and `dataset_spec`).
    log: receives one line per entry written or skipped.

  Returns:
    Paths of the entries written or already present, in order.

  Cost: per checkpoint, one restore and one streamed forward pass over N.
  """
  load_dataset = load_dataset or _data.load_dataset
  dataset_spec = dataset_spec or _data.dataset_spec
  if restore is None:

    def restore(member_dir, step):
      return _checkpoint.restore_member(member_dir, step, make_encoder=_families.make_encoder,
                                        dataset_spec=dataset_spec)
  zoo_dir = pathlib.Path(zoo_dir)
  datasets: dict[str, dict[str, np.ndarray]] = {}

  def data(name: str) -> dict[str, np.ndarray]:
    if name not in datasets:
      datasets[name] = load_dataset(name, split, data_dir=data_dir, num_examples=num_examples)
    return datasets[name]

  written, raw_done = [], set()
  for member in zoo_members(zoo_dir, members):
    manifest = _checkpoint.load_manifest(zoo_dir / member)
    spec = manifest["spec"]
    modality, dataset = spec["modality"], spec["dataset"]
    if modality not in _INPUT_KEYS:
      raise ValueError(f"member {member}: modality {modality!r} is not one of "
                       f"{sorted(_INPUT_KEYS)}.")
    examples = data(dataset)
    inputs, ids = examples[_INPUT_KEYS[modality]], examples["id"]
    base = dict(dataset=dataset, split=split, num_examples=len(ids), modality=modality)
    if raw_baseline and (dataset, modality) not in raw_done:
      raw_done.add((dataset, modality))
      written.append(_write_raw(output_dir, inputs, ids, base, dataset_spec(dataset), log))
    checkpoints = {c["step"]: c for c in manifest.get("checkpoints", [])}
    for step in _select_steps(sorted(checkpoints), steps):
      path = features_path(output_dir, split, member, step)
      expected = dict(base, model=member, step=step)
      if _already_written(path, expected):
        log(f"skip {path} (already written)")
      else:
        encoder = restore(zoo_dir / member, step)
        layers = _extract.extract_features(encoder, inputs, batch_size=batch_size, mesh=mesh)
        meta = dict(expected, sample_ids=ids, layer_names=_capture.layer_names(encoder),
                    pooling=_pooling(encoder), spec=spec, num_params=manifest.get("num_params"),
                    eval=checkpoints[step].get("eval"))
        _feature_store.save_layer_features(path.parent, path.stem, layers, meta)
        log(f"wrote {path} ({len(layers)} layers, N={len(ids)})")
      written.append(path)
  return written


def _write_raw(output_dir, inputs, ids, base: dict, spec, log) -> pathlib.Path:
  modality, dataset = base["modality"], base["dataset"]
  member = f"raw-{dataset.replace('/', '_')}-{modality}"  # 'world/small' -> one directory
  path = features_path(output_dir, base["split"], member, 0)
  expected = dict(base, model=member, step=0)
  if _already_written(path, expected):
    log(f"skip {path} (already written)")
    return path
  raw = _extract.raw_input_features(inputs, modality=modality,
                                    vocab_size=getattr(spec, "vocab_size", None))
  meta = dict(expected, sample_ids=ids, layer_names=list(raw),
              pooling="none: the inputs themselves (pixels in [0, 1]; token counts)")
  _feature_store.save_layer_features(path.parent, path.stem, list(raw.values()), meta)
  log(f"wrote {path} (raw-input baseline, N={len(ids)})")
  return path
