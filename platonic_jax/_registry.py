"""Metric registry: every alignment metric by name, with its metadata."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from platonic_jax import _cka, _cknna, _knn_metrics, _svcca, _validation


@dataclasses.dataclass(frozen=True)
class MetricInfo:
  """What a caller needs to know about a metric without reading its code.

  Attributes:
    name: registry key.
    fn: `fn(a, b, **hyperparameters) -> scalar jax.Array`.
    hyperparameters: accepted keyword arguments and their defaults.
    value_range: `value_range(**hyperparameters) -> (low, high)`, the
      attainable interval (lcs_knn's upper end is k).
    symmetric: fn(a, b) == fn(b, a) for all inputs.
    higher_is_more_similar: larger values mean more aligned.
    uses_knn: computed from neighbour lists (can share cached kNN).
    cost: asymptotic time and memory.
  """
  name: str
  fn: Callable[..., Any]
  hyperparameters: Mapping[str, Any]
  value_range: Callable[..., tuple[float, float]]
  symmetric: bool
  higher_is_more_similar: bool
  uses_knn: bool
  cost: str

  def range_for(self, **hyperparameters) -> tuple[float, float]:
    return self.value_range(**{**self.hyperparameters, **hyperparameters})


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(info: MetricInfo, *, overwrite: bool = False) -> MetricInfo:
  """Adds a metric to the registry; refuses to replace one unless `overwrite`."""
  if info.name in _REGISTRY and not overwrite:
    raise ValueError(f"metric {info.name!r} is already registered.")
  _REGISTRY[info.name] = info
  return info


def metric_names() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def get_metric(name: str) -> MetricInfo:
  """The registered metric `name`; unknown names raise with the close matches."""
  return _validation.lookup(_REGISTRY, name, "metric")


# Keyword names of the reference implementation (AlignmentMetrics.measure), so
# code ported from it keeps working through `measure`.
_REFERENCE_KEYWORDS = {"topk": "k", "kernel_metric": "kernel", "rbf_sigma": "sigma"}
_REFERENCE_KERNELS = {"ip": "linear"}


def resolve_hyperparameters(info: MetricInfo, hyperparameters: Mapping[str, Any]) -> dict:
  """The caller's keywords, checked against `info` (reference spellings mapped)."""
  kwargs = {}
  for key, value in hyperparameters.items():
    key = _REFERENCE_KEYWORDS.get(key, key)
    if key == "kernel":
      value = _REFERENCE_KERNELS.get(value, value)
    if key not in info.hyperparameters:
      raise ValueError(
          f"metric {info.name!r} takes no hyper-parameter {key!r}; it accepts "
          f"{sorted(info.hyperparameters) or 'none'} (and the reference's spellings "
          f"{', '.join(f'{ref}={ours}' for ref, ours in _REFERENCE_KEYWORDS.items())}).")
    kwargs[key] = value
  return kwargs


def measure(name: str, a, b, **hyperparameters):
  """Computes registered metric `name` on features `a: [N, Da]`, `b: [N, Db]`.

  Hyper-parameters are the metric's keywords (`get_metric(name).hyperparameters`);
  the reference's spellings `topk`, `kernel_metric` ('ip'), `rbf_sigma` are
  accepted too. Returns a scalar `jax.Array`.
  """
  info = get_metric(name)
  return info.fn(a, b, **resolve_hyperparameters(info, hyperparameters))


def _unit(**_):
  return (0.0, 1.0)


def _signed(**_):
  return (-1.0, 1.0)


def _zero_to_k(k, **_):
  return (0.0, float(k))


_KNN_COST = "two tiled kNN: ~N^2 (Da+Db)/2 MACs, O(N k + tile^2) memory; then "
_SHARDING = {"mesh": None, "axis_name": None}
_KNN_HYPER = {"k": 10, "precision": "highest", "tile_size": None, **_SHARDING}
_CKA_HYPER = {"kernel": "linear", "sigma": 1.0, "method": "auto",
              "chunk_size": _cka.DEFAULT_CHUNK_ROWS, "tile_size": None, **_SHARDING}

for _info in (
    MetricInfo("mutual_knn", _knn_metrics.mutual_knn, _KNN_HYPER, _unit, True, True, True,
               _KNN_COST + "O(N k log k)"),
    MetricInfo("cycle_knn", _knn_metrics.cycle_knn, _KNN_HYPER, _unit, False, True, True,
               _KNN_COST + "O(N k^2)"),
    MetricInfo("lcs_knn", _knn_metrics.lcs_knn, _KNN_HYPER, _zero_to_k, True, True, True,
               _KNN_COST + "O(N k^2)"),
    MetricInfo("edit_distance_knn", _knn_metrics.edit_distance_knn, _KNN_HYPER, _unit, True,
               True, True, _KNN_COST + "O(N k^2)"),
    MetricInfo("cka", _cka.cka, {**_CKA_HYPER, "unbiased": False},
               lambda unbiased=False, **_: (-1.0, 1.0) if unbiased else (0.0, 1.0),
               True, True, False,
               "linear: O(N (Da+Db)^2) time, O((Da+Db)^2) memory; "
               "rbf (tiled): O(N^2 (Da+Db)) time, O(tile^2 + N) memory"),
    MetricInfo("unbiased_cka", _cka.unbiased_cka, _CKA_HYPER,
               _signed, True, True, False,
               "linear: O(N (Da+Db)^2) time, O((Da+Db)^2) memory; "
               "rbf (tiled): O(N^2 (Da+Db)) time, O(tile^2 + N) memory"),
    MetricInfo("cknna", _cknna.cknna,
               {"k": 10, "unbiased": True, "precision": "highest", "tile_size": None,
                **_SHARDING},
               _signed, False, True, True, _KNN_COST + "O(N k^2), O(N k) memory"),
    MetricInfo("svcca", _svcca.svcca,
               {"cca_dim": 10, "method": "auto", "chunk_size": _cka.DEFAULT_CHUNK_ROWS,
                **_SHARDING},
               _unit, True, True, False,
               "features: O(N (Da+Db)^2 + D^3) time, O((Da+Db)^2) memory; "
               "svd: O(N D min(N, D)), O(N D)"),
):
  register_metric(_info)
