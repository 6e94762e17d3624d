"""Centred kernel alignment, biased and unbiased, linear and RBF kernels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from platonic_jax import _hsic, _validation

KERNELS = ("linear", "rbf")
METHODS = ("auto", "features", "gram")
DEFAULT_CHUNK_ROWS = 4096


def linear_method(n: int, dx: int, dy: int) -> str:
  """'features' (D x D statistics) unless two N x N Grams need fewer FLOPs.

  Feature space costs N (Dx^2 + Dy^2 + Dx Dy) multiply-adds and O(D^2) memory;
  Gram space costs N^2 (Dx + Dy) and O(N^2) memory. 'gram' wins only when
  Dx + Dy is large compared with N.
  """
  return "features" if dx * dx + dy * dy + dx * dy <= n * (dx + dy) else "gram"


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


@functools.partial(jax.jit, static_argnames=("kernel", "unbiased", "method", "chunk_size"))
def _cka(a, b, sigma, *, kernel: str, unbiased: bool, method: str, chunk_size: int):
  n = a.shape[0]
  if kernel == "linear" and method == "features":
    stats = _hsic.chunked_linear_stats(a, b, _hsic.pilot_shift(a), _hsic.pilot_shift(b),
                                       chunk_size)
    hsics = _hsic.hsic_from_stats(stats, n, unbiased)
  else:
    if kernel == "linear":
      k, l = linear_gram(a), linear_gram(b)
    else:
      k, l = rbf_gram(a, sigma), rbf_gram(b, sigma)
    hsic = _hsic.hsic_unbiased_gram if unbiased else _hsic.hsic_biased_gram
    hsics = hsic(k, l), hsic(k, k), hsic(l, l)
  # Exactly 0 for a constant representation, not the rounding residue of its zero HSIC.
  constant = _validation.constant_over_samples(a) | _validation.constant_over_samples(b)
  return jnp.where(constant, 0.0, _hsic.cka_from_hsic(*hsics))


def cka(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    kernel: str = "linear",
    sigma: float = 1.0,
    unbiased: bool = False,
    *,
    method: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_ROWS,
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
    sigma: RBF bandwidth (> 0); ignored for 'linear'. May be traced.
    unbiased: use the unbiased HSIC (needs N >= 4) (static).
    method: linear kernel only: 'features' accumulates D x D statistics over
      row chunks, 'gram' forms the N x N kernels, 'auto' picks the cheaper
      (see `linear_method`). RBF always uses 'gram'.
    chunk_size: rows per chunk for 'features' (static).

  Returns:
    float32 scalar; in [0, 1] for the biased estimator, [-1, 1] unbiased.

  Cost: linear 'features': O(N (Da + Db)^2) time, O((Da + Db)^2 + chunk D)
  memory, no N x N matrix. 'gram' and RBF: O(N^2 (Da + Db)) time, O(N^2) memory.
  Differentiable in `a`, `b` (and `sigma`).
  """
  a, b = _validation.feature_pair(a, b)
  n = a.shape[0]
  _validation.choice(kernel, KERNELS, "kernel")
  _validation.choice(method, METHODS, "method")
  _validation.min_samples(n, 4 if unbiased else 2,
                          "The unbiased HSIC estimator" if unbiased else "CKA")
  if isinstance(sigma, (int, float)) and not sigma > 0:
    raise ValueError(f"`sigma` must be > 0, got {sigma}.")
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"`chunk_size` must be a positive int, got {chunk_size!r}.")
  if kernel == "rbf":
    method = "gram"
  elif method == "auto":
    method = linear_method(n, a.shape[1], b.shape[1])
  return _cka(a, b, jnp.asarray(sigma, a.dtype), kernel=kernel, unbiased=bool(unbiased),
              method=method, chunk_size=chunk_size)


def unbiased_cka(
    a: Float[ArrayLike, "n da"],
    b: Float[ArrayLike, "n db"],
    kernel: str = "linear",
    sigma: float = 1.0,
    *,
    method: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_ROWS,
) -> Float[Array, ""]:
  """`cka(..., unbiased=True)`: CKA with the unbiased HSIC of Song et al. (N >= 4)."""
  return cka(a, b, kernel, sigma, True, method=method, chunk_size=chunk_size)
