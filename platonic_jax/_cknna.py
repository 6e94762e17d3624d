"""CKNNA: CKA restricted to mutual k-nearest-neighbour pairs, in O(N k) memory.

The reference forms M = mask_K * mask_L (row-wise top-k masks) and evaluates
HSIC on the dense M*K and M*L. Row i of those has nonzeros only at
S_i = knn_a(i) & knn_b(i), so every HSIC term is a sum over the N k
(row, neighbour) slots:

  tr(A B)   = sum over slots (i, j) with j in S_i and i in S_j of K_ij L_ij,
  1'A1      = sum over slots of K_ij,              1'AB1 = sum K_ij (B1)_j,

(K, L symmetric; M is not, which is why i in S_j is checked separately).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from platonic_jax import _hsic, _knn, _mesh, _registry, _validation

ROW_CHUNK = 1024


def _chunked_map(f, xs, n):
  return lax.map(f, xs, batch_size=min(ROW_CHUNK, n))


def _masked_hsic(nbr, keep, k_vals, l_vals, unbiased: bool):
  """HSIC of A = M*K, B = M*L, where row i of M is 1 at the slots nbr[i, keep[i]].

  `k_vals[i, p]` = K[i, nbr[i, p]] and `l_vals[i, p]` = L[i, nbr[i, p]] (K, L
  symmetric). O(N k^2) time, O(N k) memory.
  """
  n = nbr.shape[0]
  k_vals = jnp.where(keep, k_vals, 0.0)
  l_vals = jnp.where(keep, l_vals, 0.0)
  support = jnp.where(keep, nbr, -1)

  def transposed_slot(args):  # is i in S_j for j = nbr[i, p]?
    i, nbr_i, keep_i = args
    return jnp.any(support[nbr_i] == i, axis=-1) & keep_i

  mutual = _chunked_map(transposed_slot, (jnp.arange(n, dtype=nbr.dtype), nbr, keep), n)
  trace_ab = jnp.sum(jnp.where(mutual, k_vals * l_vals, 0.0))
  sum_a, sum_b = k_vals.sum(), l_vals.sum()
  ab = jnp.sum(k_vals * l_vals.sum(axis=1)[nbr])  # 1' A B 1
  if unbiased:  # slots never hold i itself, so A~ = A
    return _hsic.unbiased_from_terms(trace_ab, sum_a, sum_b, ab, n)
  ba = jnp.sum(l_vals * k_vals.sum(axis=1)[nbr])
  return trace_ab - (ab + ba) / n + sum_a * sum_b / float(n) ** 2


@functools.partial(jax.jit, static_argnames=("unbiased",))
def cknna_from_similarities(knn_a, sim_a, knn_b, sim_b, constant, unbiased: bool):
  """CKNNA from neighbour lists and their similarities (`sim_a[i, p]` = a_i . a_knn_a[i, p])."""
  n = knn_a.shape[0]

  def match(args):  # position-wise: is knn_a[i, p] in knn_b[i], and b's similarity there
    ka, kb, sb = args
    same = ka[:, None] == kb[None, :]
    return jnp.any(same, axis=-1), jnp.sum(jnp.where(same, sb[None, :], 0.0), axis=-1)

  in_both, sim_b_at_a = _chunked_map(match, (knn_a, knn_b, sim_b), n)
  everywhere = jnp.ones(knn_a.shape, bool)
  score = _hsic.cka_from_hsic(
      _masked_hsic(knn_a, in_both, sim_a, sim_b_at_a, unbiased),
      _masked_hsic(knn_a, everywhere, sim_a, sim_a, unbiased),
      _masked_hsic(knn_b, everywhere, sim_b, sim_b, unbiased))
  # A constant representation has only tie-broken neighbours: nothing to align.
  return jnp.where(constant, 0.0, score)


def cknna_from_neighbours(na: _knn.Neighbours, nb: _knn.Neighbours, unbiased: bool = True):
  """CKNNA from each representation's cached `Neighbours` (self included when not `unbiased`).

  O(N k^2) time, O(N k) memory.
  """
  n, k = na.index.shape
  _validation.neighbour_count(k, n, minimum=2)
  if unbiased:
    _validation.min_samples(n, 4, "The unbiased HSIC estimator")
  return cknna_from_similarities(na.index, na.similarity, nb.index, nb.similarity,
                                 na.constant | nb.constant, unbiased)


def _constant(a, b):
  return _validation.constant_over_samples(a) | _validation.constant_over_samples(b)


@functools.partial(jax.jit, static_argnames=("k", "unbiased", "precision", "tile_size", "mesh",
                                             "axes"))
def _cknna(a, b, k: int, unbiased: bool, precision: str, tile_size, mesh, axes):
  na, nb = (_knn.neighbours(x, k, precision, tile_size, mesh, axes, include_self=not unbiased)
            for x in (a, b))
  return cknna_from_neighbours(na, nb, unbiased)


@functools.partial(jax.jit, static_argnames=("unbiased",))
def _cknna_from_indices(a, b, knn_a, knn_b, unbiased: bool):
  def similarities(x, nbr):
    return _chunked_map(
        lambda r: jnp.dot(x[r[1]], r[0], precision=lax.Precision.HIGHEST), (x, nbr), x.shape[0])
  return cknna_from_similarities(knn_a, similarities(a, knn_a), knn_b, similarities(b, knn_b),
                                 _constant(a, b), unbiased)


def cknna(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    unbiased: bool = True,
    precision: str = "highest",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """Centred kernel nearest-neighbour alignment (CKNNA) with linear kernels.

  s(K, L) = HSIC(M*K, M*L) with M_ij = [j in knn_a(i)] [j in knn_b(i)],
  K = a a', L = b b'; score = s(K,L) / (sqrt(s(K,K) s(L,L)) + 1e-6), or 0
  when a self-similarity is <= 0. With `unbiased` (default) the neighbour
  lists exclude the sample itself and HSIC is Song et al.'s unbiased
  estimator; otherwise the lists may include it and HSIC is tr(AHBH).
  If either input is constant over samples the score is 0 (its neighbours
  would be tie-breaks only).

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    k: neighbours per sample, 2 <= k <= N - 1 (static).
    unbiased: estimator choice, as above (static). Needs N >= 4 when set.
    precision: similarity precision of the kNN step (see `knn`); the kernel
      values K_ij, L_ij come from that step too.
    tile_size: Gram tile rows of the kNN step (see `knn`).
    mesh: shard rows over this mesh (auto or explicit axes); the kNN step
      runs as a device ring. Inputs already row-sharded over several devices
      are computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar. Not symmetric in (a, b) in general: M*K is not symmetric.
    NaN when a traced input holds NaN/Inf (concrete inputs raise).

  Cost: two tiled kNN, then O(N k^2) time and O(N k) memory: the masked
  kernels are read off the neighbour lists and their similarities.
  """
  a, b = _validation.feature_pair(a, b)
  a, k = _knn.check_knn_args(a, k, precision, name="a", min_k=2, tile_size=tile_size, mesh=mesh,
                             check_finite=False)
  if unbiased:
    _validation.min_samples(a.shape[0], 4, "The unbiased HSIC estimator")
  place = _mesh.placement([a, b], mesh, axis_name)
  score = place.run(
      lambda mesh, a, b: _cknna(a, b, k, bool(unbiased), precision, tile_size, mesh, place.axes),
      a, b)
  return _validation.finite_or_nan(score, a=a, b=b)


def cknna_from_indices(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    knn_a: Int[ArrayLike, "n k"],
    knn_b: Int[ArrayLike, "n k"],
    *,
    unbiased: bool = True,
) -> Float[Array, ""]:
  """CKNNA from cached neighbour lists (`knn(a, k)`, `knn(b, k)`; self excluded).

  Args mirror `cknna`; with `unbiased=False` the lists must be the top k
  *including* the sample itself. The kernel values are recomputed in float32
  from the features.

  Returns:
    float32 scalar; NaN when traced features hold NaN/Inf or a traced list an
    index outside [0, N).

  Raises:
    ValueError: as `cknna`, and lists that are not integer `[N, k]` arrays of
      one shape with N rows, or (concrete) hold an index outside [0, N).

  Cost: O(N k (Da + Db + k)) time, O(N k + chunk k D) memory.
  """
  a, b = _validation.feature_pair(a, b)
  knn_a, knn_b = _validation.neighbour_lists(knn_a, knn_b, n=a.shape[0], minimum_k=2)
  if unbiased:
    _validation.min_samples(a.shape[0], 4, "The unbiased HSIC estimator")
  place = _mesh.placement([a, b, knn_a, knn_b], shard=False)
  score = place.run(lambda _, *args: _cknna_from_indices(*args, bool(unbiased)),
                    a, b, knn_a, knn_b)
  score = _validation.finite_or_nan(score, a=a, b=b)
  return _validation.indices_or_nan(score, knn_a=knn_a, knn_b=knn_b)


def _includes_self(unbiased=True, **_):
  return not unbiased


def _pair_cost(n, da, db, k=10, **_):
  # one row chunk of k x k compares plus the per-slot terms
  return 3 * min(ROW_CHUNK, n) * k * k + 24 * n * k


_registry.register_metric(_registry.MetricInfo(
    "cknna", cknna, {**_registry.KNN_HYPERPARAMETERS, "unbiased": True},
    _registry.signed_range, False, True, True,
    _registry.KNN_COST + "O(N k^2), O(N k) memory",
    from_neighbours=cknna_from_neighbours, neighbours_include_self=_includes_self,
    pair_cost=_pair_cost))
