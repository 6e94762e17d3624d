"""Alignment between feature sets, each score beside its nulls and intervals, durably recorded.

For every metric and every pair of feature sets (both orders when the metric
is not symmetric) one measurement is made and appended as one fsynced JSON
line: the layer grid; the best-layer score with the null of the layer search
(the same maximum under shuffled correspondence) and its p-value; a
fixed-layer score (last layers by default) with its own permutation null;
and half-sampling bootstrap intervals for both. A killed run loses nothing:
rerun with the same records file and finished measurements are skipped.

Every pair uses the same permutations and half-samples (generated once from
the seed), so their nulls and intervals are comparable.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

import platonic_jax as pj
from platonic_jax import bench
from platonic_jax.study import _inputs, _stats

DEFAULT_METRICS = ("mutual_knn", "unbiased_cka", "cknna")
RECORD_KIND = "alignment"


@dataclasses.dataclass(frozen=True)
class AlignmentMatrix:
  """One metric across M feature sets: `[M, M]` arrays, row = `a`, column = `b`.

  The diagonal (a set with itself) is NaN. Symmetric metrics are measured
  for one order and mirrored (layer pairs swapped).

  Attributes:
    metric: the metric name.
    members: the M feature-set names.
    scores: best-layer scores (biased up: a max over layer pairs).
    best_layers: int `[M, M, 2]` layer pair of each best score (-1 on the diagonal).
    low, high: half-sampling interval of the best-layer score.
    null_mean, null_std: the layer-search null (max over pairs, shuffled).
    p_value: of the best-layer score against the layer-search null.
    fixed_scores: the fixed-layer scores; `fixed_low`, `fixed_high` their
      interval; `fixed_null_mean`, `fixed_p_value` their permutation null.
  """
  metric: str
  members: tuple[str, ...]
  scores: np.ndarray
  best_layers: np.ndarray
  low: np.ndarray
  high: np.ndarray
  null_mean: np.ndarray
  null_std: np.ndarray
  p_value: np.ndarray
  fixed_scores: np.ndarray
  fixed_low: np.ndarray
  fixed_high: np.ndarray
  fixed_null_mean: np.ndarray
  fixed_p_value: np.ndarray


def prepared_layers(feature_set: _inputs.FeatureSet) -> list[np.ndarray]:
  """The reference's preparation: clamp at the 0.95 quantile of |x|, then L2 rows.

  Layers of one width are prepared as one `[L, N, D]` tensor (one clamp
  threshold for the model, as the reference); layers of different widths,
  which the reference cannot hold in one tensor, each get their own.
  """
  layers = feature_set.layers
  if len({x.shape[1] for x in layers}) == 1:
    return list(np.asarray(pj.prepare_features(np.stack(layers))))
  return [np.asarray(pj.prepare_features(x)) for x in layers]


def _hyperparameters(metric: str, k: int) -> dict[str, Any]:
  return {"k": k} if "k" in pj.get_metric(metric).hyperparameters else {}


def _pairs(num_sets: int, symmetric: bool) -> list[tuple[int, int]]:
  return [(i, j) for i in range(num_sets) for j in range(num_sets)
          if i != j and (not symmetric or i < j)]


def _fingerprint(feature_set: _inputs.FeatureSet) -> str:
  """Hash of a set's layer shapes and values: a resumed run re-measures changed features."""
  digest = hashlib.sha256()
  for layer in feature_set.layers:
    digest.update(repr(layer.shape).encode())
    digest.update(np.ascontiguousarray(layer, np.float32).tobytes())
  return digest.hexdigest()[:16]


def _identity(metric: str, a: str, b: str, config: Mapping[str, Any],
              fingerprints: Sequence[str]) -> str:
  return json.dumps([metric, a, b, dict(sorted(config.items())), list(fingerprints)],
                    sort_keys=True)


def measure_pair(metric: str, a_layers: Sequence[np.ndarray], b_layers: Sequence[np.ndarray], *,
                 permutations: np.ndarray, resamples: np.ndarray, confidence: float = 0.95,
                 fixed_pair: tuple[int, int] | None = None, mesh: Mesh | None = None,
                 **hyperparameters) -> dict[str, Any]:
  """Every number of one measurement of `metric` between two models.

  Args:
    metric: a registered metric name.
    a_layers, b_layers: the two models' layers, `[N, D_l]` each (prepared as
      the caller wants).
    permutations: int `[P, N]` (from `permutations`), shared across pairs.
    resamples: int `[R, M]` half-samples (from `resamples`), shared across pairs.
    confidence: interval coverage.
    fixed_pair: the pre-chosen layer pair (default the last layers).
    mesh: split every statistic over this mesh's devices (same numbers).
    **hyperparameters: the metric's keywords.

  Returns:
    A JSON-ready dict: `layer_scores`, `best_score`, `best_layers`,
    `search_null_mean`, `search_null_std`, `search_p_value`, `best_interval`,
    `fixed_layers`, `fixed_score`, `fixed_null_mean`, `fixed_null_std`,
    `fixed_p_value`, `fixed_interval`.

  Cost: one `layer_search_null` and one or two `bootstrap_interval`s (best and
  fixed pair).
  """
  search = _stats.layer_search_null(metric, list(a_layers), list(b_layers),
                                    indices=permutations, fixed_pair=fixed_pair, mesh=mesh,
                                    **hyperparameters)
  return _pair_fields(metric, search, a_layers, b_layers, resamples, confidence, mesh,
                      hyperparameters)


def _pair_fields(metric: str, search: _stats.LayerSearchNull, a_layers, b_layers, resamples,
                 confidence: float, mesh, hyperparameters) -> dict[str, Any]:
  """The record fields of one pair: its layer-search null and the two intervals."""
  intervals = {}
  for pair in {search.best_pair, search.fixed_pair}:
    interval = _stats.bootstrap_interval(metric, a_layers[pair[0]], b_layers[pair[1]],
                                         indices=resamples, confidence=confidence, mesh=mesh,
                                         **hyperparameters)
    intervals[pair] = [interval.low, interval.high]
  return {
      "layer_scores": search.scores.tolist(),
      "best_score": search.best_score,
      "best_layers": list(search.best_pair),
      "search_null_mean": search.null_mean,
      "search_null_std": search.null_std,
      "search_p_value": search.p_value,
      "best_interval": intervals[search.best_pair],
      "fixed_layers": list(search.fixed_pair),
      "fixed_score": search.fixed_score,
      "fixed_null_mean": float(search.fixed_null.mean()),
      "fixed_null_std": float(search.fixed_null.std()),
      "fixed_p_value": search.fixed_p_value,
      "fixed_interval": intervals[search.fixed_pair],
  }


def measure_feature_sets(
    feature_sets: Sequence[_inputs.FeatureSet],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    k: int = 10,
    num_permutations: int = 100,
    num_resamples: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    prepare: bool = True,
    records_path: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    mesh: Mesh | None = None,
) -> list[dict[str, Any]]:
  """Measures every metric between every pair of feature sets, with nulls and intervals.

  Args:
    feature_sets: >= 2 sets describing the same N samples (`load_feature_sets`).
    metrics: registered metric names (default mutual_knn, unbiased_cka, cknna).
    k: neighbours, for the metrics that take `k`.
    num_permutations: P, shared by every pair (`permutations(N, P, seed)`).
    num_resamples: R half-samples, shared by every pair (`resamples(N, R, seed)`).
    confidence: interval coverage in (0, 1).
    seed: non-negative int for both index sets.
    prepare: clamp and L2-normalise each model's layers first, as the
      reference does (`prepared_layers`).
    records_path: a JSONL file; each measurement is appended as one fsynced
      line and measurements already there (same metric, pair, settings and
      feature values, by a SHA-256 fingerprint) are skipped, so an
      interrupted run resumes and changed features are measured again.
    progress: called with a one-line description of each measurement, after
      its layer-search null and before its intervals.
    mesh: split every statistic over this mesh's devices (kNN searches as
      the device ring, permutations and half-samples divided between the
      devices); the numbers equal one device's (kNN scores exactly, CKA to
      float32 rounding), so records made either way resume each other.

  Returns:
    The records of every requested measurement (read back or new), in
    metric, then pair order. Each has `kind`, `metric`, `a`, `b`, `config`
    (k, P, R, confidence, seed, prepare, N), `fingerprints` (of a's and b's
    features), `recorded_at` and the fields of `measure_pair`.

  Raises:
    ValueError: fewer than 2 sets, sets with different N or repeated names,
      unknown metrics, bad `k`, `num_permutations`, `num_resamples`,
      `confidence` or `seed`, and what the statistics raise.

  Cost: per metric, `iter_zoo_search_nulls` over the pairs to measure (kNN
  metrics search each set's layers once for the whole run, then (P + 1) La Lb
  pair kernels per pair), and per pair one or two half-sampling intervals
  (R metric evaluations on N / 2 rows each).
  """
  if len(feature_sets) < 2:
    raise ValueError(f"`feature_sets` needs at least 2 sets to compare, got {len(feature_sets)}.")
  names = [s.name for s in feature_sets]
  if len(set(names)) != len(names):
    raise ValueError(f"`feature_sets` names must be unique, got {names}.")
  n = feature_sets[0].num_samples
  for s in feature_sets:
    if s.num_samples != n:
      raise ValueError(f"every feature set must have the same N: {names[0]!r} has N={n}, "
                       f"{s.name!r} has N={s.num_samples}.")
  infos = [pj.get_metric(metric) for metric in metrics]
  if not infos:
    raise ValueError("`metrics` is empty; name at least one registered metric.")
  for value, name in ((num_permutations, "num_permutations"), (num_resamples, "num_resamples"),
                      (k, "k")):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
  if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not (
      0.0 < confidence < 1.0):
    raise ValueError(f"`confidence` must be a number in (0, 1), got {confidence!r}.")
  permutations = _stats.permutations(n, num_permutations, seed)
  resamples = _stats.resamples(n, num_resamples, seed)
  layers = [prepared_layers(s) if prepare else s.layers for s in feature_sets]
  writer = bench.RecordWriter(records_path) if records_path is not None else None
  fingerprints = [_fingerprint(s) for s in feature_sets]
  done = {}
  if records_path is not None:
    for record in bench.load_records(records_path):
      if record.get("kind") == RECORD_KIND:
        key = _identity(record["metric"], record["a"], record["b"], record["config"],
                        record.get("fingerprints", []))
        done[key] = record
  out = []
  for info in infos:
    hyper = _hyperparameters(info.name, k)
    config = {**hyper, "num_permutations": int(num_permutations),
              "num_resamples": int(num_resamples), "confidence": float(confidence),
              "seed": int(seed), "prepare": bool(prepare), "num_samples": n}
    by_pair = {}
    for i, j in _pairs(len(feature_sets), info.symmetric):
      by_pair[i, j] = done.get(_identity(info.name, names[i], names[j], config,
                                         [fingerprints[i], fingerprints[j]]))
    todo = [pair for pair, record in by_pair.items() if record is None]
    searches = _stats.iter_zoo_search_nulls(info.name, layers, pairs=todo, indices=permutations,
                                            mesh=mesh, **hyper) if todo else iter(())
    for (i, j), search in searches:
      if progress is not None:
        progress(f"{info.name}: {names[i]} vs {names[j]}")
      record = {"kind": RECORD_KIND, "metric": info.name, "a": names[i], "b": names[j],
                "config": config, "fingerprints": [fingerprints[i], fingerprints[j]],
                **_pair_fields(info.name, search, layers[i], layers[j], resamples, confidence,
                               mesh, hyper),
                "recorded_at": datetime.datetime.now(datetime.UTC).isoformat()}
      if writer is not None:
        writer.write(record)
      by_pair[i, j] = record
    out.extend(by_pair.values())
  return out


def alignment_matrix(records: Iterable[Mapping[str, Any]], metric: str,
                     members: Sequence[str] | None = None) -> AlignmentMatrix:
  """Collects one metric's records into `[M, M]` arrays (see `AlignmentMatrix`).

  Args:
    records: alignment records (`measure_feature_sets`, or read back with
      `platonic_jax.bench.load_records`); other kinds and metrics are ignored.
    metric: which metric.
    members: row/column order (default: first appearance in the records).

  Returns:
    The matrix; pairs without a record are NaN (layers -1).

  Raises:
    ValueError: no record of `metric`, or a record naming a member not in `members`.
  """
  chosen = [r for r in records if r.get("kind") == RECORD_KIND and r.get("metric") == metric]
  if not chosen:
    raise ValueError(f"no alignment record of metric {metric!r}.")
  if members is None:
    members = list(dict.fromkeys(name for r in chosen for name in (r["a"], r["b"])))
  position = {name: m for m, name in enumerate(members)}
  size = len(members)
  fields = {name: np.full((size, size), np.nan) for name in (
      "scores", "low", "high", "null_mean", "null_std", "p_value", "fixed_scores", "fixed_low",
      "fixed_high", "fixed_null_mean", "fixed_p_value")}
  best_layers = np.full((size, size, 2), -1, dtype=np.int64)
  symmetric = pj.get_metric(metric).symmetric
  for r in chosen:
    for name in (r["a"], r["b"]):
      if name not in position:
        raise ValueError(f"record of {metric!r} names {name!r}, which is not in `members`.")
    cells = [(position[r["a"]], position[r["b"]], False)]
    if symmetric:
      cells.append((position[r["b"]], position[r["a"]], True))
    for i, j, mirrored in cells:
      fields["scores"][i, j] = r["best_score"]
      fields["low"][i, j], fields["high"][i, j] = r["best_interval"]
      fields["null_mean"][i, j] = r["search_null_mean"]
      fields["null_std"][i, j] = r["search_null_std"]
      fields["p_value"][i, j] = r["search_p_value"]
      fields["fixed_scores"][i, j] = r["fixed_score"]
      fields["fixed_low"][i, j], fields["fixed_high"][i, j] = r["fixed_interval"]
      fields["fixed_null_mean"][i, j] = r["fixed_null_mean"]
      fields["fixed_p_value"][i, j] = r["fixed_p_value"]
      best_layers[i, j] = r["best_layers"][::-1] if mirrored else r["best_layers"]
  return AlignmentMatrix(metric=metric, members=tuple(members), best_layers=best_layers,
                         **fields)


def matrix_json(matrix: AlignmentMatrix) -> dict[str, Any]:
  """`AlignmentMatrix` as JSON-ready nested lists (NaN as null)."""
  out = {}
  for field in dataclasses.fields(matrix):
    value = getattr(matrix, field.name)
    if isinstance(value, np.ndarray):
      value = np.where(np.isnan(value), None, value).tolist() if value.dtype.kind == "f" else (
          value.tolist())
    out[field.name] = list(value) if isinstance(value, tuple) else value
  return out
