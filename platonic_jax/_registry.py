"""Metric registry: every alignment metric by name, with its metadata."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Mapping

from platonic_jax import _cka, _cknna, _hsic, _knn_metrics, _svcca, _validation


def _default_pair_cost(n: int, da: int, db: int, **_) -> int:
  return 4 * n * (da + db) + (da + db) ** 2


def _never(**_) -> bool:
  return False


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
    uses_knn: computed from neighbour lists.
    cost: asymptotic time and memory.
    from_neighbours: for metrics computed from each input's kNN alone:
      `from_neighbours(na, nb, **hyperparameters) -> scalar`, scoring two
      cached `Neighbours` (`[N, k]` lists, their similarities, a constant flag).
      Layer grids and zoos then compute each layer's kNN once (hyper-parameters
      `k`, `precision`, `tile_size`) and score every layer pair from the cache.
      None: the metric is evaluated on features for every pair.
    neighbours_include_self: `f(**hyperparameters) -> bool`, whether the cached
      lists must include the sample itself (the biased CKNNA).
    rejects_constant: the metric refuses inputs constant over samples (their
      neighbours would be tie-breaks only).
    pair_cost: `pair_cost(n, da, db, **hyperparameters) -> int`, elements of
      temporaries one pair evaluation holds (batches of layer pairs are sized
      with it).
  """
  name: str
  fn: Callable[..., Any]
  hyperparameters: Mapping[str, Any]
  value_range: Callable[..., tuple[float, float]]
  symmetric: bool
  higher_is_more_similar: bool
  uses_knn: bool
  cost: str
  from_neighbours: Callable[..., Any] | None = None
  neighbours_include_self: Callable[..., bool] = _never
  rejects_constant: bool = False
  pair_cost: Callable[..., int] = _default_pair_cost

  def range_for(self, **hyperparameters) -> tuple[float, float]:
    return self.value_range(**{**self.hyperparameters, **hyperparameters})


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(info: MetricInfo, *, overwrite: bool = False) -> MetricInfo:
  """Adds a metric to the registry; refuses to replace one unless `overwrite`."""
  if info.name in _REGISTRY and not overwrite:
    raise ValueError(f"metric {info.name!r} is already registered.")
  _REGISTRY[info.name] = info
  return info


@contextlib.contextmanager
def registered_metric(info: MetricInfo, *, overwrite: bool = False) -> Iterator[MetricInfo]:
  """Registers `info` for the duration of a `with` block, then restores the registry.

  For tests and experiments: the metric (or the one it replaced, with
  `overwrite`) is back as it was when the block exits, also on an exception.
  """
  previous = _REGISTRY.get(info.name)
  register_metric(info, overwrite=overwrite)
  try:
    yield info
  finally:
    if previous is None:
      _REGISTRY.pop(info.name, None)
    else:
      _REGISTRY[info.name] = previous


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


def _index_metric(kernel):
  """`from_neighbours` of a metric on the two index lists alone."""
  def from_neighbours(na, nb, **_):
    return kernel(na.index, nb.index)
  return from_neighbours


def _neighbour_pair_cost(per_row: Callable[[int], int]):
  """Pair cost of a neighbour metric: `per_row(k)` elements for each of the N rows."""
  def pair_cost(n, da, db, k=10, **_):
    return n * per_row(k)
  return pair_cost


def _cka_pair_cost(n, da, db, kernel="linear", method="auto", chunk_size=4096, **_):
  gram = kernel == "rbf" or method == "gram" or (
      method == "auto" and _hsic.linear_method(n, da, db) == "gram")
  d = da + db
  return 4 * n * d + d * d + (6 * n * n if gram else chunk_size * d)


def _cknna_includes_self(unbiased=True, **_):
  return not unbiased


_KNN_COST = "two tiled kNN: ~N^2 (Da+Db)/2 MACs, O(N k + tile^2) memory; then "
_SHARDING = {"mesh": None, "axis_name": None}
_KNN_HYPER = {"k": 10, "precision": "highest", "tile_size": None, **_SHARDING}
_CKA_HYPER = {"kernel": "linear", "sigma": 1.0, "method": "auto",
              "chunk_size": _hsic.DEFAULT_CHUNK_ROWS, "tile_size": None, **_SHARDING}
_CKA_COST = ("linear: O(N (Da+Db)^2) time, O((Da+Db)^2) memory; "
             "rbf (tiled): O(N^2 (Da+Db)) time, O(tile^2 + N) memory")

for _info in (
    MetricInfo("mutual_knn", _knn_metrics.mutual_knn, _KNN_HYPER, _unit, True, True, True,
               _KNN_COST + "O(N k log k)",
               from_neighbours=_index_metric(_knn_metrics.mutual_knn_kernel),
               rejects_constant=True, pair_cost=_neighbour_pair_cost(lambda k: 6 * k)),
    MetricInfo("cycle_knn", _knn_metrics.cycle_knn, _KNN_HYPER, _unit, False, True, True,
               _KNN_COST + "O(N k^2)",
               from_neighbours=_index_metric(_knn_metrics.cycle_knn_kernel),
               rejects_constant=True, pair_cost=_neighbour_pair_cost(lambda k: 3 * k * k + k)),
    MetricInfo("lcs_knn", _knn_metrics.lcs_knn, _KNN_HYPER, _zero_to_k, True, True, True,
               _KNN_COST + "O(N k^2)",
               from_neighbours=_index_metric(_knn_metrics.lcs_knn_kernel),
               rejects_constant=True, pair_cost=_neighbour_pair_cost(lambda k: 8 * k)),
    MetricInfo("edit_distance_knn", _knn_metrics.edit_distance_knn, _KNN_HYPER, _unit, True,
               True, True, _KNN_COST + "O(N k^2)",
               from_neighbours=_index_metric(_knn_metrics.edit_distance_knn_kernel),
               rejects_constant=True, pair_cost=_neighbour_pair_cost(lambda k: 8 * k)),
    MetricInfo("cka", _cka.cka, {**_CKA_HYPER, "unbiased": False},
               lambda unbiased=False, **_: (-1.0, 1.0) if unbiased else (0.0, 1.0),
               True, True, False, _CKA_COST, pair_cost=_cka_pair_cost),
    MetricInfo("unbiased_cka", _cka.unbiased_cka, _CKA_HYPER,
               _signed, True, True, False, _CKA_COST, pair_cost=_cka_pair_cost),
    MetricInfo("cknna", _cknna.cknna,
               {"k": 10, "unbiased": True, "precision": "highest", "tile_size": None,
                **_SHARDING},
               _signed, False, True, True, _KNN_COST + "O(N k^2), O(N k) memory",
               from_neighbours=_cknna.cknna_from_neighbours,
               neighbours_include_self=_cknna_includes_self,
               # one row chunk of k x k compares plus the per-slot terms
               pair_cost=lambda n, da, db, k=10, **_: (
                   3 * min(_cknna.ROW_CHUNK, n) * k * k + 24 * n * k)),
    MetricInfo("svcca", _svcca.svcca,
               {"cca_dim": 10, "method": "auto", "chunk_size": _hsic.DEFAULT_CHUNK_ROWS,
                **_SHARDING},
               _unit, True, True, False,
               "features: O(N (Da+Db)^2 + D^3) time, O((Da+Db)^2) memory; "
               "svd: O(N D min(N, D)), O(N D)"),
):
  register_metric(_info)
