"""Exact k-nearest-neighbour search under the inner product.

Every path returns the same neighbours: for row i, the k indices j != i with
the largest x_i . x_j, ordered by descending similarity, ties broken by the
lower index. The tiled path never holds more than one `[tile, tile]` block of
the Gram matrix, which is what lets N go far past N x N memory.

Three facts make the tiled path fast and exact:

* Group pre-selection. A row of a tile is cut into groups of g consecutive
  columns. The top k of the row lie inside the k groups with the largest
  maxima (ranked by (max desc, group asc)): any element outside them is
  outranked by k group maxima. So selection touches c/g + k*g values instead
  of c.
* Symmetry. The self-similarity Gram is symmetric, so the tile (i, j), i <= j,
  serves row block i (its rows) and row block j (its columns, read in place).
* Order-free selection. Every selection and merge ranks candidates by
  (value desc, index asc) explicitly (`select_top_k`), so blocks may arrive in
  any order (symmetric tiles, the device ring) and the tie-break stays exact.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from platonic_jax import _mesh, _validation

PRECISIONS = ("highest", "default", "bfloat16")
METHODS = ("auto", "tiled", "dense")
_NEG_INF = -jnp.inf


def default_tile_size() -> int:
  """Rows per Gram tile: 2048 on CPU (L2-friendly GEMMs), 4096 on accelerators."""
  return 2048 if jax.default_backend() == "cpu" else 4096


def cast_for_precision(x: jax.Array, precision: str) -> jax.Array:
  """Casts features once, before tiling: bf16 halves the bytes every tile reads."""
  return x.astype(jnp.bfloat16) if precision == "bfloat16" else x


def similarity(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
  """`a @ b.T` in float32 under the named precision policy.

  'highest': full float32 products. 'default': the backend's fast float32 mode
  (TF32 on NVIDIA Ampere and later, bf16 passes on TPU, exact on CPU).
  'bfloat16': bf16 inputs (see `cast_for_precision`), float32 accumulation.
  """
  lax_precision = lax.Precision.HIGHEST if precision == "highest" else lax.Precision.DEFAULT
  out_dtype = jnp.promote_types(a.dtype, jnp.float32)
  return lax.dot_general(
      a, b, (((1,), (1,)), ((), ())), precision=lax_precision, preferred_element_type=out_dtype
  )


def _group_size(columns: int, k: int) -> int:
  """Power of two near sqrt(columns / k): balances the two selection passes."""
  if columns < 4 * k:
    return 1
  g = 2 ** int(round(math.log2(math.sqrt(columns / k))))
  while g > 1 and (columns % g or columns // g < k):
    g //= 2
  return max(g, 1)


_EXTRACTION_MAX_K = 16  # up to here k max-extractions beat a sort's per-row cost on CPU
_NO_INDEX = jnp.iinfo(jnp.int32).max


def select_top_k(values: Float[Array, "r c"], index: Int[Array, "r c"], k: int):
  """The k best of each row's candidates by (value desc, index asc), in that order.

  Candidates may come in any order and from any blocks (indices distinct
  within a row, except that sentinel entries of value -inf may repeat). For
  small k this is k vectorised max-extractions, O(r c k); otherwise one
  lexicographic sort, O(r c log c).
  """
  if k > _EXTRACTION_MAX_K:
    neg, index = lax.sort((-values, index), dimension=1, num_keys=2)
    return -neg[:, :k], index[:, :k]
  rows = values.shape[0]

  def extract(j, carry):
    values, index, best_values, best_index = carry
    top = values.max(axis=1, keepdims=True)
    chosen = jnp.min(jnp.where(values == top, index, _NO_INDEX), axis=1, keepdims=True)
    taken = index == chosen
    return (jnp.where(taken, _NEG_INF, values), jnp.where(taken, _NO_INDEX, index),
            best_values.at[:, j].set(top[:, 0]), best_index.at[:, j].set(chosen[:, 0]))

  init = (values, index, jnp.zeros((rows, k), values.dtype), jnp.zeros((rows, k), index.dtype))
  return lax.fori_loop(0, k, extract, init)[2:]


def block_top_k(
    s: Float[Array, "r c"], k: int, offset, approx_recall: float | None = None, *,
    axis: int = 1,
) -> tuple[Float[Array, "m k"], Int[Array, "m k"]]:
  """Top k along `axis` of a similarity block, ties to the lower index.

  `axis=1`: each row's top k among the columns (global index `offset + column`);
  `axis=0`: each column's top k among the rows (global `offset + row`),
  without transposing the block. Values come sorted descending.

  Cost: one O(r c) max-reduction into groups of g consecutive entries, then
  selection among c/g group maxima and k g candidates (g = `_group_size`).
  With `approx_recall` the selection is `lax.approx_max_k` at that recall
  target (approximate on TPU; XLA computes it exactly on CPU and GPU).
  """
  if axis == 0:
    s_lines = s.T  # only materialised on the small-block and approximate paths below
  r, c = s.shape if axis == 1 else s.shape[::-1]
  if approx_recall is not None:
    values, local = lax.approx_max_k(s if axis == 1 else s_lines, k, recall_target=approx_recall)
    return values, local.astype(jnp.int32) + offset
  g = _group_size(c, k)
  if g == 1 or c < k:
    lines = s if axis == 1 else s_lines
    if c < k:  # narrow block (many shards, k near N): -inf entries never survive the merges
      lines = jnp.pad(lines, ((0, 0), (0, k - c)), constant_values=_NEG_INF)
    local = jnp.broadcast_to(jnp.arange(lines.shape[1], dtype=jnp.int32), lines.shape)
    values, chosen = select_top_k(lines, local, k)
    return values, chosen + offset
  if axis == 1:
    grouped = s.reshape(r, c // g, g)
    group_max = grouped.max(axis=2)
  else:
    grouped = s.reshape(c // g, g, r)  # rows of s in groups: [group, member, line]
    group_max = grouped.max(axis=1).T
  group_ids = jnp.broadcast_to(jnp.arange(c // g, dtype=jnp.int32), group_max.shape)
  _, groups = select_top_k(group_max, group_ids, k)
  if axis == 1:
    candidates = jnp.take_along_axis(grouped, groups[:, :, None], axis=1)
  else:
    candidates = grouped[groups, :, jnp.arange(r)[:, None]]
  local = (groups[:, :, None] * g + jnp.arange(g, dtype=jnp.int32)).reshape(r, k * g)
  values, chosen = select_top_k(candidates.reshape(r, k * g), local, k)
  return values, chosen + offset


def merge(run_values, run_index, new_values, new_index, k: int):
  """Merges two top-k lists (any index order) into the top k by (value desc, index asc)."""
  return select_top_k(jnp.concatenate([run_values, new_values], axis=-1),
                      jnp.concatenate([run_index, new_index], axis=-1), k)


def self_knn_dense(x: jax.Array, k: int, precision: str = "highest"):
  """Full N x N similarity, diagonal masked, `top_k` per row. O(N^2 D) time, O(N^2) memory."""
  x = cast_for_precision(x, precision)
  s = similarity(x, x, precision)
  n = s.shape[0]
  s = jnp.where(jnp.eye(n, dtype=bool), _NEG_INF, s)
  return lax.top_k(s, k)


def _tile_pairs(num_tiles: int) -> tuple[np.ndarray, np.ndarray]:
  """Upper-triangular tile pairs (i <= j), column-major: j outer, i inner."""
  rows, cols = [], []
  for j in range(num_tiles):
    for i in range(j + 1):
      rows.append(i)
      cols.append(j)
  return np.asarray(rows, np.int32), np.asarray(cols, np.int32)


def tile_layout(n: int, k: int, tile_size: int | None) -> tuple[int, int]:
  """(tile, num_tiles) for N rows: tiles are multiples of 16 and hold at least k + 1 rows."""
  tile = tile_size or default_tile_size()
  tile = max(tile, k + 1)
  tile = min(tile, n)
  tile = -(-tile // 16) * 16
  return tile, -(-n // tile)


def self_knn_tiled(x: jax.Array, k: int, precision: str = "highest", tile_size: int | None = None,
                   approx_recall: float | None = None):
  """Symmetric tiled self-kNN.

  Cost: (T+1)/(2T) of the N^2 D multiply-adds of a full Gram (T = ceil(N/tile)
  tiles per side), O(N^2 (1/g + k g / tile)) selection work, O(N k + tile^2 + N D)
  memory.
  """
  n, d = x.shape
  tile, num_tiles = tile_layout(n, k, tile_size)
  padded = num_tiles * tile
  blocks = jnp.pad(cast_for_precision(x, precision), ((0, padded - n), (0, 0)))
  blocks = blocks.reshape(num_tiles, tile, d)
  local = jnp.arange(tile, dtype=jnp.int32)
  rows_of_pairs, cols_of_pairs = _tile_pairs(num_tiles)

  init = (
      jnp.full((num_tiles, tile, k), _NEG_INF, jnp.float32),
      jnp.full((num_tiles, tile, k), -1, jnp.int32),
  )

  def step(state, pair):
    values, index = state
    i, j = pair
    s = similarity(blocks[i], blocks[j], precision).astype(jnp.float32)
    row = i * tile + local
    col = j * tile + local
    valid = (row[:, None] < n) & (col[None, :] < n) & (row[:, None] != col[None, :])
    s = jnp.where(valid, s, _NEG_INF)

    def transposed_update(vi):
      v, ix = vi
      cv, ci = block_top_k(s, k, i * tile, approx_recall, axis=0)
      nv, ni = merge(v[j], ix[j], cv, ci, k)
      return v.at[j].set(nv), ix.at[j].set(ni)

    values, index = lax.cond(i == j, lambda vi: vi, transposed_update, (values, index))
    rv, ri = block_top_k(s, k, j * tile, approx_recall)
    nv, ni = merge(values[i], index[i], rv, ri, k)
    return (values.at[i].set(nv), index.at[i].set(ni)), None

  (values, index), _ = lax.scan(step, init, (jnp.asarray(rows_of_pairs), jnp.asarray(cols_of_pairs)))
  return values.reshape(padded, k)[:n], index.reshape(padded, k)[:n]


def query_knn_tiled(q, db, k: int, *, q_offset, db_offset, n_valid: int, precision: str,
                    tile: int, approx_recall: float | None = None):
  """Top k of each row of `q` among the rows of `db` (global indices), self excluded.

  `q` and `db` are blocks of one global row set starting at `q_offset` and
  `db_offset`; columns at or past `n_valid` are padding. Both row counts must
  be multiples of `tile`. Cost: O(|q| |db| D) time, O(|q| k + tile^2) memory.
  """
  d = q.shape[1]
  q_tiles = q.reshape(-1, tile, d)
  db_tiles = db.reshape(-1, tile, d)
  local = jnp.arange(tile, dtype=jnp.int32)

  def row_tile(_, r):
    rows = q_offset + r * tile + local

    def column_tile(state, c):
      cols = db_offset + c * tile + local
      s = similarity(q_tiles[r], db_tiles[c], precision).astype(jnp.float32)
      valid = (cols[None, :] < n_valid) & (rows[:, None] != cols[None, :])
      v, i = block_top_k(jnp.where(valid, s, _NEG_INF), k, db_offset + c * tile, approx_recall)
      return merge(*state, v, i, k), None

    init = (jnp.full((tile, k), _NEG_INF, jnp.float32), jnp.full((tile, k), -1, jnp.int32))
    state, _ = lax.scan(column_tile, init, jnp.arange(db_tiles.shape[0]))
    return None, state

  _, (values, index) = lax.scan(row_tile, None, jnp.arange(q_tiles.shape[0]))
  return values.reshape(-1, k), index.reshape(-1, k)


def ring_knn(x_local, k: int, *, axes, shards: int, n_valid: int, precision: str, tile: int,
             approx_recall: float | None = None):
  """Self-kNN of row-sharded features, inside `shard_map`.

  Each device keeps its query rows and running top-k; database blocks travel
  around the ring with `lax.ppermute` (device j sends to j - 1), and the next
  block's transfer is issued before the current block's GEMMs so the two can
  overlap. `merge` orders by (value, index), so arrival order does not matter.
  Per device: O(N^2 D / P) time, O(N D / P + N k / P + tile^2) memory.
  """
  me = lax.axis_index(axes)
  n_local = x_local.shape[0]
  blocks = cast_for_precision(x_local, precision)
  permutation = [(j, (j - 1) % shards) for j in range(shards)]

  def against(db, step):
    source = (me + step) % shards
    return query_knn_tiled(blocks, db, k, q_offset=me * n_local, db_offset=source * n_local,
                           n_valid=n_valid, precision=precision, tile=tile,
                           approx_recall=approx_recall)

  def step(carry, s):
    state, db = carry
    incoming = lax.ppermute(db, axes, permutation)
    return (merge(*state, *against(db, s), k), incoming), None

  init = (jnp.full((n_local, k), _NEG_INF, jnp.float32), jnp.full((n_local, k), -1, jnp.int32))
  (state, last), _ = lax.scan(step, (init, blocks), jnp.arange(shards - 1))
  return merge(*state, *against(last, shards - 1), k)


def sharded_knn(x, k: int, mesh, axes, precision: str, tile_size: int | None,
                approx_recall: float | None):
  """(similarities, indices) `[N, k]` of `x` with rows sharded over `axes` of `mesh`."""
  n = x.shape[0]
  shards = _mesh.shard_count(mesh, axes)
  tile, _ = tile_layout(-(-n // shards), 1, tile_size)
  padded = _mesh.padded_rows(n, shards, tile)
  x = jax.lax.with_sharding_constraint(_mesh.pad_rows(x, padded), _mesh.rows_sharding(mesh, axes))
  spec = _mesh.row_spec(axes)
  ring = jax.shard_map(
      functools.partial(ring_knn, k=k, axes=axes, shards=shards, n_valid=n,
                        precision=precision, tile=tile, approx_recall=approx_recall),
      mesh=mesh, in_specs=spec, out_specs=(spec, spec), check_vma=False)
  values, index = ring(x)
  return values[:n], index[:n]


@functools.partial(jax.jit, static_argnames=("k", "precision", "method", "tile_size", "mesh",
                                             "axes", "approx_recall"))
def knn_with_similarities(x, k: int, precision: str = "highest", method: str = "auto",
                          tile_size: int | None = None, mesh=None, axes=None,
                          approx_recall: float | None = None):
  """Unchecked kernel: (similarities [N, k] float32, indices [N, k] int32).

  `mesh` (with row axes `axes`) selects the device ring; otherwise `method`
  picks the symmetric tiled path or the dense one.
  """
  if mesh is not None:
    values, index = sharded_knn(x, k, mesh, axes, precision, tile_size, approx_recall)
  elif method == "dense":
    values, index = self_knn_dense(x, k, precision)
  else:
    values, index = self_knn_tiled(x, k, precision, tile_size, approx_recall)
  return values.astype(jnp.float32), index.astype(jnp.int32)


def check_knn_args(x: ArrayLike, k, precision: str, method: str = "auto", *, name: str = "x",
                   min_k: int = 1, mesh=None, axis_name=None, approx_recall=None):
  """Validates kNN arguments; returns (x, k, mesh row axes or None)."""
  x = _validation.features(x, name)
  k = _validation.neighbour_count(k, x.shape[0], minimum=min_k)
  _validation.choice(precision, PRECISIONS, "precision")
  _validation.choice(method, METHODS, "method")
  if approx_recall is not None and not 0.0 < approx_recall <= 1.0:
    raise ValueError(f"`approx_recall` must be in (0, 1] or None, got {approx_recall!r}.")
  if mesh is None:
    return x, k, None
  if method == "dense":
    raise ValueError("`method='dense'` cannot be sharded; use 'auto' or 'tiled' with `mesh`.")
  return x, k, _mesh.row_axes(mesh, axis_name)


def knn(
    x: Float[ArrayLike, "n d"],
    k: int = 10,
    *,
    precision: str = "highest",
    method: str = "auto",
    tile_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    approx_recall: float | None = None,
) -> Int[Array, "n k"]:
  """Indices of the k most similar other rows of `x` (inner product).

  Row i lists the k indices j != i with the largest `x[i] @ x[j]`, by
  descending similarity; ties go to the lower index. Every `method`, tile size
  and device count returns the same indices (given the same similarity values).

  Args:
    x: features `[N, D]`.
    k: neighbours per row, 1 <= k <= N - 1 (static).
    precision: 'highest' (float32), 'default' (TF32 on recent NVIDIA GPUs,
      float32 on CPU) or 'bfloat16' (bf16 inputs, float32 accumulation). Recall
      against 'highest' is measured in BUILD_NOTES.md.
    method: 'tiled' (default via 'auto'): symmetric blockwise Gram with a
      running top-k, O(N k + tile^2) memory; 'dense': the full N x N matrix.
    tile_size: rows per tile (default 2048 on CPU, 4096 elsewhere).
    mesh: shard rows over this `jax.sharding.Mesh` and run the device ring
      (`ring_knn`). N need not divide the device count (rows are padded).
    axis_name: mesh axis (or axes) the rows are split over; default all.
    approx_recall: use `lax.approx_max_k` with this recall target for the
      per-tile selection (meant for TPU; exact elsewhere). Off by default.

  Returns:
    int32 `[N, k]` (row-sharded over `mesh` when one is given and P divides N).

  Cost: 'tiled' does about half the N^2 D multiply-adds of a Gram matrix
  ((T+1)/(2T) of them for T tiles) plus O(N^2 / g) selection work; memory
  O(N D + N k + tile^2). With a mesh of P devices each does N^2 D / P
  multiply-adds (the ring does not use the symmetry) and holds O(N (D + k) / P
  + tile^2). 'dense' does N^2 D and holds N^2 floats.
  """
  x, k, axes = check_knn_args(x, k, precision, method, mesh=mesh, axis_name=axis_name,
                              approx_recall=approx_recall)
  _validation.reject_constant(x, "x")
  return knn_with_similarities(x, k, precision, method, tile_size, mesh, axes, approx_recall)[1]
