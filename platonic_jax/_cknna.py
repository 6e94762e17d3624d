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
from jaxtyping import Array, Float, Int

from platonic_jax import _hsic, _knn, _validation

ROW_CHUNK = 1024


def _chunked_map(f, xs, n):
  return lax.map(f, xs, batch_size=min(ROW_CHUNK, n))


def _masked_hsic(x, y, nbr, keep, unbiased: bool):
  """HSIC of A = M*(XX'), B = M*(YY') where row i of M is 1 at nbr[i, keep[i]].

  O(N k (Dx + Dy + k)) time, O(N k + chunk k D) memory.
  """
  n = x.shape[0]
  support = jnp.where(keep, nbr, -1)

  def per_row(args):
    i, xi, yi, nbr_i, keep_i = args
    k_vals = jnp.dot(x[nbr_i], xi, precision=lax.Precision.HIGHEST) * keep_i
    l_vals = jnp.dot(y[nbr_i], yi, precision=lax.Precision.HIGHEST) * keep_i
    mutual = jnp.any(support[nbr_i] == i, axis=-1) & keep_i  # i in S_j for j = nbr_i
    return k_vals, l_vals, mutual

  k_vals, l_vals, mutual = _chunked_map(
      per_row, (jnp.arange(n, dtype=nbr.dtype), x, y, nbr, keep), n)
  trace_ab = jnp.sum(jnp.where(mutual, k_vals * l_vals, 0.0))
  sum_a, sum_b = k_vals.sum(), l_vals.sum()
  ab = jnp.sum(k_vals * l_vals.sum(axis=1)[nbr])  # 1' A B 1
  if unbiased:  # slots never hold i itself, so A~ = A
    return _hsic._unbiased(trace_ab, sum_a, sum_b, ab, n)
  ba = jnp.sum(l_vals * k_vals.sum(axis=1)[nbr])
  return trace_ab - (ab + ba) / n + sum_a * sum_b / (n * n)


@functools.partial(jax.jit, static_argnames=("unbiased",))
def _cknna_from_neighbours(a, b, knn_a, knn_b, unbiased: bool):
  n = a.shape[0]
  all_kept = jnp.ones(knn_a.shape, bool)
  in_both = _chunked_map(lambda r: jnp.any(r[0][:, None] == r[1][None, :], axis=-1),
                         (knn_a, knn_b), n)
  score = _hsic.cka_from_hsic(
      _masked_hsic(a, b, knn_a, in_both, unbiased),
      _masked_hsic(a, a, knn_a, all_kept, unbiased),
      _masked_hsic(b, b, knn_b, all_kept, unbiased))
  # A constant representation has only tie-broken neighbours: nothing to align.
  constant = _validation.constant_over_samples(a) | _validation.constant_over_samples(b)
  return jnp.where(constant, 0.0, score)


def _with_self(x, values, index, k):
  """Top k including the sample itself: merge (x_i . x_i, i) into the self-excluded list."""
  n = x.shape[0]
  self_sim = jnp.sum(x * x, axis=1).astype(values.dtype)[:, None]
  self_idx = jnp.arange(n, dtype=index.dtype)[:, None]
  return _knn.merge_any(values, index, self_sim, self_idx, k)[1]


@functools.partial(jax.jit, static_argnames=("k", "unbiased", "precision", "tile_size"))
def _cknna(a, b, k: int, unbiased: bool, precision: str, tile_size):
  neighbours = []
  for x in (a, b):
    values, index = _knn.knn_with_similarities(x, k, precision, "auto", tile_size)
    neighbours.append(index if unbiased else _with_self(x, values, index, k))
  return _cknna_from_neighbours(a, b, *neighbours, unbiased)


def cknna(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    k: int = 10,
    *,
    unbiased: bool = True,
    precision: str = "highest",
    tile_size: int | None = None,
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
    precision: similarity precision of the kNN step (see `knn`).
    tile_size: Gram tile rows of the kNN step (see `knn`).

  Returns:
    float32 scalar. Not symmetric in (a, b) in general: M*K is not symmetric.

  Cost: two tiled kNN, then O(N k (Da + Db + k)) time and O(N k) memory.
  """
  a, b = _validation.feature_pair(a, b)
  k = _validation.neighbour_count(k, a.shape[0], minimum=2)
  if unbiased:
    _validation.min_samples(a.shape[0], 4, "The unbiased HSIC estimator")
  _validation.choice(precision, _knn.PRECISIONS, "precision")
  return _cknna(a, b, k, bool(unbiased), precision, tile_size)


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
  *including* the sample itself. Cost: O(N k (Da + Db + k)) time, O(N k) memory.
  """
  a, b = _validation.feature_pair(a, b)
  knn_a, knn_b = jnp.asarray(knn_a), jnp.asarray(knn_b)
  if knn_a.shape != knn_b.shape or knn_a.ndim != 2 or knn_a.shape[0] != a.shape[0]:
    raise ValueError(
        f"`knn_a` and `knn_b` must both be [N, k] with N = {a.shape[0]}, got "
        f"{tuple(knn_a.shape)} and {tuple(knn_b.shape)}.")
  _validation.neighbour_count(knn_a.shape[1], a.shape[0], minimum=2)
  if unbiased:
    _validation.min_samples(a.shape[0], 4, "The unbiased HSIC estimator")
  return _cknna_from_neighbours(a, b, knn_a.astype(jnp.int32), knn_b.astype(jnp.int32),
                                bool(unbiased))
