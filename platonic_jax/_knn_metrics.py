"""Neighbour-set metrics: mutual, cycle, LCS and edit-distance kNN.

Each metric comes in two forms: `*_from_indices(knn_a, knn_b)` works on cached
neighbour lists (so a zoo computes every kNN once), and the feature form
`metric(a, b, k)` computes both lists and calls it. All are O(N k log k) or
O(N k^2) after the kNN step and hold O(N k) memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from platonic_jax import _knn, _validation


def check_index_pair(knn_a, knn_b):
  """Validates two neighbour-index arrays `[N, k]` of the same shape."""
  knn_a = jnp.asarray(knn_a)
  knn_b = jnp.asarray(knn_b)
  for name, v in (("knn_a", knn_a), ("knn_b", knn_b)):
    if v.ndim != 2:
      raise ValueError(f"`{name}` must be [N, k] neighbour indices, got shape {tuple(v.shape)}.")
    if not jnp.issubdtype(v.dtype, jnp.integer):
      raise ValueError(f"`{name}` must hold integer indices, got dtype {v.dtype}.")
  if knn_a.shape != knn_b.shape:
    raise ValueError(
        f"`knn_a` and `knn_b` must have the same shape [N, k], got {tuple(knn_a.shape)} and "
        f"{tuple(knn_b.shape)}."
    )
  n, k = knn_a.shape
  _validation.neighbour_count(k, n, name="k (columns of knn_a)")
  for name, v in (("knn_a", knn_a), ("knn_b", knn_b)):
    if _validation.is_concrete(v):
      with jax.ensure_compile_time_eval():
        in_range = bool(((v >= 0) & (v < n)).all())
      if not in_range:
        raise ValueError(f"`{name}` holds indices outside [0, N) = [0, {n}).")
  return knn_a.astype(jnp.int32), knn_b.astype(jnp.int32)


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
def _mutual_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """Mean over rows of |knn_a(i) & knn_b(i)| / k. O(N k min(k, log k))."""
  k = knn_a.shape[1]
  return jnp.mean(_intersection_sizes(knn_a, knn_b).astype(jnp.float32) / k)


@jax.jit
def _cycle_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
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
def _lcs_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """Mean LCS length of the ordered neighbour lists (0..k, not normalised). O(N k^2)."""
  return jnp.mean(_lcs_lengths(knn_a, knn_b).astype(jnp.float32))


@jax.jit
def _edit_distance_knn_kernel(knn_a: Int[ArrayLike, "n k"], knn_b: Int[ArrayLike, "n k"]):
  """1 - mean Levenshtein distance of the ordered lists / k. O(N k^2)."""
  k = knn_a.shape[1]
  return 1.0 - jnp.mean(_levenshtein(knn_a, knn_b).astype(jnp.float32)) / k


def _from_features(kernel, a, b, k, precision, tile_size, mesh, axis_name):
  a, b = _validation.feature_pair(a, b)
  a, k, axes = _knn.check_knn_args(a, k, precision, name="a", mesh=mesh, axis_name=axis_name)
  _validation.reject_constant(a, "a")
  _validation.reject_constant(b, "b")
  neighbours = [_knn.knn_with_similarities(x, k, precision, "auto", tile_size, mesh, axes)[1]
                for x in (a, b)]
  return kernel(*neighbours)


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
  return _from_features(_mutual_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


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
  return _from_features(_cycle_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


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
  return _from_features(_lcs_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


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
  return _from_features(_edit_distance_knn_kernel, a, b, k, precision, tile_size, mesh, axis_name)


def mutual_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                            knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  return _mutual_knn_kernel(*check_index_pair(knn_a, knn_b))


def cycle_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                           knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  return _cycle_knn_kernel(*check_index_pair(knn_a, knn_b))


def lcs_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                         knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  return _lcs_knn_kernel(*check_index_pair(knn_a, knn_b))


def edit_distance_knn_from_indices(knn_a: Int[ArrayLike, "n k"],
                                   knn_b: Int[ArrayLike, "n k"]) -> Float[Array, ""]:
  return _edit_distance_knn_kernel(*check_index_pair(knn_a, knn_b))


_FEATURE_DOC = """{summary}

  Neighbours are `platonic_jax.knn` of each input (inner product, self
  excluded, ties to the lower index).

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 1 <= k <= N - 1 (static).
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`).
    mesh: shard rows over this mesh; the kNN step runs as a device ring.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar.

  Raises:
    ValueError: bad rank, mismatched N, k out of range, NaN/Inf, or an input
      constant over samples (checked on concrete inputs; traced constant
      inputs get neighbours by index order, the tie-break).

  Cost: two tiled kNN (about N^2 (Da + Db) / 2 multiply-adds, O(N k + tile^2)
  memory), then {cost}.
"""

_INDEX_DOC = """{summary}

  Args:
    knn_a: neighbour indices `[N, k]` of model A (e.g. `knn(a, k)`), each row
      ordered by descending similarity.
    knn_b: neighbour indices `[N, k]` of model B.

  Returns:
    float32 scalar.

  Cost: {cost} time, O(N k) memory.
"""

for _feature_fn, _index_fn, _kernel, _cost in (
    (mutual_knn, mutual_knn_from_indices, _mutual_knn_kernel,
     "O(N k^2) for k <= 64, O(N k log k) above"),
    (cycle_knn, cycle_knn_from_indices, _cycle_knn_kernel, "O(N k^2)"),
    (lcs_knn, lcs_knn_from_indices, _lcs_knn_kernel, "O(N k^2)"),
    (edit_distance_knn, edit_distance_knn_from_indices, _edit_distance_knn_kernel, "O(N k^2)"),
):
  _summary = _kernel.__doc__.splitlines()[0].rsplit(" O(", 1)[0]
  _feature_fn.__doc__ = _FEATURE_DOC.format(summary=_summary, cost=_cost)
  _index_fn.__doc__ = _INDEX_DOC.format(summary=_summary, cost=_cost)
