"""Centred kernel alignment, biased and unbiased, linear and RBF kernels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Float

from platonic_jax import _hsic, _mesh, _rbf, _registry, _validation

KERNELS = ("linear", "rbf")


def linear_gram(x: jax.Array) -> jax.Array:
  x = x - _hsic.pilot_shift(x)
  return jnp.dot(x, x.T, precision=lax.Precision.HIGHEST)


def rbf_gram(x: jax.Array, sigma) -> jax.Array:
  """exp(-|x_i - x_j|^2 / (2 sigma^2)), `[N, N]`, with an exact zero-distance diagonal."""
  x = x - _hsic.pilot_shift(x)
  r = jnp.sum(x * x, axis=1)
  d2 = r[:, None] + r[None, :] - 2.0 * jnp.dot(x, x.T, precision=lax.Precision.HIGHEST)
  d2 = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, jnp.maximum(d2, 0.0))
  return jnp.exp(-d2 / (2.0 * sigma * sigma))


@functools.partial(jax.jit, static_argnames=("kernel", "unbiased", "method", "chunk_size",
                                             "tile_size", "mesh", "axes"))
def _cka(a, b, sigma_a, sigma_b, *, kernel: str, unbiased: bool, method: str, chunk_size: int,
         tile_size, mesh, axes):
  n = a.shape[0]
  if method == "features":
    shift_a, shift_b = _hsic.pilot_shift(a), _hsic.pilot_shift(b)
    if mesh is None:
      stats = _hsic.chunked_linear_stats(a, b, shift_a, shift_b, chunk_size)
    else:
      stats = _hsic.sharded_linear_stats(a, b, shift_a, shift_b, chunk_size, mesh, axes)
    hsics = _hsic.hsic_from_stats(stats, n, unbiased)
  elif method == "tiled":
    if mesh is None:
      hsics = _rbf.rbf_hsic_tiled(a, b, sigma_a, sigma_b, unbiased=unbiased, tile_size=tile_size)
    else:
      hsics = _rbf.rbf_hsic_sharded(a, b, sigma_a, sigma_b, unbiased=unbiased,
                                    tile_size=tile_size, mesh=mesh, axes=axes)
  else:
    if kernel == "linear":
      k, l = linear_gram(a), linear_gram(b)
    else:
      k, l = rbf_gram(a, sigma_a), rbf_gram(b, sigma_b)
    hsic = _hsic.hsic_unbiased_gram if unbiased else _hsic.hsic_biased_gram
    hsics = hsic(k, l), hsic(k, k), hsic(l, l)
  # Exactly 0 for a constant representation, not the rounding residue of its zero HSIC.
  constant = _validation.constant_over_samples(a) | _validation.constant_over_samples(b)
  return jnp.where(constant, 0.0, _hsic.cka_from_hsic(*hsics))


def _resolve_method(kernel: str, method: str, n: int, da: int, db: int, sharded: bool) -> str:
  valid = {"linear": ("auto", "features", "gram"), "rbf": ("auto", "tiled", "gram")}[kernel]
  if method not in valid:
    raise ValueError(f"`method` must be one of {list(valid)} for kernel={kernel!r}, got "
                     f"{method!r}.")
  if sharded:
    if method == "gram":
      raise ValueError("`method='gram'` cannot be sharded; use 'auto' with `mesh`.")
    return "features" if kernel == "linear" else "tiled"
  if method != "auto":
    return method
  return _hsic.linear_method(n, da, db) if kernel == "linear" else "tiled"


def _check_sigma(sigma):
  if isinstance(sigma, str):
    _validation.choice(sigma, ("median",), "sigma")
  elif isinstance(sigma, (int, float)) and not sigma > 0:
    raise ValueError(f"`sigma` must be > 0 or 'median', got {sigma}.")


def _bandwidths(a, b, sigma):
  if isinstance(sigma, str):
    return _rbf.median_sigma(a), _rbf.median_sigma(b)
  sigma = jnp.asarray(sigma, a.dtype)
  return sigma, sigma


def cka(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    kernel: str = "linear",
    sigma: float | str = 1.0,
    unbiased: bool = False,
    *,
    method: str = "auto",
    chunk_size: int = _hsic.DEFAULT_CHUNK_ROWS,
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """Centred kernel alignment HSIC(K,L) / (sqrt(HSIC(K,K) HSIC(L,L)) + 1e-6).

  K and L are the kernels of `a` and `b` over the N samples: 'linear'
  (K = a a') or 'rbf' (K_ij = exp(-|a_i - a_j|^2 / (2 sigma^2))). HSIC is the
  biased tr(KHLH) or, with `unbiased`, the estimator of Song et al. (2012).
  When a representation is constant over the samples (zero self-HSIC) the
  score is 0.

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    kernel: 'linear' or 'rbf' (static).
    sigma: RBF bandwidth: a number > 0 (may be traced), or 'median' for the
      median heuristic computed separately for `a` and `b` (see
      `median_sigma`). Ignored for 'linear'.
    unbiased: use the unbiased HSIC (needs N >= 4) (static).
    method: linear: 'features' accumulates D x D statistics over row chunks,
      'gram' forms the N x N kernels, 'auto' picks the cheaper (see
      `_hsic.linear_method`). rbf: 'tiled' (default via 'auto') reduces one
      `[tile, tile]` block at a time, 'gram' forms the N x N kernels.
    chunk_size: rows per chunk for 'features' (static).
    tile_size: rows per tile for rbf 'tiled' (static; default as `knn`).
    mesh: shard rows over this mesh (auto or explicit axes): linear
      statistics are `psum`-reduced, RBF tiles travel around a device ring.
      Inputs already row-sharded over several devices are computed on their
      own mesh without it.
    axis_name: mesh axis (or axes) for the rows; default all.

  Returns:
    float32 scalar; in [0, 1] for the biased estimator, [-1, 1] unbiased.
    NaN when a traced input holds NaN/Inf (concrete inputs raise).

  Cost: linear 'features': O(N (Da + Db)^2) time, O((Da + Db)^2 + chunk D)
  memory, no N x N matrix. rbf 'tiled': O(N^2 (Da + Db)) time (about half by
  symmetry on one device), O(tile^2 + N) memory. 'gram': O(N^2 (Da + Db))
  time, O(N^2) memory. Differentiable in `a`, `b` (and a numeric `sigma`).
  """
  a, b = _validation.feature_pair(a, b)
  n = a.shape[0]
  _validation.choice(kernel, KERNELS, "kernel")
  _validation.min_samples(n, 4 if unbiased else 2,
                          "The unbiased HSIC estimator" if unbiased else "CKA")
  _validation.positive_int(chunk_size, "chunk_size")
  _validation.tile_size(tile_size)
  if kernel == "rbf":
    _check_sigma(sigma)
  place = _mesh.placement([a, b], mesh, axis_name, shard=mesh is not None or method != "gram")
  method = _resolve_method(kernel, method, n, a.shape[1], b.shape[1], place.mesh is not None)
  named_sigma = sigma if isinstance(sigma, str) else None

  def score(mesh, a, b, sigma):
    sigma_a, sigma_b = (_bandwidths(a, b, named_sigma or sigma) if kernel == "rbf"
                        else (1.0, 1.0))
    return _cka(a, b, sigma_a, sigma_b, kernel=kernel, unbiased=bool(unbiased), method=method,
                chunk_size=chunk_size, tile_size=tile_size, mesh=mesh, axes=place.axes)

  numeric_sigma = None if named_sigma else jnp.asarray(sigma, a.dtype)
  return _validation.finite_or_nan(place.run(score, a, b, numeric_sigma), a=a, b=b)


def unbiased_cka(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    kernel: str = "linear",
    sigma: float | str = 1.0,
    *,
    method: str = "auto",
    chunk_size: int = _hsic.DEFAULT_CHUNK_ROWS,
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
) -> Float[Array, ""]:
  """`cka(..., unbiased=True)`: CKA with the unbiased HSIC of Song et al. (N >= 4)."""
  return cka(a, b, kernel, sigma, True, method=method, chunk_size=chunk_size,
             tile_size=tile_size, mesh=mesh, axis_name=axis_name)


def _pair_cost(n, da, db, kernel="linear", method="auto", chunk_size=_hsic.DEFAULT_CHUNK_ROWS,
               **_):
  gram = kernel == "rbf" or method == "gram" or (
      method == "auto" and _hsic.linear_method(n, da, db) == "gram")
  d = da + db
  return 4 * n * d + d * d + (6 * n * n if gram else chunk_size * d)


_HYPERPARAMETERS = {"kernel": "linear", "sigma": 1.0, "method": "auto",
                    "chunk_size": _hsic.DEFAULT_CHUNK_ROWS, "tile_size": None,
                    **_registry.SHARDING_HYPERPARAMETERS}
_COST = ("linear: O(N (Da+Db)^2) time, O((Da+Db)^2) memory; "
         "rbf (tiled): O(N^2 (Da+Db)) time, O(tile^2 + N) memory")

_registry.register_metric(_registry.MetricInfo(
    "cka", cka, {**_HYPERPARAMETERS, "unbiased": False},
    lambda unbiased=False, **_: (-1.0, 1.0) if unbiased else (0.0, 1.0),
    True, True, False, _COST, pair_cost=_pair_cost))
_registry.register_metric(_registry.MetricInfo(
    "unbiased_cka", unbiased_cka, _HYPERPARAMETERS, _registry.signed_range, True, True, False,
    _COST, pair_cost=_pair_cost))
