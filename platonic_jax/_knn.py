"""Exact k-nearest-neighbour search under the inner product.

Every path returns the same neighbours: for row i, the k indices j != i with
the largest x_i . x_j, ordered by descending similarity, ties broken by the
lower index. The tiled path never holds more than one `[tile, tile]` block of
the Gram matrix, which is what lets N go far past N x N memory.

Two facts make the tiled path fast and exact:

* Group pre-selection. A row of a tile is cut into groups of g consecutive
  columns. The top k of the row lie inside the k groups with the largest
  maxima (ranked by (max desc, group asc)): any element outside them is
  outranked by k group maxima. So selection touches c/g + k*g values instead
  of c, and the final stable `top_k` over candidates kept in ascending index
  order gives the lower-index tie-break.
* Symmetry. The self-similarity Gram is symmetric, so the tile (i, j), i <= j,
  serves row block i (as is) and row block j (transposed). Tiles are visited
  column-major (j outer, i inner); then every row block receives its column
  blocks in ascending order, and merging a new block's candidates *after* the
  running list in a stable `top_k` keeps the tie-break exact.
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


def block_top_k(
    s: Float[Array, "r c"], k: int, column_offset, approx_recall: float | None = None
) -> tuple[Float[Array, "r k"], Int[Array, "r k"]]:
  """Top k of each row of a similarity block, ties to the lower column.

  Returns values sorted descending and global column indices
  (`column_offset + local column`). Cost: O(r * (c/g + k*g)) selection work with
  g = `_group_size(c, k)`, plus one O(r*c) max-reduction. With `approx_recall`
  the selection is `lax.approx_max_k` at that recall target (approximate on
  TPU; XLA computes it exactly on CPU and GPU).
  """
  r, c = s.shape
  if approx_recall is not None:
    values, cols = lax.approx_max_k(s, k, recall_target=approx_recall)
    return values, cols.astype(jnp.int32) + column_offset
  if c < k:  # narrow block (many shards, k near N): -inf columns never survive the merges
    s = jnp.pad(s, ((0, 0), (0, k - c)), constant_values=_NEG_INF)
    c = k
  g = _group_size(c, k)
  if g == 1:
    values, cols = lax.top_k(s, k)
    return values, cols + column_offset
  grouped = s.reshape(r, c // g, g)
  _, groups = lax.top_k(grouped.max(axis=-1), k)
  groups = jnp.sort(groups, axis=-1)
  candidates = jnp.take_along_axis(grouped, groups[:, :, None], axis=1).reshape(r, k * g)
  candidate_cols = (groups[:, :, None] * g + jnp.arange(g, dtype=groups.dtype)).reshape(r, k * g)
  values, pos = lax.top_k(candidates, k)
  return values, jnp.take_along_axis(candidate_cols, pos, axis=1) + column_offset


def merge_ascending(run_values, run_index, new_values, new_index, k: int):
  """Merges a block whose indices all exceed those already in the running list."""
  values, pos = lax.top_k(jnp.concatenate([run_values, new_values], axis=-1), k)
  index = jnp.take_along_axis(jnp.concatenate([run_index, new_index], axis=-1), pos, axis=-1)
  return values, index


def merge_any(run_values, run_index, new_values, new_index, k: int):
  """Merges two top-k lists with no order between their indices.

  A lexicographic sort on (-value, index) of 2k entries per row: used where
  blocks arrive out of index order (the device ring).
  """
  values = jnp.concatenate([run_values, new_values], axis=-1)
  index = jnp.concatenate([run_index, new_index], axis=-1)
  neg, index = lax.sort((-values, index), dimension=values.ndim - 1, num_keys=2)
  return -neg[..., :k], index[..., :k]


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
      cv, ci = block_top_k(s.T, k, i * tile, approx_recall)
      nv, ni = merge_ascending(v[j], ix[j], cv, ci, k)
      return v.at[j].set(nv), ix.at[j].set(ni)

    values, index = lax.cond(i == j, lambda vi: vi, transposed_update, (values, index))
    rv, ri = block_top_k(s, k, j * tile, approx_recall)
    nv, ni = merge_ascending(values[i], index[i], rv, ri, k)
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
      return merge_ascending(*state, v, i, k), None

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
  overlap. Blocks arrive out of index order, so merges use `merge_any`.
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
    return (merge_any(*state, *against(db, s), k), incoming), None

  init = (jnp.full((n_local, k), _NEG_INF, jnp.float32), jnp.full((n_local, k), -1, jnp.int32))
  (state, last), _ = lax.scan(step, (init, blocks), jnp.arange(shards - 1))
  return merge_any(*state, *against(last, shards - 1), k)


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
