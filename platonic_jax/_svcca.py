"""SVCCA, exact and deterministic.

Columns are standardised, each input's top `cca_dim` left singular vectors
U span its subspace, and the canonical correlations between two orthonormal,
centred bases are the singular values of U_a' U_b. Two exact routes:

* 'svd': thin SVD of each standardised `[N, D]` matrix.
* 'features': everything is a function of the D x D cross-products (the
  linear-CKA statistics): with S = Xs' Xs = V diag(l) V', U = Xs V l^(-1/2), so
  U_a' U_b = l_a^(-1/2) V_a' (Xs' Ys) V_b l_b^(-1/2). One streaming pass over
  rows, shardable with `psum`, no `[N, D]` decomposition.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from platonic_jax import _hsic, _mesh, _registry, _validation

METHODS = ("auto", "features", "svd")


def _standardise(x: jax.Array) -> jax.Array:
  x = x - x[0]  # makes a constant column exactly zero before the mean is taken
  x = x - x.mean(axis=0)
  return x / (jnp.std(x, axis=0, ddof=1) + 1e-8)


def _spanned(values: jax.Array, size: int) -> jax.Array:
  """Which of the descending spectral `values` are above rounding (rank mask)."""
  return values > values[0] * size * jnp.finfo(values.dtype).eps


def _top_left_singular_vectors(x: jax.Array, count: int) -> jax.Array:
  """Top `count` left singular vectors; directions the data does not span are zeroed."""
  u, s, _ = jnp.linalg.svd(x, full_matrices=False)
  return jnp.where(_spanned(s, max(x.shape))[:count], u[:, :count], 0.0)


def _whitened_top_directions(gram: jax.Array, count: int) -> jax.Array:
  """V l^(-1/2) for the top `count` eigenpairs of a PSD `[D, D]` Gram; unspanned -> 0."""
  values, vectors = jnp.linalg.eigh(gram)
  values, vectors = values[::-1][:count], vectors[:, ::-1][:, :count]
  spanned = _spanned(jnp.sqrt(jnp.maximum(values, 0.0)), gram.shape[0])
  return vectors * jnp.where(spanned, jax.lax.rsqrt(jnp.where(spanned, values, 1.0)), 0.0)


def correlations_from_stats(stats: _hsic.LinearStats, n: int, cca_dim: int) -> jax.Array:
  """Canonical correlations from the row sums of shifted features. O(D^3)."""
  def centred(cross, u, v):
    return cross - jnp.outer(u, v) / n

  def inverse_std(c):
    return 1.0 / (jnp.sqrt(jnp.maximum(jnp.diag(c), 0.0) / (n - 1)) + 1e-8)

  cxx, cyy = centred(stats.xx, stats.sx, stats.sx), centred(stats.yy, stats.sy, stats.sy)
  dx, dy = inverse_std(cxx), inverse_std(cyy)
  wa = _whitened_top_directions(dx[:, None] * cxx * dx[None, :], cca_dim)
  wb = _whitened_top_directions(dy[:, None] * cyy * dy[None, :], cca_dim)
  cross = dx[:, None] * centred(stats.xy, stats.sx, stats.sy) * dy[None, :]
  return jnp.clip(jnp.linalg.svd(_hsic.dot_highest(_hsic.dot_highest(wa.T, cross), wb), compute_uv=False),
                  0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("cca_dim", "method", "chunk_size", "mesh", "axes"))
def _correlations(a, b, cca_dim: int, method: str, chunk_size: int, mesh=None, axes=None):
  if method == "svd":
    ua = _top_left_singular_vectors(_standardise(a), cca_dim)
    ub = _top_left_singular_vectors(_standardise(b), cca_dim)
    return jnp.clip(jnp.linalg.svd(_hsic.dot_highest(ua.T, ub), compute_uv=False), 0.0, 1.0)
  shift_a, shift_b = _hsic.pilot_shift(a), _hsic.pilot_shift(b)
  if mesh is None:
    stats = _hsic.chunked_linear_stats(a, b, shift_a, shift_b, chunk_size)
  else:
    stats = _hsic.sharded_linear_stats(a, b, shift_a, shift_b, chunk_size, mesh, axes)
  return correlations_from_stats(stats, a.shape[0], cca_dim)


def _check(a, b, cca_dim, method, chunk_size, mesh, axis_name):
  a, b = _validation.feature_pair(a, b)
  n, da, db = a.shape[0], a.shape[1], b.shape[1]
  limit = min(n - 1, da, db)
  if isinstance(cca_dim, bool) or not isinstance(cca_dim, int) or not 1 <= cca_dim <= limit:
    raise ValueError(
        f"`cca_dim` must be an int with 1 <= cca_dim <= min(N - 1, Da, Db) = {limit} "
        f"(N={n}, Da={da}, Db={db}), got {cca_dim!r}.")
  _validation.choice(method, METHODS, "method")
  _validation.positive_int(chunk_size, "chunk_size")
  if mesh is not None and method == "svd":
    raise ValueError("`method='svd'` cannot be sharded; use 'auto' or 'features' with `mesh`.")
  place = _mesh.placement([a, b], mesh, axis_name, shard=method != "svd")
  if place.mesh is not None:
    method = "features"
  elif method == "auto":
    method = "features" if _hsic.linear_method(n, da, db) == "features" else "svd"
  return a, b, method, place


def svcca_correlations(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    cca_dim: int = 10,
    *,
    method: str = "auto",
    chunk_size: int = _hsic.DEFAULT_CHUNK_ROWS,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, " cca_dim"]:
  """The `cca_dim` canonical correlations (descending) behind `svcca`.

  When an input spans fewer than `cca_dim` directions (rank-deficient, or
  constant), the missing directions have no canonical partner and count as 0.
  Arguments as in `svcca`.
  """
  a, b, method, place = _check(a, b, cca_dim, method, chunk_size, mesh, axis_name)
  correlations = place.run(
      lambda mesh, a, b: _correlations(a, b, cca_dim, method, chunk_size, mesh, place.axes), a, b)
  return _validation.finite_or_nan(correlations, a=a, b=b)


def svcca(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    cca_dim: int = 10,
    *,
    method: str = "auto",
    chunk_size: int = _hsic.DEFAULT_CHUNK_ROWS,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
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
    method: 'features' (D x D cross-products, streamed over row chunks),
      'svd' (thin SVDs of the `[N, D]` inputs) or 'auto': 'features' unless
      Da + Db is large compared with N (the rule of linear CKA).
    chunk_size: rows per chunk for 'features' (static).
    mesh: shard rows over this mesh (auto or explicit axes; 'features'
      statistics, `psum`-reduced). Inputs already row-sharded over several
      devices are computed on their own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar in [0, 1]; symmetric in (a, b). NaN when a traced input
    holds NaN/Inf (concrete inputs raise).

  Cost: 'features': O(N (Da + Db)^2 + Da^3 + Db^3) time, O((Da + Db)^2) memory.
  'svd': O(N Da min(N, Da) + N Db min(N, Db)) time, O(N (Da + Db)) memory.
  """
  return jnp.mean(svcca_correlations(a, b, cca_dim, method=method, chunk_size=chunk_size,
                                     mesh=mesh, axis_name=axis_name))


_registry.register_metric(_registry.MetricInfo(
    "svcca", svcca,
    {"cca_dim": 10, "method": "auto", "chunk_size": _hsic.DEFAULT_CHUNK_ROWS,
     **_registry.SHARDING_HYPERPARAMETERS},
    _registry.unit_range, True, True, False,
    "features: O(N (Da+Db)^2 + D^3) time, O((Da+Db)^2) memory; svd: O(N D min(N, D)), O(N D)"))
