"""Honest numbers: permutation nulls, bootstrap intervals and the layer-search null.

Every statistic works for any registered metric (`platonic_jax.get_metric`)
and is one jitted call, `vmap`ped over resamples in batches sized to a fixed
working-set budget (`lax.map(..., batch_size=...)`), so memory stays bounded
however many resamples are asked for.

Resample index sets come from `permutations(n, count, seed)` and
`resamples(n, count, seed)`: generated once, on the host, reproducible from
the seed, and reusable across the members of a zoo (pass them as `indices`).

Intervals come from half-samples (N // 2 rows without replacement), never
from draws with replacement: see `bootstrap_interval` for why.

kNN metrics reuse their neighbour lists where that is exact. Permuting the
rows of `b` by `p` (b' = b[p]) permutes its neighbour lists exactly:

  knn(b[p]) = p^{-1}[knn(b)[p]]      (p^{-1} the inverse permutation),

and the similarities along the lists move with their rows (sim(b[p]) =
sim(b)[p]). So a permutation null of any metric scored from neighbour lists
(`MetricInfo.from_neighbours`: mutual, cycle, lcs, edit-distance kNN, CKNNA)
needs two kNN searches in total, not two per permutation. The identity
is exact whenever no two candidates tie in similarity; with exact ties the
recomputed lists may break them differently (ties go to the lower index, and
indices move under p).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.typing import ArrayLike
from jaxtyping import Float, Int

from platonic_jax import _knn, _layers, _mesh, _registry, _tiles, _validation

_PERMUTATION_STREAM = 0
_RESAMPLE_STREAM = 1


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PermutationTest:
  """A score beside its permutation null (shuffled sample correspondence).

  Attributes:
    score: the metric on the true pairing.
    null_mean: mean of the null scores.
    null_std: standard deviation of the null scores (ddof = 0).
    p_value: (1 + #{null at least as aligned as score}) / (P + 1); its
      minimum is 1 / (P + 1).
    null: float32 `[P]`, the metric under each permutation of `b`'s rows.
  """
  score: float
  null_mean: float
  null_std: float
  p_value: float
  null: np.ndarray


@dataclasses.dataclass(frozen=True)
class BootstrapInterval:
  """A score with a percentile bootstrap interval over samples.

  Attributes:
    score: the metric on all N samples.
    low: lower end of the interval ((1 - confidence) / 2 quantile of `samples`).
    high: upper end ((1 + confidence) / 2 quantile).
    samples: float32 `[R]`, the metric on each resample.
  """
  score: float
  low: float
  high: float
  samples: np.ndarray


@dataclasses.dataclass(frozen=True)
class LayerSearchNull:
  """The best-layer score, a fixed-layer score, and the null of each.

  Attributes:
    scores: float32 `[La, Lb]`, the observed layer grid.
    best_score: `scores.max()`, the reference's best-layer score (biased up).
    best_pair: `(i, j)` of the first maximum in row-major order.
    null: float32 `[P]`, the grid maximum under each shuffled correspondence
      (one permutation applied to every layer of `b`): the null of the search.
    null_mean: mean of `null`.
    null_std: standard deviation of `null` (ddof = 0).
    p_value: (1 + #{null >= best_score}) / (P + 1).
    fixed_pair: the pre-chosen layer pair `(i, j)`.
    fixed_score: `scores[fixed_pair]`.
    fixed_null: float32 `[P]`, the fixed pair's score under the same permutations.
    fixed_p_value: (1 + #{fixed_null >= fixed_score}) / (P + 1).
  """
  scores: np.ndarray
  best_score: float
  best_pair: tuple[int, int]
  null: np.ndarray
  null_mean: float
  null_std: float
  p_value: float
  fixed_pair: tuple[int, int]
  fixed_score: float
  fixed_null: np.ndarray
  fixed_p_value: float


# --------------------------------------------------------------------------
# Resample index sets
# --------------------------------------------------------------------------

def _generator(seed, stream: int) -> np.random.Generator:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
  return np.random.default_rng([int(seed), stream])


def permutations(n: int, count: int, seed: int = 0) -> Int[np.ndarray, "count n"]:
  """`count` uniform random permutations of `range(n)`, reproducible from `seed`.

  Args:
    n: samples per permutation (>= 2).
    count: number of permutations (>= 1).
    seed: non-negative int; the same (n, count, seed) always gives the same rows.

  Returns:
    int32 `[count, n]`; row r is a permutation p, used as `b[p]`.

  Cost: O(count n) time and memory, on the host.
  """
  n = _validation.positive_int(n, "n")
  if n < 2:
    raise ValueError(f"`n` must be >= 2 to permute samples, got {n}.")
  count = _validation.positive_int(count, "count")
  rng = _generator(seed, _PERMUTATION_STREAM)
  return rng.permuted(np.tile(np.arange(n, dtype=np.int32), (count, 1)), axis=1)


def resamples(n: int, count: int, seed: int = 0,
              size: int | None = None) -> Int[np.ndarray, "count m"]:
  """`count` subsamples of `size` distinct indices of `range(n)` (default n // 2).

  The half-samples of `bootstrap_interval` (drawn without replacement; see
  there for why).

  Args:
    n: samples (>= 2).
    count: number of subsamples (>= 1).
    seed: non-negative int; the same arguments always give the same rows.
    size: indices per subsample, 1 <= size <= n (default n // 2).

  Returns:
    int32 `[count, size]`, each row distinct indices in random order.

  Cost: O(count n) time, on the host.
  """
  n = _validation.positive_int(n, "n")
  if n < 2:
    raise ValueError(f"`n` must be >= 2 to subsample, got {n}.")
  count = _validation.positive_int(count, "count")
  size = n // 2 if size is None else _validation.positive_int(size, "size")
  if size > n:
    raise ValueError(f"`size` must be at most n = {n}, got {size}.")
  rng = _generator(seed, _RESAMPLE_STREAM)
  return rng.permuted(np.tile(np.arange(n, dtype=np.int32), (count, 1)), axis=1)[:, :size]


def _check_indices(indices, n: int, kind: str) -> np.ndarray:
  """Validates caller-supplied index sets: 'permutation' `[P, N]` or 'resample' `[R, M]`."""
  try:
    indices = np.asarray(indices)
  except Exception as e:  # numpy raises many types; re-raised naming the argument
    raise ValueError(f"`indices` must be an int array, got {type(indices).__name__}.") from e
  if kind == "permutation":
    shape_ok, expected = indices.ndim == 2 and indices.shape[1] == n, f"[P, N] with N = {n}"
  else:
    shape_ok = indices.ndim == 2 and 1 <= indices.shape[1] <= n
    expected = f"[R, M] with 1 <= M <= N = {n}"
  if not shape_ok or indices.shape[0] < 1:
    raise ValueError(f"`indices` must be an int array {expected}, got shape "
                     f"{tuple(indices.shape)}.")
  if not np.issubdtype(indices.dtype, np.integer):
    raise ValueError(f"`indices` must hold integer sample indices, got dtype {indices.dtype}.")
  if indices.min() < 0 or indices.max() >= n:
    raise ValueError(f"`indices` holds sample indices outside [0, N) = [0, {n}).")
  ordered = np.sort(indices, axis=1)
  repeats = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
  if repeats.any():
    raise ValueError(f"`indices[{int(np.argmax(repeats))}]` repeats a sample; each row must "
                     f"hold distinct sample indices (a {kind} without replacement).")
  return indices.astype(np.int32)


# --------------------------------------------------------------------------
# Argument checks (outside jit)
# --------------------------------------------------------------------------

def _plan(metric: str, a, b, hyperparameters):
  """Validated (a, b, plan, info) for one pair of feature matrices."""
  if not isinstance(metric, str):
    raise ValueError(f"`metric` must be a registered metric name (str), got {metric!r}.")
  info = _registry.get_metric(metric)
  a, b = _validation.feature_pair(a, b)
  plan = _layers.make_plan(metric, hyperparameters, [a[None], b[None]], ["a", "b"], a.shape[0])
  return a, b, plan, info


def _p_value(score: float, null: np.ndarray, higher_is_more_similar: bool) -> float:
  """(1 + #{null at least as extreme as score}) / (P + 1): never 0, exact under H0."""
  extreme = null >= score if higher_is_more_similar else null <= score
  return float((1 + np.count_nonzero(extreme)) / (null.size + 1))


# --------------------------------------------------------------------------
# Traced building blocks
# --------------------------------------------------------------------------

def _inverse(p):
  return jnp.zeros_like(p).at[p].set(jnp.arange(p.shape[0], dtype=p.dtype))


def _permute_neighbours(nb: _knn.Neighbours, p) -> _knn.Neighbours:
  """The `Neighbours` of `x[p]` from those of `x` (see the module docstring): exact, O(N k).

  Works on one layer (`[N, k]` lists) or a stack of layers (`[L, N, k]`).
  """
  index = _inverse(p)[jnp.take(nb.index, p, axis=-2)]
  return nb._replace(index=index, similarity=jnp.take(nb.similarity, p, axis=-2))


def _neighbours(x, plan, mesh=None, axes=None):
  k, precision, tile_size = plan.knn_args
  return _knn.neighbours(x, k, precision, tile_size, mesh, axes, include_self=plan.include_self)


def _knn_cost(plan, n: int, d: int) -> int:
  """Working-set elements of one kNN search of `[N, D]` features."""
  k, _, tile_size = plan.knn_args
  tile, _ = _tiles.tile_layout(n, tile_size, min_rows=k + 1)
  return 4 * tile * tile + n * (d + 4 * k)


def _with_identity(perms: np.ndarray) -> jax.Array:
  """`[1 + P, N]`: the identity first, so the observed score comes out of the same map."""
  identity = np.arange(perms.shape[1], dtype=np.int32)[None]
  return jnp.asarray(np.concatenate([identity, perms]))


@functools.partial(jax.jit, static_argnames=("plan", "mesh", "axes"))
def _permuted_scores(a, b, perms, plan, mesh=None, axes=None):
  """The metric on `(a, b[p])` for every row p of `perms` `[P, N]`, float32 `[P]`.

  With `mesh` the kNN searches run as the device ring and the permutations
  are split over the devices.
  """
  n = a.shape[0]
  if not plan.neighbours:
    fn, kwargs = plan.info.fn, plan.kwargs
    return _layers.device_map(
        lambda p, a, b: fn(a, b[p], **kwargs).astype(jnp.float32), perms, (a, b), mesh=mesh,
        axes=axes, per_item_elements=plan.info.pair_cost(n, a.shape[1], b.shape[1], **kwargs))
  pair_fn, cost = _layers.pair_kernel(plan)
  return _layers.device_map(
      lambda p, na, nb: pair_fn(na, _permute_neighbours(nb, p)), perms,
      (_neighbours(a, plan, mesh, axes), _neighbours(b, plan, mesh, axes)), mesh=mesh, axes=axes,
      per_item_elements=cost(n) + 6 * n * plan.knn_args[0])


@functools.partial(jax.jit, static_argnames=("plan", "mesh", "axes"))
def _bootstrap_samples(a, b, draws, plan, mesh=None, axes=None):
  """(the metric on all rows, the metric on `(a[r], b[r])` for each row r of `draws` `[R, M]`).

  With `mesh` the full-sample score runs sharded over rows (the kNN ring, or
  the metric's own sharded path) and the half-samples are split over the devices.
  """
  m = draws.shape[1]
  if not plan.neighbours:
    fn, kwargs = plan.info.fn, plan.kwargs
    observed = fn(a, b, **{**kwargs, "mesh": mesh, "axis_name": axes}).astype(jnp.float32)
    return observed, _layers.device_map(
        lambda r, a, b: fn(a[r], b[r], **kwargs).astype(jnp.float32), draws, (a, b), mesh=mesh,
        axes=axes, per_item_elements=plan.info.pair_cost(m, a.shape[1], b.shape[1], **kwargs))
  pair_fn, cost = _layers.pair_kernel(plan)
  observed = pair_fn(_neighbours(a, plan, mesh, axes), _neighbours(b, plan, mesh, axes))
  per_item = _knn_cost(plan, m, a.shape[1]) + _knn_cost(plan, m, b.shape[1]) + cost(m)
  return observed, _layers.device_map(
      lambda r, a, b: pair_fn(_neighbours(a[r], plan), _neighbours(b[r], plan)), draws, (a, b),
      mesh=mesh, axes=axes, per_item_elements=per_item)


# --------------------------------------------------------------------------
# Public statistics
# --------------------------------------------------------------------------

def permutation_test(
    metric: str,
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    *,
    num_permutations: int = 100,
    seed: int = 0,
    indices: Int[ArrayLike, "p n"] | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> PermutationTest:
  """The metric beside its null under shuffled sample correspondence.

  The null replaces `b` by `b[p]` for P random permutations p (row i of `a`
  no longer describes the same sample as row i of `b`), keeping each model's
  own geometry intact. Metrics scored from neighbour lists (those with
  `MetricInfo.from_neighbours`: mutual, cycle, lcs, edit-distance kNN, CKNNA)
  search each input's neighbours once and permute `b`'s lists exactly
  (`knn(b[p]) = p^{-1}[knn(b)[p]]`, see the module docstring); every other
  metric is evaluated on each `(a, b[p])`, vmapped over permutations.

  Args:
    metric: a registered metric name (`platonic_jax.metric_names()`).
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    num_permutations: P >= 1, used when `indices` is None.
    seed: non-negative int for `permutations(N, P, seed)`.
    indices: optional int `[P, N]` permutations (e.g. from `permutations`) to
      share across several tests; overrides `num_permutations` and `seed`.
    mesh: split the work over this mesh's devices (auto or explicit axes):
      kNN searches run as the device ring (rows split), and the permutations
      are divided between the devices. Without it, inputs whose rows are
      already split over several devices run on their own mesh. The numbers
      equal the single-device ones.
    axis_name: mesh axis (or axes) to split over; default all.
    **hyperparameters: the metric's keywords (static; reference spellings
      such as `topk` accepted).

  Returns:
    `PermutationTest(score, null_mean, null_std, p_value, null [P])`; the
    p-value counts null scores at least as aligned as the observed one.

  Raises:
    ValueError: unknown metric or hyper-parameter, bad `a`/`b` (rank, N,
      NaN/Inf, constant input for kNN metrics), bad `num_permutations`,
      `seed` or `indices`.

  Cost: kNN metrics: two kNN searches (~N^2 (Da + Db) / 2 multiply-adds),
  then P pair kernels of O(N k^2) on permuted lists. Others: P + 1 metric
  evaluations (linear CKA: O(N (Da + Db)^2) each). Memory: one batch of
  permutations within the working-set budget.
  """
  a, b, plan, info = _plan(metric, a, b, hyperparameters)
  n = a.shape[0]
  if indices is None:
    perms = permutations(n, _validation.positive_int(num_permutations, "num_permutations"), seed)
  else:
    perms = _check_indices(indices, n, "permutation")
  place = _mesh.placement([a, b], mesh, axis_name)
  scores = place.run(lambda mesh, a, b, perms: _permuted_scores(a, b, perms, plan, mesh,
                                                                place.axes),
                     a, b, _with_identity(perms))
  scores = np.asarray(scores, np.float32)
  score, null = float(scores[0]), scores[1:]
  return PermutationTest(score, float(null.mean()), float(null.std()),
                         _p_value(score, null, info.higher_is_more_similar), null)


def bootstrap_interval(
    metric: str,
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    *,
    num_resamples: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    indices: Int[ArrayLike, "r m"] | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> BootstrapInterval:
  """The metric with a half-sampling bootstrap interval over samples.

  Each of R resamples is a subsample of M = N // 2 rows drawn *without*
  replacement (`resamples`; the same rows of `a` and `b`, so pairs stay
  paired), on which the metric is recomputed. Only the spread of those
  values is used: `samples` are the re-centred values
  `score + (s_r - mean_r s_r)` and the interval is their (1 - confidence) / 2
  and (1 + confidence) / 2 quantiles.

  Why not draws with replacement: a duplicated row is its copy's nearest
  neighbour, with maximal similarity, in both models, so about 0.6 N rows of
  a kNN metric would agree for free; in the unbiased HSIC the pairs of
  copies add |a_i|^2 |b_i|^2 terms that the estimator's zero diagonal is
  there to remove (measured: independent inputs, N = 64, unbiased CKA
  0.00 resampled to 0.05..0.17). Excluding copies from each other's kNN
  candidates is not enough either: copies stay adjacent in both ordered
  lists; measured at N = 200, k = 10 (40 datasets of one generative model,
  nominal 90%), that interval covered the true mean of mutual_knn in 98% of
  datasets but of lcs_knn in only 43%.
  Why re-centre: a kNN score at fixed k (and biased CKA) depends on N, so
  half-sample values are shifted from the full-sample score. Why M = N / 2:
  for a statistic whose variance is c / M, the spread of M-out-of-N
  subsamples of one dataset is c (1/M - 1/N), equal at M = N / 2 to the c / N
  of the full sample (the half-sampling argument). Same experiment, nominal
  90%: coverage 95% mutual_knn, 93% cycle_knn, 98% lcs_knn, 100%
  edit_distance_knn, 93% cknna, 90% unbiased_cka, 90% cka. The permutation
  null, not this interval, is the test of "no alignment".

  Args:
    metric: a registered metric name.
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    num_resamples: R >= 1, used when `indices` is None.
    confidence: interval coverage in (0, 1).
    seed: non-negative int for `resamples(N, R, seed)`.
    indices: optional int `[R, M]` rows of distinct sample indices (e.g. from
      `resamples`) to share across several intervals; overrides
      `num_resamples` and `seed`.
    mesh: split the work over this mesh's devices (auto or explicit axes):
      the full-sample score runs sharded over rows (the kNN ring, or the
      metric's own sharded path) and the half-samples are divided between
      the devices; inputs already row-sharded run on their own mesh. The
      numbers equal the single-device ones.
    axis_name: mesh axis (or axes) to split over; default all.
    **hyperparameters: the metric's keywords (static).

  Returns:
    `BootstrapInterval(score, low, high, samples [R])`.

  Raises:
    ValueError: unknown metric or hyper-parameter, bad `a`/`b`, bad
      `num_resamples`, `confidence`, `seed` or `indices`, or (kNN metrics)
      k >= M (a half-sample needs k <= N // 2 - 1).

  Cost: R evaluations of the metric on M rows plus one on N (kNN metrics: two
  kNN searches of ~M^2 (Da + Db) / 2 multiply-adds each, then a pair
  kernel). Memory: one batch of resamples within the working-set budget.
  """
  a, b, plan, _ = _plan(metric, a, b, hyperparameters)
  n = a.shape[0]
  if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not (
      0.0 < confidence < 1.0):
    raise ValueError(f"`confidence` must be a number in (0, 1), got {confidence!r}.")
  if indices is None:
    draws = resamples(n, _validation.positive_int(num_resamples, "num_resamples"), seed)
  else:
    draws = _check_indices(indices, n, "resample")
  if plan.neighbours and plan.knn_args[0] >= draws.shape[1]:
    raise ValueError(
        f"`k` = {plan.knn_args[0]} must be below the half-sample size M = {draws.shape[1]} "
        f"(intervals subsample M = N // 2 of N = {n} rows); use a smaller `k` or more "
        f"samples.")
  place = _mesh.placement([a, b], mesh, axis_name)
  observed, samples = place.run(
      lambda mesh, a, b, draws: _bootstrap_samples(a, b, draws, plan, mesh, place.axes),
      a, b, jnp.asarray(draws))
  score, samples = float(observed), np.asarray(samples, np.float64)
  samples = (score + (samples - samples.mean())).astype(np.float32)
  low, high = np.quantile(samples, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
  return BootstrapInterval(score, float(low), float(high), samples)


# --------------------------------------------------------------------------
# The layer-search null
# --------------------------------------------------------------------------

def _permute_model(model, p):
  if isinstance(model, tuple):
    return tuple(x[p] for x in model)
  return model[:, p]


def _grids_from_caches(cache_a, cache_b, perms, plan, mesh=None, axes=None):
  """Layer grids `[P, La, Lb]` from per-layer `Neighbours`, `b` permuted by each row of `perms`.

  Each grid batches its own layer pairs within the working-set budget, so a
  device takes its permutations one after another.
  """
  return _layers.device_map(
      lambda p, ca, cb: _layers.cached_grids([ca, _permute_neighbours(cb, p)], [(0, 1)],
                                             plan)[0, 1],
      perms, (cache_a, cache_b), mesh=mesh, axes=axes)


_grids_from_caches_jit = jax.jit(_grids_from_caches, static_argnames=("plan", "mesh", "axes"))
_model_cache_jit = jax.jit(_layers.model_cache, static_argnames=("plan", "mesh", "axes"))


@functools.partial(jax.jit, static_argnames=("plan", "mesh", "axes"))
def _search_grids(a, b, perms, plan, mesh=None, axes=None):
  """Layer grids `[P, La, Lb]` with every layer of `b` permuted by each row of `perms`."""
  if plan.neighbours:
    return _grids_from_caches(_layers.model_cache(a, plan, mesh, axes),
                              _layers.model_cache(b, plan, mesh, axes), perms, plan, mesh, axes)
  return _layers.device_map(lambda p, a, b: _layers.generic_grid(plan, a, _permute_model(b, p)),
                            perms, (a, b), mesh=mesh, axes=axes)


def _search_result(grids, fixed: tuple[int, int]) -> LayerSearchNull:
  """The result from grids `[1 + P, La, Lb]`: the observed grid first, then the null's."""
  grids = np.asarray(grids, np.float32)
  grid, null_grids = grids[0], grids[1:]
  null_max = null_grids.max(axis=(1, 2))
  null_fixed = null_grids[:, fixed[0], fixed[1]]
  flat = int(np.argmax(grid))
  best = float(grid.reshape(-1)[flat])
  fixed_score = float(grid[fixed])
  return LayerSearchNull(
      scores=grid, best_score=best, best_pair=(flat // grid.shape[1], flat % grid.shape[1]),
      null=null_max, null_mean=float(null_max.mean()), null_std=float(null_max.std()),
      p_value=_p_value(best, null_max, True), fixed_pair=fixed, fixed_score=fixed_score,
      fixed_null=null_fixed, fixed_p_value=_p_value(fixed_score, null_fixed, True))


def layer_search_null(
    metric: str,
    a_layers: Float[ArrayLike, "la n da"] | Sequence[Float[ArrayLike, "n da_l"]],
    b_layers: Float[ArrayLike, "lb n db"] | Sequence[Float[ArrayLike, "n db_l"]],
    *,
    num_permutations: int = 100,
    seed: int = 0,
    fixed_pair: tuple[int, int] | None = None,
    indices: Int[ArrayLike, "p n"] | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> LayerSearchNull:
  """The best-layer score beside the null of the layer search itself.

  The reference keeps the maximum over all La x Lb layer pairs: a maximum of
  many noisy estimates, biased upward. Its honest null is the same maximum
  under shuffled correspondence: one permutation p applied to every layer of
  `b` (a model's layers describe the same samples), the whole grid rescored,
  its maximum kept. A pre-chosen pair (`fixed_pair`, default the last layers)
  is reported beside it with its own null under the same permutations.
  kNN metrics compute each layer's neighbour lists once and permute `b`'s
  lists exactly (see the module docstring).

  Args:
    metric: a registered metric name.
    a_layers: model A, `[La, N, Da]` or a list of `[N, Da_l]` arrays.
    b_layers: model B, `[Lb, N, Db]` or a list of `[N, Db_l]` arrays.
    num_permutations: P >= 1, used when `indices` is None.
    seed: non-negative int for `permutations(N, P, seed)`.
    fixed_pair: `(i, j)` layer indices (negative values count from the end);
      default `(La - 1, Lb - 1)`.
    indices: optional int `[P, N]` permutations, overriding the two above.
    mesh: split the work over this mesh's devices (auto or explicit axes):
      each layer's kNN runs as the device ring and the permutations are
      divided between the devices; layers already row-sharded run on their
      own mesh. The numbers equal the single-device ones.
    axis_name: mesh axis (or axes) to split over; default all.
    **hyperparameters: the metric's keywords, as for `layer_grid`.

  Returns:
    `LayerSearchNull` (see its attributes): observed grid, best score and
    pair, null of the maximum with its p-value, fixed-pair score, null and
    p-value.

  Raises:
    ValueError: everything `layer_grid` raises, bad `num_permutations`,
      `seed`, `indices` or `fixed_pair`.

  Cost: kNN metrics: La + Lb kNN searches, then (P + 1) La Lb pair kernels
  of O(N k^2). Others: (P + 1) La Lb metric evaluations.
  """
  (a, b), n = _validation.layer_stacks([a_layers, b_layers], ["a_layers", "b_layers"])
  plan = _layers.make_plan(metric, hyperparameters, [a, b], ["a_layers", "b_layers"], n)
  la, lb = _layers.num_layers(a), _layers.num_layers(b)
  fixed = _fixed_pair(fixed_pair, la, lb)
  if indices is None:
    perms = permutations(n, _validation.positive_int(num_permutations, "num_permutations"), seed)
  else:
    perms = _check_indices(indices, n, "permutation")
  place = _mesh.placement(jax.tree.leaves((a, b)), mesh, axis_name)
  grids = place.run(lambda mesh, a, b, perms: _search_grids(a, b, perms, plan, mesh, place.axes),
                    a, b, _with_identity(perms))
  return _search_result(grids, fixed)


def iter_zoo_search_nulls(
    metric: str,
    models: Sequence[Float[ArrayLike, "l n d"] | Sequence[Float[ArrayLike, "n d_l"]]],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    num_permutations: int = 100,
    seed: int = 0,
    fixed_layers: Sequence[int] | None = None,
    indices: Int[ArrayLike, "p n"] | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> Iterator[tuple[tuple[int, int], LayerSearchNull]]:
  """`layer_search_null` for many model pairs of a zoo, each model's kNN computed once.

  Yields `((i, j), layer_search_null(metric, models[i], models[j], ...))`
  pair by pair, in `pairs` order, so a caller can record each as it comes.
  For metrics scored from neighbour lists every model's per-layer
  `Neighbours` are computed once (sum_m L_m kNN searches for the whole zoo,
  instead of La + Lb per pair) and every pair's grid and null reuse them;
  every pair uses the same permutations. Other metrics are evaluated per pair.

  Args:
    metric: a registered metric name.
    models: M models, each `[L, N, D]` or a list of `[N, D_l]`, same N.
    pairs: `(i, j)` model pairs (`models[i]` as `a`); default every i != j,
      or i < j when the metric is symmetric.
    num_permutations, seed, indices: the permutations, as `layer_search_null`.
    fixed_layers: each model's pre-chosen layer (negative counts from the
      end); default every model's last layer.
    mesh, axis_name: split the work over a mesh's devices, as for
      `layer_search_null` (same numbers as one device).
    **hyperparameters: the metric's keywords.

  Raises:
    ValueError: as `layer_search_null`; pairs or fixed layers out of range.

  Cost: kNN metrics: sum_m L_m kNN searches, then (P + 1) La Lb pair kernels
  per pair. Others: (P + 1) La Lb metric evaluations per pair.
  """
  if isinstance(models, (str, bytes)) or not isinstance(models, Sequence) or not models:
    raise ValueError("`models` must be a non-empty sequence of models.")
  names = [f"models[{m}]" for m in range(len(models))]
  checked, n = _validation.layer_stacks(list(models), names)
  plan = _layers.make_plan(metric, hyperparameters, checked, names, n)
  counts = [_layers.num_layers(m) for m in checked]
  if pairs is None:
    symmetric = plan.info.symmetric
    pairs = [(i, j) for i in range(len(checked)) for j in range(len(checked))
             if i != j and (not symmetric or i < j)]
  pairs = [tuple(int(v) for v in pair) for pair in pairs]
  for i, j in pairs:
    if not (0 <= i < len(checked) and 0 <= j < len(checked)):
      raise ValueError(f"`pairs` holds {(i, j)}, outside the {len(checked)} models.")
  if fixed_layers is None:
    fixed_layers = [-1] * len(checked)
  if len(fixed_layers) != len(checked):
    raise ValueError(f"`fixed_layers` must name one layer per model ({len(checked)}), got "
                     f"{len(fixed_layers)}.")
  if indices is None:
    perms = permutations(n, _validation.positive_int(num_permutations, "num_permutations"), seed)
  else:
    perms = _check_indices(indices, n, "permutation")
  perms = _with_identity(perms)
  place = _mesh.placement(jax.tree.leaves(checked), mesh, axis_name)
  caches = {}

  def cache(m: int):
    if m not in caches:
      caches[m] = place.run(lambda mesh, x: _model_cache_jit(x, plan, mesh, place.axes),
                            checked[m])
    return caches[m]

  for i, j in pairs:
    fixed = _fixed_pair((fixed_layers[i], fixed_layers[j]), counts[i], counts[j])
    if plan.neighbours:
      grids = place.run(lambda mesh, ca, cb, perms: _grids_from_caches_jit(
          ca, cb, perms, plan, mesh, place.axes), cache(i), cache(j), perms)
    else:
      grids = place.run(lambda mesh, a, b, perms: _search_grids(a, b, perms, plan, mesh,
                                                                place.axes),
                        checked[i], checked[j], perms)
    yield (i, j), _search_result(grids, fixed)


def _fixed_pair(fixed_pair, la: int, lb: int) -> tuple[int, int]:
  if fixed_pair is None:
    return la - 1, lb - 1
  try:
    i, j = (int(v) for v in fixed_pair)
  except (TypeError, ValueError):
    raise ValueError(f"`fixed_pair` must be two layer indices (i, j), got {fixed_pair!r}.") from None
  if not (-la <= i < la and -lb <= j < lb):
    raise ValueError(f"`fixed_pair` {fixed_pair!r} is out of range for {la} x {lb} layers.")
  return i % la, j % lb
