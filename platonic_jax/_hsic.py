"""HSIC estimators: on explicit kernel matrices, and for linear kernels from
feature-space sufficient statistics that never form an N x N matrix.

Conventions follow the reference implementation: the biased HSIC is
tr(K H L H) with no 1/(n-1)^2 factor (it cancels in CKA); the unbiased HSIC is
the estimator of Song et al. (2012),

  HSIC_1 = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),

with K~, L~ the kernels with zeroed diagonals. HSIC_1(K, K) >= 0 in exact
arithmetic (it is the squared norm of the U-centred kernel), so a negative
self-HSIC only ever comes from rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from platonic_jax import _mesh

_CKA_EPS = 1e-6  # the reference's denominator guard, kept for value compatibility
DEFAULT_CHUNK_ROWS = 4096  # rows per chunk of the streamed feature-space statistics


def linear_method(n: int, dx: int, dy: int) -> str:
  """'features' (D x D statistics) unless two N x N Grams need fewer FLOPs.

  Feature space costs at most N (Dx^2 + Dy^2 + Dx Dy) multiply-adds (the
  symmetric X'X and Y'Y need 5/8 of theirs from D = 1024) and O(D^2) memory;
  Gram space costs N^2 (Dx + Dy) and O(N^2) memory. 'gram' wins only when
  Dx + Dy is large compared with N.
  """
  return "features" if dx * dx + dy * dy + dx * dy <= n * (dx + dy) else "gram"


def dot_highest(u, v):
  """Float32-exact products on every backend (no TF32 or bf16 passes)."""
  return jnp.dot(u, v, precision=lax.Precision.HIGHEST)


def unbiased_from_terms(trace_term, sum_k, sum_l, cross, n):
  """Song et al.'s HSIC_1 from tr(K~L~), 1'K~1, 1'L~1 and 1'K~L~1."""
  n = float(n)  # n(n-3) overflows int32 past N = 46341
  return (trace_term + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def hsic_biased_gram(k: jax.Array, l: jax.Array) -> jax.Array:
  """tr(K H L H) for `[N, N]` kernels. O(N^2)."""
  def centre(m):
    return m - m.mean(axis=0, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean()
  return jnp.sum(centre(k) * l.T)


def hsic_unbiased_gram(k: jax.Array, l: jax.Array) -> jax.Array:
  """Song et al. unbiased HSIC for `[N, N]` kernels (N >= 4). O(N^2)."""
  n = k.shape[0]
  off_diagonal = ~jnp.eye(n, dtype=bool)
  kt = jnp.where(off_diagonal, k, 0)
  lt = jnp.where(off_diagonal, l, 0)
  cross = dot_highest(kt.sum(axis=0), lt.sum(axis=1))  # 1' K~ L~ 1
  return unbiased_from_terms(jnp.sum(kt * lt.T), kt.sum(), lt.sum(), cross, n)


def cka_from_hsic(hsic_kl: jax.Array, hsic_kk: jax.Array, hsic_ll: jax.Array) -> jax.Array:
  """HSIC(K,L) / (sqrt(HSIC(K,K) HSIC(L,L)) + 1e-6); 0 where a self-HSIC is <= 0.

  A self-HSIC of zero means one representation is constant over the samples
  (no alignment can be measured); a negative one is rounding of a zero. Both
  give 0 instead of the reference's 0/eps or NaN. Safe under `jax.grad`.
  """
  defined = (hsic_kk > 0) & (hsic_ll > 0)
  denominator = jnp.sqrt(jnp.where(defined, hsic_kk * hsic_ll, 1.0)) + _CKA_EPS
  return jnp.where(defined, hsic_kl / denominator, 0.0)


def pilot_shift(x: jax.Array, rows: int = 1024) -> jax.Array:
  """A per-feature shift close to the mean: x[0] + mean(x[:rows] - x[0]).

  Linear-kernel HSIC (biased and unbiased) is invariant to a per-feature shift,
  and accumulating shifted features in float32 avoids the cancellation an
  offset causes. Anchoring on x[0] makes a constant feature exactly zero.
  """
  anchor = x[0]
  return anchor + jnp.mean(x[:rows] - anchor, axis=0)


class LinearStats(NamedTuple):
  """Row sums that determine every linear-kernel HSIC of (X, Y).

  With r_i = |x_i|^2, q_i = |y_i|^2: `xy` = X'Y, `xx` = X'X, `yy` = Y'Y,
  `sx` = X'1, `sy` = Y'1, `xr` = X'r, `xq` = X'q, `yr` = Y'r, `yq` = Y'q, and
  the scalars sum(r), sum(q), r.q, r.r, q.q. All are sums over rows, so chunks
  add and devices `psum`.
  """
  xy: jax.Array
  xx: jax.Array
  yy: jax.Array
  sx: jax.Array
  sy: jax.Array
  xr: jax.Array
  xq: jax.Array
  yr: jax.Array
  yq: jax.Array
  sum_r: jax.Array
  sum_q: jax.Array
  rq: jax.Array
  rr: jax.Array
  qq: jax.Array


_SYMMETRIC_BLOCK_COLUMNS = 256  # X'X in column blocks of this width: 1.2x faster at D = 1024


def symmetric_rows_dot(x: jax.Array) -> jax.Array:
  """X'X `[D, D]` of `[n, D]` from the upper products of its column blocks.

  Columns split into T blocks of about 256 (multiples of 16); the T (T + 1)
  / 2 products X_i'X_j, i <= j, are computed and the transposes fill in the
  rest: (T + 1) / (2T) of the n D^2 multiply-adds (5/8 at D = 1024). The
  result is exactly symmetric.
  """
  d = x.shape[1]
  parts = max(1, min(d // _SYMMETRIC_BLOCK_COLUMNS, 8))
  if parts == 1:
    return dot_highest(x.T, x)
  edges = [round(d * i / parts / 16) * 16 for i in range(parts)] + [d]
  columns = [x[:, lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]
  grid = [[None] * parts for _ in range(parts)]
  for i in range(parts):
    for j in range(i, parts):
      grid[i][j] = dot_highest(columns[i].T, columns[j])
      if j > i:
        grid[j][i] = grid[i][j].T
  return jnp.concatenate([jnp.concatenate(row, axis=1) for row in grid], axis=0)


_ROW_TERMS = 16  # E = [1, r, q] padded with zero columns to a vector-friendly width


def linear_stats(x: jax.Array, y: jax.Array) -> LinearStats:
  """Sufficient statistics of one block of rows. O(n (Dx Dy + 5/8 (Dx + 16)^2 + 5/8 (Dy + 16)^2)).

  The row terms ride along in the symmetric products: with E = [1, r, q]
  (zero-padded to 16 columns), [X, E]'[X, E] holds X'X, X'1, X'r, X'q and
  every scalar, and [Y, E]'[Y, E] holds Y'Y, Y'1, Y'r, Y'q: no separate pass
  over the rows for them.
  """
  n, dx = x.shape
  dy = y.shape[1]
  r = jnp.sum(x * x, axis=1)
  q = jnp.sum(y * y, axis=1)
  e = jnp.concatenate([jnp.stack([jnp.ones_like(r), r, q], axis=1),
                       jnp.zeros((n, _ROW_TERMS - 3), r.dtype)], axis=1)
  xa = symmetric_rows_dot(jnp.concatenate([x, e], axis=1))
  ya = symmetric_rows_dot(jnp.concatenate([y, e], axis=1))
  return LinearStats(
      xy=dot_highest(x.T, y), xx=xa[:dx, :dx], yy=ya[:dy, :dy],
      sx=xa[:dx, dx], sy=ya[:dy, dy], xr=xa[:dx, dx + 1], xq=xa[:dx, dx + 2],
      yr=ya[:dy, dy + 1], yq=ya[:dy, dy + 2],
      sum_r=xa[dx, dx + 1], sum_q=xa[dx, dx + 2], rq=xa[dx + 1, dx + 2],
      rr=xa[dx + 1, dx + 1], qq=xa[dx + 2, dx + 2])


def add_stats(s: LinearStats, t: LinearStats) -> LinearStats:
  return LinearStats(*(u + v for u, v in zip(s, t)))


def chunked_linear_stats(x: jax.Array, y: jax.Array, shift_x, shift_y,
                         chunk_size: int) -> LinearStats:
  """Statistics of shifted features, accumulated over row chunks with `lax.scan`.

  Memory O(chunk_size (Dx + Dy) + (Dx + Dy)^2); the shifted copy is made one
  chunk at a time.
  """
  n = x.shape[0]
  full = n // chunk_size

  def block(start, size):
    xs = lax.dynamic_slice_in_dim(x, start, size) - shift_x
    ys = lax.dynamic_slice_in_dim(y, start, size) - shift_y
    return linear_stats(xs, ys)

  total = block(full * chunk_size, n - full * chunk_size) if n % chunk_size else None
  if full:
    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: block(0, chunk_size)))
    scanned, _ = lax.scan(lambda acc, c: (add_stats(acc, block(c * chunk_size, chunk_size)), None),
                          zero, jnp.arange(full))
    total = scanned if total is None else add_stats(scanned, total)
  return total


def hsic_from_stats(s: LinearStats, n: int, unbiased: bool):
  """(HSIC(K,L), HSIC(K,K), HSIC(L,L)) for K = XX', L = YY'. O(D^2)."""
  if not unbiased:
    def centred_sq(c, u, v):
      return jnp.sum(jnp.square(c - jnp.outer(u, v) / n))
    return (centred_sq(s.xy, s.sx, s.sy), centred_sq(s.xx, s.sx, s.sx),
            centred_sq(s.yy, s.sy, s.sy))
  sum_k = dot_highest(s.sx, s.sx) - s.sum_r
  sum_l = dot_highest(s.sy, s.sy) - s.sum_q
  kl = unbiased_from_terms(jnp.sum(jnp.square(s.xy)) - s.rq, sum_k, sum_l,
                 dot_highest(dot_highest(s.sx, s.xy), s.sy) - dot_highest(s.sx, s.xq) - dot_highest(s.sy, s.yr) + s.rq, n)
  kk = unbiased_from_terms(jnp.sum(jnp.square(s.xx)) - s.rr, sum_k, sum_k,
                 dot_highest(dot_highest(s.sx, s.xx), s.sx) - 2.0 * dot_highest(s.sx, s.xr) + s.rr, n)
  ll = unbiased_from_terms(jnp.sum(jnp.square(s.yy)) - s.qq, sum_l, sum_l,
                 dot_highest(dot_highest(s.sy, s.yy), s.sy) - 2.0 * dot_highest(s.sy, s.yq) + s.qq, n)
  return kl, kk, ll


def sharded_linear_stats(x, y, shift_x, shift_y, chunk_size: int, mesh, axes) -> LinearStats:
  """`chunked_linear_stats` with rows sharded over `axes` of `mesh`, summed by `psum`.

  Rows are padded with copies of the shift, which become exact zeros after
  shifting and add nothing. Per device: O(N (Dx + Dy)^2 / P) time; one
  all-reduce of O((Dx + Dy)^2) values.
  """
  shards = _mesh.shard_count(mesh, axes)
  rows = _mesh.padded_rows(x.shape[0], shards)
  spec = _mesh.row_spec(axes)
  x = lax.with_sharding_constraint(_mesh.pad_rows(x, rows, shift_x), _mesh.rows_sharding(mesh, axes))
  y = lax.with_sharding_constraint(_mesh.pad_rows(y, rows, shift_y), _mesh.rows_sharding(mesh, axes))

  def local(xl, yl, sx, sy):
    return jax.tree.map(lambda v: lax.psum(v, axes),
                        chunked_linear_stats(xl, yl, sx, sy, chunk_size))

  return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, P(), P()), out_specs=P(),
                       check_vma=False)(x, y, shift_x, shift_y)
