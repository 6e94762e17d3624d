"""Metric registry: every alignment metric by name, with its metadata.

Each metric module registers its own metrics (at its end), so a new metric is
one module's change; `platonic_jax/__init__.py` imports them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Mapping

from platonic_jax import _validation


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


def unit_range(**_) -> tuple[float, float]:
  return (0.0, 1.0)


def signed_range(**_) -> tuple[float, float]:
  return (-1.0, 1.0)


SHARDING_HYPERPARAMETERS = {"mesh": None, "axis_name": None}
KNN_HYPERPARAMETERS = {"k": 10, "precision": "highest", "tile_size": None,
                       **SHARDING_HYPERPARAMETERS}
KNN_COST = "two tiled kNN: ~N^2 (Da+Db)/2 MACs, O(N k + tile^2) memory; then "
