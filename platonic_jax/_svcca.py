"""SVCCA, exact and deterministic."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from platonic_jax import _validation


def _standardise(x: jax.Array) -> jax.Array:
  x = x - x[0]  # makes a constant column exactly zero before the mean is taken
  x = x - x.mean(axis=0)
  return x / (jnp.std(x, axis=0, ddof=1) + 1e-8)


def _top_left_singular_vectors(x: jax.Array, count: int) -> jax.Array:
  """Top `count` left singular vectors; directions the data does not span are zeroed."""
  u, s, _ = jnp.linalg.svd(x, full_matrices=False)
  tol = s[0] * max(x.shape) * jnp.finfo(x.dtype).eps
  return jnp.where(s[:count] > tol, u[:, :count], 0.0)


@functools.partial(jax.jit, static_argnames=("cca_dim",))
def svcca_correlations(a, b, cca_dim: int) -> Float[Array, " cca_dim"]:
  """Canonical correlations (descending) between the top-`cca_dim` SVD subspaces.

  The left singular vectors of column-centred data are orthonormal and
  centred, so the canonical correlations between two such bases are exactly
  the singular values of U_a' U_b. When an input spans fewer than `cca_dim`
  directions (rank-deficient, or constant), the missing directions have no
  canonical partner and count as correlation 0.
  """
  ua = _top_left_singular_vectors(_standardise(a), cca_dim)
  ub = _top_left_singular_vectors(_standardise(b), cca_dim)
  return jnp.clip(jnp.linalg.svd(ua.T @ ub, compute_uv=False), 0.0, 1.0)


def svcca(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    cca_dim: int = 10,
) -> Float[Array, ""]:
  """Singular-vector CCA: mean canonical correlation of the top SVD subspaces.

  Columns are standardised ((x - mean) / (std + 1e-8), std with ddof=1), the top
  `cca_dim` left singular vectors of each input span its subspace, and the
  score is the mean of the `cca_dim` canonical correlations between the two
  subspaces. The reference uses randomised SVD, iterative CCA and added noise;
  this is the exact value of the same quantity, deterministic.

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    cca_dim: subspace size, 1 <= cca_dim <= min(N - 1, Da, Db) (static).

  Returns:
    float32 scalar in [0, 1]; symmetric in (a, b).

  Cost: two thin SVDs, O(N Da min(N, Da) + N Db min(N, Db)) time,
  O(N (Da + Db)) memory.
  """
  a, b = _validation.feature_pair(a, b)
  n = a.shape[0]
  limit = min(n - 1, a.shape[1], b.shape[1])
  if isinstance(cca_dim, bool) or not isinstance(cca_dim, int) or not 1 <= cca_dim <= limit:
    raise ValueError(
        f"`cca_dim` must be an int with 1 <= cca_dim <= min(N - 1, Da, Db) = {limit} "
        f"(N={n}, Da={a.shape[1]}, Db={b.shape[1]}), got {cca_dim!r}.")
  return jnp.mean(svcca_correlations(a, b, cca_dim))
