"""Neighbour-set metrics: mutual, cycle, LCS and edit-distance kNN.

Each metric comes in three forms: `*_kernel(knn_a, knn_b)`, the unchecked
jitted computation on two neighbour lists (what layer grids and zoos map over
cached lists); `*_from_indices(knn_a, knn_b)`, the checked public form on
cached lists; and `metric(a, b, k)`, which computes both lists and scores
them. All are O(N k log k) or O(N k^2) after the kNN step and hold O(N k)
memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from platonic_jax import _knn, _mesh, _registry, _validation


_COMPARE_ALL_MAX_K = 64  # below this an all-pairs compare beats sorting (5x at k = 10 on CPU)


def _intersection_sizes(knn_a, knn_b):
  """|knn_a(i) & knn_b(i)| per row: O(N k^2) compare for small k, else O(N k log k)."""
  if knn_a.shape[1] <= _COMPARE_ALL_MAX_K:
    return jnp.sum(knn_a[:, :, None] == knn_b[:, None, :], axis=(1, 2))
  # Rows hold distinct indices, so after sorting the 2k entries a shared index
  # appears as an equal adjacent pair.
  merged = jnp.sort(jnp.concatenate([knn_a, knn_b], axis=1), axis=1)
  return jnp.sum(merged[:, 1:] == merged[:, :-1], axis=1)


@jax.jit
def mutual_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """Mean over rows of |knn_a(i) & knn_b(i)| / k. O(N k min(k, log k))."""
  k = knn_a.shape[1]
  return jnp.mean(_intersection_sizes(knn_a, knn_b).astype(jnp.float32) / k)


@jax.jit
def cycle_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """Fraction of rows i found among the a-neighbours of some b-neighbour of i. O(N k^2)."""
  n = knn_a.shape[0]
  second_hop = knn_a[knn_b]  # [N, k, k]
  hit = jnp.any(second_hop == jnp.arange(n, dtype=knn_a.dtype)[:, None, None], axis=(1, 2))
  return jnp.mean(hit.astype(jnp.float32))


def _lcs_lengths(x, y):
  """LCS length of each row pair, one DP row per step, O(N k^2).

  With c_j = max(D[i-1][j], D[i-1][j-1] + [x_i == y_j]) the recurrence
  D[i][j] = max(c_j, D[i][j-1]) unrolls to a running max over j, so each DP row
  is one vectorised `cummax`.
  """
  n, k = x.shape

  def row(prev, xi):
    match = (xi[:, None] == y).astype(prev.dtype)
    diag = jnp.concatenate([jnp.zeros((n, 1), prev.dtype), prev[:, :-1]], axis=1)
    return lax.cummax(jnp.maximum(prev, diag + match), axis=1), None

  last, _ = lax.scan(row, jnp.zeros((n, k), jnp.int32), x.T)
  return last[:, -1]


def _levenshtein(x, y):
  """Unit-cost edit distance of each row pair, O(N k^2).

  With c_j = min(D[i-1][j] + 1, D[i-1][j-1] + [x_i != y_j]) and D[i][0] = i,
  D[i][j] = min(c_j, D[i][j-1] + 1) unrolls to
  D[i][j] - j = min over j' <= j of (c_j' - j'): a `cummin`.
  """
  n, k = x.shape
  offsets = jnp.arange(1, k + 1, dtype=jnp.int32)

  def row(carry, xi):
    prev, i = carry  # prev[:, j-1] = D[i-1][j] for j = 1..k; D[i-1][0] = i - 1
    mismatch = (xi[:, None] != y).astype(jnp.int32)
    diag = jnp.concatenate([jnp.full((n, 1), i - 1, jnp.int32), prev[:, :-1]], axis=1)
    c = jnp.minimum(prev + 1, diag + mismatch)
    shifted = jnp.minimum(lax.cummin(c - offsets, axis=1), i)  # D[i][0] - 0 = i
    return (shifted + offsets, i + 1), None

  (last, _), _ = lax.scan(row, (jnp.broadcast_to(offsets, (n, k)), jnp.int32(1)), x.T)
  return last[:, -1]


@jax.jit
def lcs_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """Mean LCS length of the ordered neighbour lists (0..k, not normalised). O(N k^2)."""
  return jnp.mean(_lcs_lengths(knn_a, knn_b).astype(jnp.float32))


@jax.jit
def edit_distance_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """1 - mean Levenshtein distance of the ordered lists / k. O(N k^2)."""
  k = knn_a.shape[1]
  return 1.0 - jnp.mean(_levenshtein(knn_a, knn_b).astype(jnp.float32)) / k


def _from_features(kernel, a, b, k, precision, tile_size, mesh, axis_name):
  a, b = _validation.feature_pair(a, b, check_finite=False)
  a, k = _knn.check_knn_args(a, k, precision, name="a", tile_size=tile_size, mesh=mesh,
                             check_finite=False)
  _validation.reject_bad_samples(a=a, b=b)
  place = _mesh.placement([a, b], mesh, axis_name)

  def score(mesh, a, b):
    lists = [_knn.knn_with_similarities(x, k, precision, "auto", tile_size, mesh, place.axes)[1]
             for x in (a, b)]
    return kernel(*lists)

  return _validation.finite_or_nan(place.run(score, a, b), a=a, b=b)


def _from_indices(kernel, knn_a, knn_b):
  checked_a, checked_b = _validation.neighbour_lists(knn_a, knn_b)
  place = _mesh.placement([checked_a, checked_b], shard=False)
  score = place.run(lambda _, x, y: kernel(x, y), checked_a, checked_b)
  return _validation.indices_or_nan(score, knn_a=checked_a, knn_b=checked_b)


def mutual_knn(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    precision: str = "highest",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """Mutual kNN: mean over samples of |knn_a(i) & knn_b(i)| / k.

  Neighbours are `platonic_jax.knn` of each input (inner product, self
  excluded, ties to the lower index).

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 1 <= k <= N - 1 (static).
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`); None or a positive int.
    mesh: shard rows over this mesh (auto or explicit axes); the kNN step runs
      as a device ring. Inputs already row-sharded over several devices are
      computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar in [0, 1]; symmetric in (a, b). NaN when a traced input
    holds NaN/Inf.

  Raises:
    ValueError: bad rank, mismatched N, k out of range, NaN/Inf, a bad
      `tile_size`, or an input constant over samples (checked on concrete
      inputs; traced constant inputs get neighbours by index order, the
      tie-break).

  Cost: two tiled kNN (about N^2 (Da + Db) / 2 multiply-adds, O(N k + tile^2)
  memory), then O(N k^2) for k <= 64, O(N k log k) above.
  """
  return _from_features(mutual_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


def cycle_knn(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    precision: str = "highest",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """Cycle kNN: fraction of samples i found among the a-neighbours of some b-neighbour of i.

  Neighbours are `platonic_jax.knn` of each input (inner product, self
  excluded, ties to the lower index); sample i counts when `knn_a[knn_b[i]]`
  contains i.

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 1 <= k <= N - 1 (static).
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`); None or a positive int.
    mesh: shard rows over this mesh (auto or explicit axes); the kNN step runs
      as a device ring. Inputs already row-sharded over several devices are
      computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar in [0, 1]; not symmetric in (a, b). NaN when a traced input
    holds NaN/Inf.

  Raises:
    ValueError: as `mutual_knn`.

  Cost: two tiled kNN (about N^2 (Da + Db) / 2 multiply-adds, O(N k + tile^2)
  memory), then O(N k^2).
  """
  return _from_features(cycle_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


def lcs_knn(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    precision: str = "highest",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """LCS kNN: mean longest-common-subsequence length of the ordered neighbour lists.

  Neighbours are `platonic_jax.knn` of each input (inner product, self
  excluded, ties to the lower index), each list ordered by descending
  similarity. As in the reference the length is not normalised (range 0..k).

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 1 <= k <= N - 1 (static).
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`); None or a positive int.
    mesh: shard rows over this mesh (auto or explicit axes); the kNN step runs
      as a device ring. Inputs already row-sharded over several devices are
      computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar in [0, k]; symmetric in (a, b). NaN when a traced input
    holds NaN/Inf.

  Raises:
    ValueError: as `mutual_knn`.

  Cost: two tiled kNN (about N^2 (Da + Db) / 2 multiply-adds, O(N k + tile^2)
  memory), then an O(N k^2) dynamic programme.
  """
  return _from_features(lcs_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


def edit_distance_knn(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    precision: str = "highest",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """Edit-distance kNN: 1 - mean Levenshtein distance of the ordered neighbour lists / k.

  Neighbours are `platonic_jax.knn` of each input (inner product, self
  excluded, ties to the lower index), each list ordered by descending
  similarity; unit-cost insertions, deletions and substitutions.

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 1 <= k <= N - 1 (static).
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`); None or a positive int.
    mesh: shard rows over this mesh (auto or explicit axes); the kNN step runs
      as a device ring. Inputs already row-sharded over several devices are
      computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar in [0, 1]; symmetric in (a, b). NaN when a traced input
    holds NaN/Inf.

  Raises:
    ValueError: as `mutual_knn`.

  Cost: two tiled kNN (about N^2 (Da + Db) / 2 multiply-adds, O(N k + tile^2)
  memory), then an O(N k^2) dynamic programme.
  """
  return _from_features(edit_distance_knn_kernel, a, b, k, precision, tile_size, mesh,
                        axis_name)


def mutual_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                            knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  """Mutual kNN of two cached neighbour lists: mean |knn_a(i) & knn_b(i)| / k.

  Args:
    knn_a: int neighbour indices `[N, k]` of model A (e.g. `knn(a, k)`), each
      row ordered by descending similarity, entries in [0, N).
    knn_b: int neighbour indices `[N, k]` of model B.

  Returns:
    float32 scalar in [0, 1]; NaN when a traced list holds an index outside [0, N).

  Raises:
    ValueError: not integer `[N, k]` arrays of one shape, k >= N, or (concrete)
      an index outside [0, N).

  Cost: O(N k^2) for k <= 64, O(N k log k) above; O(N k) memory.
  """
  return _from_indices(mutual_knn_kernel, knn_a, knn_b)


def cycle_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                           knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  """Cycle kNN of two cached neighbour lists: is i among knn_a of some j in knn_b(i)?

  Args:
    knn_a: int neighbour indices `[N, k]` of model A, entries in [0, N).
    knn_b: int neighbour indices `[N, k]` of model B.

  Returns:
    float32 scalar in [0, 1]; NaN when a traced list holds an index outside [0, N).

  Raises:
    ValueError: as `mutual_knn_from_indices`.

  Cost: O(N k^2) time, O(N k^2) memory for the second hop.
  """
  return _from_indices(cycle_knn_kernel, knn_a, knn_b)


def lcs_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                         knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  """LCS kNN of two cached, ordered neighbour lists: mean LCS length (0..k).

  Args:
    knn_a: int neighbour indices `[N, k]` of model A, each row ordered by
      descending similarity, entries in [0, N).
    knn_b: int neighbour indices `[N, k]` of model B.

  Returns:
    float32 scalar in [0, k]; NaN when a traced list holds an index outside [0, N).

  Raises:
    ValueError: as `mutual_knn_from_indices`.

  Cost: O(N k^2) time, O(N k) memory.
  """
  return _from_indices(lcs_knn_kernel, knn_a, knn_b)


def edit_distance_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                                   knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  """Edit-distance kNN of two cached, ordered lists: 1 - mean Levenshtein distance / k.

  Args:
    knn_a: int neighbour indices `[N, k]` of model A, each row ordered by
      descending similarity, entries in [0, N).
    knn_b: int neighbour indices `[N, k]` of model B.

  Returns:
    float32 scalar in [0, 1]; NaN when a traced list holds an index outside [0, N).

  Raises:
    ValueError: as `mutual_knn_from_indices`.

  Cost: O(N k^2) time, O(N k) memory.
  """
  return _from_indices(edit_distance_knn_kernel, knn_a, knn_b)


def _index_metric(kernel):
  """`from_neighbours` of a metric on the two index lists alone."""
  def from_neighbours(na, nb, **_):
    return kernel(na.index, nb.index)
  return from_neighbours


def _per_row_cost(per_row):
  """Pair cost of a neighbour metric: `per_row(k)` temporaries for each of the N rows."""
  def pair_cost(n, da, db, k=10, **_):
    return n * per_row(k)
  return pair_cost


def _zero_to_k(k, **_):
  return (0.0, float(k))


for _name, _fn, _kernel, _range, _symmetric, _cost, _per_row in (
    ("mutual_knn", mutual_knn, mutual_knn_kernel, _registry.unit_range, True, "O(N k log k)",
     lambda k: 6 * k),
    ("cycle_knn", cycle_knn, cycle_knn_kernel, _registry.unit_range, False, "O(N k^2)",
     lambda k: 3 * k * k + k),
    ("lcs_knn", lcs_knn, lcs_knn_kernel, _zero_to_k, True, "O(N k^2)", lambda k: 8 * k),
    ("edit_distance_knn", edit_distance_knn, edit_distance_knn_kernel, _registry.unit_range,
     True, "O(N k^2)", lambda k: 8 * k),
):
  _registry.register_metric(_registry.MetricInfo(
      _name, _fn, _registry.KNN_HYPERPARAMETERS, _range, _symmetric, True, True,
      _registry.KNN_COST + _cost, from_neighbours=_index_metric(_kernel),
      rejects_constant=True, pair_cost=_per_row_cost(_per_row)))
