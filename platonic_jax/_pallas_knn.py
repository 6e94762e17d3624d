"""Fused self-kNN as one Pallas kernel: each tile is multiplied and folded into the
running top k on chip; no similarity tile ever reaches HBM.

One program per block of `block_rows` query rows. It walks the column blocks in
order, computes the `[block_rows, block_cols]` similarity tile with `dot` over
slices of `block_depth` features (so that on a GPU only `[block_rows +
block_cols, block_depth]` operands are on chip at a time, not whole rows of D =
1024), masks the diagonal and the padding, and folds the tile into its rows'
running top k by k exact extractions over the union of the running list and the
tile, ranked by (value desc, index asc): the same neighbours and tie-break as
every other path. A tile whose every row maximum lies below the row's current
k-th value is skipped after the product (most tiles, once the lists have
filled).

Lowers through Triton on GPU, asked for explicitly: since jax 0.10 a GPU
`pallas_call` without Triton parameters goes to Mosaic GPU, which would stage
the whole `[N, D]` operand in shared memory and fail. On CPU it runs in Pallas
interpret mode (for tests; slow). There is no TPU lowering. jax 0.11
deprecates the Triton backend in favour of Mosaic GPU; a Mosaic GPU version
would have to stage the column blocks through shared memory itself.

It computes the full Gram (N^2 D multiply-adds, no symmetry: programs do not
write each other's lists), holds O(block_rows k + (block_rows + block_cols)
block_depth + block_rows block_cols) on chip per program, and reads
O(N^2 D (1/block_rows + 1/block_cols)) from HBM. Whether it beats the tiled
XLA path on a GPU has not been measured yet, so `knn(method='auto')` does not
pick it; ask for it with `method='pallas'`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

_NEG_INF = float("-inf")
_NO_INDEX = jnp.iinfo(jnp.int32).max


def _next_power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


def _fold(best_v, best_i, s, cols, k: int):
  """The k best of (running list, tile) by (value desc, index asc): k extractions.

  best_v, best_i: `[r, kp]` running list (kp >= k, entries past k are -inf);
  s: `[r, c]` tile values; cols: `[1, c]` their global indices. Only
  elementwise ops and row reductions, so it lowers to Triton as is.
  """
  r, kp = best_v.shape
  slot = lax.broadcasted_iota(jnp.int32, (r, kp), 1)
  taken_run = jnp.zeros((r, kp), jnp.bool_)
  taken_tile = jnp.zeros(s.shape, jnp.bool_)
  new_v = jnp.full((r, kp), _NEG_INF, jnp.float32)
  new_i = jnp.full((r, kp), -1, jnp.int32)
  for p in range(k):
    run_v = jnp.where(taken_run, _NEG_INF, best_v)
    tile_v = jnp.where(taken_tile, _NEG_INF, s)
    top = jnp.maximum(run_v.max(axis=1, keepdims=True), tile_v.max(axis=1, keepdims=True))
    from_run = jnp.where((run_v == top) & ~taken_run, best_i, _NO_INDEX).min(axis=1, keepdims=True)
    from_tile = jnp.where((tile_v == top) & ~taken_tile, cols, _NO_INDEX).min(axis=1,
                                                                               keepdims=True)
    chosen = jnp.minimum(from_run, from_tile)
    taken_run = taken_run | ((best_i == chosen) & (from_run <= from_tile))
    taken_tile = taken_tile | ((cols == chosen) & (from_tile < from_run))
    new_v = jnp.where(slot == p, top, new_v)
    new_i = jnp.where(slot == p, chosen, new_i)
  return new_v, new_i


def _kernel(q_ref, x_ref, v_ref, i_ref, *, k: int, n_valid: int, block_cols: int,
            block_depth: int, precision, padded: int):
  block_rows, depth = q_ref.shape
  row0 = pl.program_id(0) * block_rows
  rows = row0 + lax.broadcasted_iota(jnp.int32, (block_rows, 1), 0)
  kp = v_ref.shape[1]

  def column_block(c, carry):
    best_v, best_i = carry
    col0 = pl.multiple_of(c * block_cols, block_cols)

    def depth_slice(t, s):
      d0 = pl.multiple_of(t * block_depth, block_depth)
      q = q_ref[:, pl.ds(d0, block_depth)]
      db = x_ref[pl.ds(col0, block_cols), pl.ds(d0, block_depth)]
      return s + lax.dot_general(q, db, (((1,), (1,)), ((), ())), precision=precision,
                                 preferred_element_type=jnp.float32)

    s = lax.fori_loop(0, depth // block_depth, depth_slice,
                      jnp.zeros((block_rows, block_cols), jnp.float32))
    cols = col0 + lax.broadcasted_iota(jnp.int32, (1, block_cols), 1)
    s = jnp.where((cols < n_valid) & (cols != rows), s, _NEG_INF)
    # The k-th entry sorts last among the first k; a row needs the tile only if
    # some value reaches it (ties may still win on the index).
    kth = jnp.min(jnp.where(lax.broadcasted_iota(jnp.int32, (block_rows, kp), 1) < k,
                            best_v, jnp.inf), axis=1, keepdims=True)
    needed = jnp.max((s.max(axis=1, keepdims=True) >= kth).astype(jnp.int32)) > 0
    return lax.cond(needed, lambda: _fold(best_v, best_i, s, cols, k), lambda: (best_v, best_i))

  init = (jnp.full((block_rows, kp), _NEG_INF, jnp.float32),
          jnp.full((block_rows, kp), -1, jnp.int32))
  best_v, best_i = lax.fori_loop(0, padded // block_cols, column_block, init)
  v_ref[...] = best_v
  i_ref[...] = best_i


@functools.partial(jax.jit, static_argnames=("k", "precision", "block_rows", "block_cols",
                                             "block_depth", "interpret"))
def self_knn_pallas(x, k: int, precision: str = "highest", block_rows: int = 64,
                    block_cols: int = 64, block_depth: int = 64, interpret: bool | None = None):
  """(similarities, indices) `[N, k]` of the k most similar other rows, fused.

  Args:
    x: features `[N, D]`.
    k: neighbours per row (static), 1 <= k <= N - 1.
    precision: 'highest', 'default' or 'bfloat16' (bf16 inputs, float32
      accumulation), as in `knn`.
    block_rows, block_cols: the tile (powers of two, at least 16 for Triton).
    block_depth: features per partial product (a power of two, at least 16;
      capped at D rounded up to a power of two). Partial products add up in
      float32, so the similarities may differ from the XLA paths' in the last
      bits (indices only where two neighbours nearly tie).
    interpret: Pallas interpret mode; default on CPU, where no compiled
      lowering exists.

  Cost: N^2 D multiply-adds and O(N^2 k / block_cols) selection work on the
  tiles that need it; no HBM traffic for similarities.
  """
  if interpret is None:
    interpret = jax.default_backend() == "cpu"
  compiler_params = None
  if not interpret:
    if jax.default_backend() == "tpu":
      raise ValueError("method='pallas' lowers through Triton, for GPUs; on TPU use 'auto' or "
                       "'tiled'.")
    # Imported here, not with the module: jax 0.11 deprecates Pallas's Triton backend,
    # and only this compiled path needs it. Default warps and stages.
    from jax.experimental.pallas import triton as pallas_triton  # pylint: disable=import-outside-toplevel
    compiler_params = pallas_triton.CompilerParams()
  n, d = x.shape
  step = max(block_rows, block_cols)
  padded = -(-n // step) * step
  if block_depth < 16 or block_depth & (block_depth - 1):
    raise ValueError(f"block_depth must be a power of two of at least 16, got {block_depth}")
  dp = max(16, _next_power_of_two(d))  # Triton blocks are powers of two; zeros add nothing
  block_depth = min(block_depth, dp)
  x = x.astype(jnp.bfloat16 if precision == "bfloat16" else jnp.float32)
  x = jnp.pad(x, ((0, padded - n), (0, dp - d)))
  kp = max(16, _next_power_of_two(k))
  lax_precision = lax.Precision.HIGHEST if precision == "highest" else lax.Precision.DEFAULT
  kernel = functools.partial(_kernel, k=k, n_valid=n, block_cols=block_cols,
                             block_depth=block_depth, precision=lax_precision, padded=padded)
  values, index = pl.pallas_call(
      kernel,
      grid=(padded // block_rows,),
      in_specs=[pl.BlockSpec((block_rows, dp), lambda i: (i, 0)),
                pl.BlockSpec((padded, dp), lambda i: (0, 0))],
      out_specs=[pl.BlockSpec((block_rows, kp), lambda i: (i, 0)),
                 pl.BlockSpec((block_rows, kp), lambda i: (i, 0))],
      out_shape=[jax.ShapeDtypeStruct((padded, kp), jnp.float32),
                 jax.ShapeDtypeStruct((padded, kp), jnp.int32)],
      interpret=interpret,
      compiler_params=compiler_params,
  )(x, x)
  return values[:n, :k], index[:n, :k]
