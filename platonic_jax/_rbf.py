"""RBF-kernel HSIC without any N x N buffer, and the median bandwidth heuristic.

The Gaussian kernel K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)) has no finite
feature-space statistics, so its HSIC needs all N^2 kernel values. They are
generated one `[tile, tile]` Gram block at a time and reduced on the spot to
the few sums the HSIC estimators need (see `_hsic` for the conventions). With
K, L symmetric and K1, L1 their row sums,

  biased:   tr(K H L H) = sum(K o L) - 2/n (K1).(L1) + (1'K1)(1'L1) / n^2,
  unbiased: HSIC_1 of `_hsic.unbiased_from_terms` with tr(K~L~) = sum(K~ o L~),
            1'K~L~1 = (K~1).(L~1), and K~, L~ the kernels with zeroed diagonals.

So a tile contributes five scalars (sum K o L, K o K, L o L, K, L; diagonal
included for the biased, excluded for the unbiased estimator) and its row and
column sums. The kernels are symmetric: only tiles (i, j) with i <= j are
formed; an off-diagonal tile counts twice in the scalars and gives its row sums
to row block i and its column sums to row block j.

Float32 accuracy. One-pass sums cancel: tr(KHLH) is often a small difference
of O(N^2) terms. Both estimators are exactly invariant to adding a constant c
to every off-diagonal kernel entry (the biased one to every entry, diagonal
included, since H1 = 0; the U-centred kernel of the unbiased one absorbs it),
so each kernel is accumulated as K - c with c its mean off-diagonal value on a
strided 128-row pilot, and K - c is formed as expm1(z) + (1 - c) where
K >= 0.5, which keeps the small differences between kernel values near 1 that
a rounded exp loses at large sigma. Against float64, this is 1e-7..1e-6
relative where the dense float32 `_cka.rbf_gram` path is 1e-6..1e-1.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from platonic_jax import _hsic, _mesh, _tiles

_HIGHEST = lax.Precision.HIGHEST


def _blocks(x: jax.Array, tile: int, num_tiles: int):
  """Pilot-shifted rows, zero-padded to `num_tiles * tile`: (`[T, tile, D]`, norms `[T, tile]`)."""
  x = x - _hsic.pilot_shift(x)
  x = jnp.pad(x, ((0, num_tiles * tile - x.shape[0]), (0, 0)))
  x = x.reshape(num_tiles, tile, x.shape[1])
  return x, jnp.sum(x * x, axis=2)


def _squared_distances(xi, xj, ri, rj, same):
  """`[tile, tile]` squared distances r_i + r_j - 2 x_i.x_j, >= 0, exactly 0 where `same`."""
  d2 = ri[:, None] + rj[None, :] - 2.0 * jnp.dot(xi, xj.T, precision=_HIGHEST)
  return jnp.where(same, 0.0, jnp.maximum(d2, 0.0))


def _shifted_kernel(z, offset):
  """exp(z) - offset for z <= 0, accurate to float rounding of the result.

  Below 0.5 the exponential itself is accurate; above, expm1(z) = exp(z) - 1
  keeps the small differences between kernel values near 1 (large sigma) that
  a rounded exp(z) would lose.
  """
  e = jnp.exp(z)
  return jnp.where(e < 0.5, e - offset, jnp.expm1(z) + (1.0 - offset))


def _pilot_kernel_mean(blocks, norms, n: int, scale, rows: int = 128):
  """Mean off-diagonal kernel value over an evenly strided subsample of <= `rows` rows."""
  index = median_subsample(n, rows)
  x = blocks.reshape(-1, blocks.shape[-1])[index]
  r = norms.reshape(-1)[index]
  m = index.shape[0]
  k = jnp.exp(scale * _squared_distances(x, x, r, r, jnp.eye(m, dtype=bool)))
  return (jnp.sum(k) - m) / max(m * (m - 1), 1)


def rbf_hsic_tiled(
    a: Float[Array, "n da"],
    b: Float[Array, "n db"],
    sigma_a,
    sigma_b,
    *,
    unbiased: bool,
    tile_size: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
  """(HSIC(K,L), HSIC(K,K), HSIC(L,L)) for Gaussian kernels, tile by tile.

  K_ij = exp(-|a_i - a_j|^2 / (2 sigma_a^2)), L likewise from `b` and
  `sigma_b`. The values equal `_hsic.hsic_biased_gram` (tr(KHLH), no
  1/(n-1)^2 factor) or `_hsic.hsic_unbiased_gram` (Song et al. 2012, N >= 4)
  applied to the dense kernels, up to float rounding. Unchecked kernel: the
  inputs must already be validated floating arrays. Works under `jax.jit`,
  `jax.vmap` and `jax.grad` (in `a`, `b` and the sigmas); the scan body is
  rematerialised, so reverse mode stores no kernel tiles.

  Features are shifted by `_hsic.pilot_shift` first (distances do not change;
  float32 squared distances r_i + r_j - 2 x_i.x_j lose less to cancellation),
  distances are clamped at >= 0 and the global diagonal is exactly 0 (K_ii = 1).
  Rows padded up to a multiple of the tile are masked out. Kernels are
  accumulated minus a pilot mean value, which leaves both estimators unchanged
  (see the module docstring).

  Args:
    a: features `[N, Da]`.
    b: features `[N, Db]` of the same N samples.
    sigma_a: bandwidth of K (> 0), a scalar; may be traced.
    sigma_b: bandwidth of L (> 0), a scalar; may be traced.
    unbiased: the unbiased estimator (zeroed diagonals) instead of tr(KHLH) (static).
    tile_size: rows per Gram tile (static): default `_tiles.default_tile_size()`
      (2048 on CPU), capped at N, rounded up to a multiple of 16.

  Returns:
    Three scalars of the input dtype: HSIC(K,L), HSIC(K,K), HSIC(L,L).

  Cost: O(N^2 (Da + Db)) time, about half of two dense Grams by symmetry
  ((T+1)/(2T) of them for T = ceil(N / tile) tiles a side), plus O(N^2)
  exponentials halved likewise; O(tile^2 + N) memory besides the padded
  `[N, D]` copies of the inputs, forward and reverse mode alike.
  """
  n = a.shape[0]
  dtype = jnp.result_type(a, b)
  tile, num_tiles = _tiles.tile_layout(n, tile_size)
  blocks_a, norms_a = _blocks(a.astype(dtype), tile, num_tiles)
  blocks_b, norms_b = _blocks(b.astype(dtype), tile, num_tiles)
  scale_a = -0.5 / jnp.square(jnp.asarray(sigma_a, dtype))
  scale_b = -0.5 / jnp.square(jnp.asarray(sigma_b, dtype))
  local = jnp.arange(tile)

  # HSIC (both estimators) is unchanged when a constant is added to every
  # off-diagonal kernel entry (the biased one also on the diagonal): subtracting
  # roughly the mean kernel value makes the one-pass sums below cancel far less.
  offset_a = lax.stop_gradient(_pilot_kernel_mean(blocks_a, norms_a, n, scale_a))
  offset_b = lax.stop_gradient(_pilot_kernel_mean(blocks_b, norms_b, n, scale_b))

  @jax.checkpoint
  def step(carry, pair):
    sums, row_k, row_l = carry
    i, j = pair
    row = i * tile + local
    col = j * tile + local
    same = row[:, None] == col[None, :]
    keep = (row[:, None] < n) & (col[None, :] < n)
    if unbiased:
      keep = keep & ~same
    k = _shifted_kernel(scale_a * _squared_distances(blocks_a[i], blocks_a[j], norms_a[i],
                                                     norms_a[j], same), offset_a)
    l = _shifted_kernel(scale_b * _squared_distances(blocks_b[i], blocks_b[j], norms_b[i],
                                                     norms_b[j], same), offset_b)
    k = jnp.where(keep, k, 0.0)
    l = jnp.where(keep, l, 0.0)
    k_rows, k_cols = jnp.sum(k, axis=1), jnp.sum(k, axis=0)
    l_rows, l_cols = jnp.sum(l, axis=1), jnp.sum(l, axis=0)
    off = (i != j).astype(dtype)
    tile_sums = jnp.stack([jnp.sum(jnp.sum(k * l, axis=1)), jnp.sum(jnp.sum(k * k, axis=1)),
                           jnp.sum(jnp.sum(l * l, axis=1)), jnp.sum(k_rows), jnp.sum(l_rows)])
    sums = sums + (1.0 + off) * tile_sums
    row_k = row_k.at[i].add(k_rows).at[j].add(off * k_cols)
    row_l = row_l.at[i].add(l_rows).at[j].add(off * l_cols)
    return (sums, row_k, row_l), None

  init = (jnp.zeros(5, dtype), jnp.zeros((num_tiles, tile), dtype),
          jnp.zeros((num_tiles, tile), dtype))
  rows, cols = _tiles.upper_tile_pairs(num_tiles)
  (sums, row_k, row_l), _ = lax.scan(step, init, (jnp.asarray(rows), jnp.asarray(cols)))
  row_k = row_k.reshape(-1)  # padded entries are exactly 0
  row_l = row_l.reshape(-1)
  dot = _hsic.dot_highest
  return _finish(sums, dot(row_k, row_l), dot(row_k, row_k), dot(row_l, row_l), n, unbiased)


def _finish(sums, k_l, k_k, l_l, n: int, unbiased: bool):
  s_kl, s_kk, s_ll, s_k, s_l = (sums[t] for t in range(5))
  if unbiased:
    hsic = _hsic.unbiased_from_terms
    return hsic(s_kl, s_k, s_l, k_l, n), hsic(s_kk, s_k, s_k, k_k, n), hsic(s_ll, s_l, s_l, l_l, n)

  def biased(s_uv, s_u, s_v, cross):
    return s_uv - 2.0 * cross / n + s_u * s_v / float(n) ** 2

  return biased(s_kl, s_k, s_l, k_l), biased(s_kk, s_k, s_k, k_k), biased(s_ll, s_l, s_l, l_l)


def _block_sums(rows_a, cols_a, rows_b, cols_b, row_offset, col_offset, *, n: int, tile: int,
                scales, offsets, unbiased: bool):
  """Kernel sums of local rows against one block of columns, tile by tile.

  Returns (the five scalar sums, K1 and L1 restricted to these columns, for
  the local rows). Every ordered pair is visited once (no symmetry).
  """
  d_a, d_b = rows_a.shape[1], rows_b.shape[1]
  ra, ca = rows_a.reshape(-1, tile, d_a), cols_a.reshape(-1, tile, d_a)
  rb, cb = rows_b.reshape(-1, tile, d_b), cols_b.reshape(-1, tile, d_b)
  norms = [jnp.sum(v * v, axis=2) for v in (ra, ca, rb, cb)]
  local = jnp.arange(tile)

  def row_tile(_, r):
    row = row_offset + r * tile + local

    @jax.checkpoint
    def column_tile(carry, c):
      sums, k_rows, l_rows = carry
      col = col_offset + c * tile + local
      same = row[:, None] == col[None, :]
      keep = (row[:, None] < n) & (col[None, :] < n)
      if unbiased:
        keep = keep & ~same
      k = _shifted_kernel(scales[0] * _squared_distances(ra[r], ca[c], norms[0][r], norms[1][c],
                                                         same), offsets[0])
      l = _shifted_kernel(scales[1] * _squared_distances(rb[r], cb[c], norms[2][r], norms[3][c],
                                                         same), offsets[1])
      k = jnp.where(keep, k, 0.0)
      l = jnp.where(keep, l, 0.0)
      kr, lr = jnp.sum(k, axis=1), jnp.sum(l, axis=1)
      sums = sums + jnp.stack([jnp.sum(k * l), jnp.sum(k * k), jnp.sum(l * l), jnp.sum(kr),
                               jnp.sum(lr)])
      return (sums, k_rows + kr, l_rows + lr), None

    init = (jnp.zeros(5, rows_a.dtype), jnp.zeros(tile, rows_a.dtype),
            jnp.zeros(tile, rows_a.dtype))
    (sums, k_rows, l_rows), _ = lax.scan(column_tile, init, jnp.arange(ca.shape[0]))
    return None, (sums, k_rows, l_rows)

  _, (sums, k_rows, l_rows) = lax.scan(row_tile, None, jnp.arange(ra.shape[0]))
  return sums.sum(axis=0), k_rows.reshape(-1), l_rows.reshape(-1)


def rbf_hsic_sharded(a, b, sigma_a, sigma_b, *, unbiased: bool, tile_size: int | None, mesh,
                     axes):
  """`rbf_hsic_tiled` with rows sharded over `axes` of `mesh`, as a device ring.

  Each device keeps its rows and their partial row sums K1, L1; the column
  blocks travel around the ring (`lax.ppermute`, next block in flight while
  the current one is reduced). Scalars and the dot products of row sums are
  `psum`-reduced at the end. Per device: O(N^2 (Da + Db) / P) time (the ring
  does not use the symmetry), O(N (Da + Db) / P + tile^2) memory.
  """
  n = a.shape[0]
  dtype = jnp.result_type(a, b)
  shards = _mesh.shard_count(mesh, axes)
  tile, _ = _tiles.tile_layout(-(-n // shards), tile_size)
  padded = _mesh.padded_rows(n, shards, tile)
  a = a.astype(dtype) - _hsic.pilot_shift(a.astype(dtype))
  b = b.astype(dtype) - _hsic.pilot_shift(b.astype(dtype))
  scales = (-0.5 / jnp.square(jnp.asarray(sigma_a, dtype)),
            -0.5 / jnp.square(jnp.asarray(sigma_b, dtype)))
  offsets = tuple(
      lax.stop_gradient(_pilot_kernel_mean(x, jnp.sum(x * x, axis=1), n, scale))
      for x, scale in ((a, scales[0]), (b, scales[1])))
  sharding = _mesh.rows_sharding(mesh, axes)
  a = lax.with_sharding_constraint(_mesh.pad_rows(a, padded), sharding)
  b = lax.with_sharding_constraint(_mesh.pad_rows(b, padded), sharding)
  spec = _mesh.row_spec(axes)
  permutation = [(j, (j - 1) % shards) for j in range(shards)]

  def body(a_local, b_local, scales, offsets):
    me = lax.axis_index(axes)
    n_local = a_local.shape[0]

    def against(cols_a, cols_b, step):
      source = (me + step) % shards
      return _block_sums(a_local, cols_a, b_local, cols_b, me * n_local, source * n_local,
                         n=n, tile=tile, scales=scales, offsets=offsets, unbiased=unbiased)

    def step(carry, s):
      totals, cols = carry
      incoming = jax.tree.map(lambda v: lax.ppermute(v, axes, permutation), cols)
      return (jax.tree.map(jnp.add, totals, against(*cols, s)), incoming), None

    zeros = (jnp.zeros(5, dtype), jnp.zeros(n_local, dtype), jnp.zeros(n_local, dtype))
    (totals, last), _ = lax.scan(step, (zeros, (a_local, b_local)), jnp.arange(shards - 1))
    sums, k_rows, l_rows = jax.tree.map(jnp.add, totals, against(*last, shards - 1))
    dots = jnp.stack([_hsic.dot_highest(k_rows, l_rows), _hsic.dot_highest(k_rows, k_rows),
                      _hsic.dot_highest(l_rows, l_rows)])
    return lax.psum(sums, axes), lax.psum(dots, axes)

  sums, dots = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, P(), P()),
                             out_specs=(P(), P()), check_vma=False)(a, b, scales, offsets)
  return _finish(sums, dots[0], dots[1], dots[2], n, unbiased)


def median_subsample(n: int, max_samples: int = 2048) -> np.ndarray:
  """Static row indices round(linspace(0, N-1, m)), m = min(N, max_samples) (NumPy rounding)."""
  m = min(n, max_samples)
  return np.round(np.linspace(0, n - 1, m)).astype(np.int64)


def median_sigma(x: Float[Array, "n d"], max_samples: int = 2048) -> Float[Array, ""]:
  """The median heuristic bandwidth: the median pairwise Euclidean distance.

  Takes an evenly strided, deterministic subsample of m = min(N, max_samples)
  rows, indices round(linspace(0, N-1, m)) (all rows when N <= max_samples),
  and returns the exact median of |x_i - x_j| over its m(m-1)/2 pairs i < j
  (the mean of the two middle values when their count is even). Distances use
  pilot-shifted features and the float32-friendly r_i + r_j - 2 x_i.x_j,
  clamped at 0. If the median is 0 (e.g. constant data, or more than half the
  pairs duplicates) it returns 1.0, so the kernel stays defined. Jit- and
  vmap-safe; its gradient is finite, but the median is only piecewise smooth:
  usually treat the result as a constant (`lax.stop_gradient`).

  Args:
    x: features `[N, D]`, N >= 2.
    max_samples: most rows used (static), >= 2.

  Returns:
    A positive scalar of the dtype of `x`.

  Cost: O(m^2 D) time for the Gram plus an O(m^2 log m) sort, O(m^2) memory
  (m = 2048: 4M values).
  """
  n = x.shape[0]
  if n < 2 or max_samples < 2:
    raise ValueError(f"median_sigma needs N >= 2 and max_samples >= 2, got N={n}, "
                     f"max_samples={max_samples}.")
  xs = x[median_subsample(n, max_samples)]
  xs = xs - _hsic.pilot_shift(xs)
  m = xs.shape[0]
  r = jnp.sum(xs * xs, axis=1)
  d2 = jnp.maximum(r[:, None] + r[None, :] - 2.0 * jnp.dot(xs, xs.T, precision=_HIGHEST), 0.0)
  positive = d2 > 0
  d = jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)  # grad-safe at 0
  index = jnp.arange(m)
  # Pairs i >= j sort after every real distance; the median lies in the first m(m-1)/2.
  d = jnp.sort(jnp.where(index[:, None] < index[None, :], d, jnp.inf).reshape(-1))
  pairs = m * (m - 1) // 2
  median = 0.5 * (d[(pairs - 1) // 2] + d[pairs // 2])
  return jnp.where(median > 0, median, jnp.ones_like(median))
