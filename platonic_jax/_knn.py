"""Exact k-nearest-neighbour search under the inner product.

Every path returns the same neighbours: for row i, the k indices j != i with
the largest x_i . x_j, ordered by descending similarity, ties broken by the
lower index. The tiled path never holds more than one `[tile, tile]` block of
the Gram matrix, which is what lets N go far past N x N memory.

Three facts make the tiled path fast and exact:

* Group lists. Columns fall into groups of g consecutive indices. Each row
  keeps its k best groups, ranked by (maximum desc, group asc), with their g
  similarities: its top k lie inside them, since any other element is
  outranked by k group maxima. A tile then costs one max-reduction into
  groups and a selection among tile/g maxima per row; elements are selected
  once, at the end, among k g members.
* Symmetry. The self-similarity Gram is symmetric, so the tile (i, j), i < j,
  serves row block i (its rows) and row block j (its columns, read in place),
  on one device and around the device ring alike.
* Order-free selection. Every selection and merge ranks candidates by
  (value desc, index asc) explicitly (`select_top_k`), so blocks may arrive in
  any order (symmetric tiles, the device ring) and the tie-break stays exact.

Up to 2048 rows, where a scan over a few tiles costs more in dispatch than in
arithmetic, the same groups and symmetry serve one assembled selection
(`self_knn_assembled`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int

from platonic_jax import _mesh, _pallas_knn, _tiles, _validation

PRECISIONS = ("highest", "default", "bfloat16")
METHODS = ("auto", "tiled", "dense", "pallas")
_NEG_INF = -jnp.inf


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


_MAX_MEMBERS = 256  # bound on k * g: the member lists hold O(N k g) floats


def list_group_size(tile: int, k: int) -> int:
  """Columns per group in the group lists: 16, fewer when k is large or the tile narrow.

  16 measured fastest on CPU at tile 2048 (32 and 64 are slower); the tile
  must hold at least k groups, and k * g stays under `_MAX_MEMBERS`.
  """
  g = 16
  while g > 1 and (tile % g or tile // g < k or k * g > _MAX_MEMBERS):
    g //= 2
  return g


_EXTRACTION_MAX_K = 16  # up to here k max-extractions beat a sort's per-row cost on CPU
_NO_INDEX = jnp.iinfo(jnp.int32).max


def select_top_k(values: Float[Array, "r c"], index: Int[Array, "r c"], k: int):
  """The k best of each row's candidates by (value desc, index asc), in that order.

  Candidates may come in any order and from any blocks (indices distinct
  within a row, except that sentinel entries of value -inf may repeat). For
  small k this is k vectorised max-extractions, O(r c k), unrolled so that
  XLA fuses each removal into the next extraction; otherwise one
  lexicographic sort, O(r c log c).
  """
  if k > _EXTRACTION_MAX_K:
    neg, index = lax.sort((-values, index), dimension=1, num_keys=2)
    return -neg[:, :k], index[:, :k]
  best_values, best_index = [], []
  for _ in range(k):
    top = values.max(axis=1, keepdims=True)
    chosen = jnp.min(jnp.where(values == top, index, _NO_INDEX), axis=1, keepdims=True)
    taken = index == chosen
    values, index = jnp.where(taken, _NEG_INF, values), jnp.where(taken, _NO_INDEX, index)
    best_values.append(top)
    best_index.append(chosen)
  return jnp.concatenate(best_values, axis=1), jnp.concatenate(best_index, axis=1)


def select_top_k_by_position(values: Float[Array, "r c"], k: int, axis: int = 1):
  """`select_top_k` with each candidate's index its position: no index array to carry.

  Selects along `axis` (1: candidates in columns, each row's `[r, k]` out;
  0: candidates in rows, the `[k, c]` best of each column, which spares a
  transposed copy of the candidates). k unrolled extractions of two fused
  passes each (removal of the previous choice with the max; first position
  at the max), O(r c k); a lexicographic sort for k > 16. Once only -inf
  candidates remain, the extractions may pick a position again (like the
  sentinels of `select_top_k`): callers give such picks no weight.

  The first position at the max is found as the max of the negated positions
  in float32 (exact below 2^24): a float max reduces in one pass on CPU,
  where an integer min was split into two (1.03-1.05x faster searches at
  N = 1024-16384). A NaN max matches no candidate and gives position
  int32 max, as `select_top_k` gives `_NO_INDEX`; the positions are masked
  with the values' NaN test as well, which keeps every extraction's maximum
  an operand of the result. Without that, when a caller drops the values
  (`knn`, the final selection of a search), XLA:CPU fused each maximum with
  its broadcast and wrote an `[r, c]` array per extraction: the final
  selection of a 16384-row search took 29.8 rather than 19.3 ms.
  """
  if values.shape[axis] > 2**24:
    raise ValueError(f"At most 2^24 candidates per selection, got {values.shape[axis]}.")
  position = lax.broadcasted_iota(jnp.int32, values.shape, axis)
  if k > _EXTRACTION_MAX_K:
    if axis == 0:
      return tuple(a.T for a in select_top_k(values.T, position.T, k))
    return select_top_k(values, position, k)
  negated_position = -position.astype(jnp.float32)
  best_values, best_negated = [], []
  for _ in range(k):
    top = values.max(axis=axis, keepdims=True)
    chosen = jnp.max(jnp.where(values == top, negated_position, _NEG_INF), axis=axis,
                     keepdims=True)
    values = jnp.where(negated_position == chosen, _NEG_INF, values)
    best_values.append(top)
    best_negated.append(chosen)
  # Float to int conversion saturates: -(-inf), no candidate at a NaN max, is int32 max.
  index = (-jnp.concatenate(best_negated, axis=axis)).astype(jnp.int32)
  values = jnp.concatenate(best_values, axis=axis)
  return values, jnp.where(jnp.isnan(values), _NO_INDEX, index)


def merge(run_values, run_index, new_values, new_index, k: int):
  """Merges two top-k lists (any index order) into the top k by (value desc, index asc)."""
  return select_top_k(jnp.concatenate([run_values, new_values], axis=-1),
                      jnp.concatenate([run_index, new_index], axis=-1), k)


# Group lists. Columns fall into groups of g consecutive global indices (group
# id = column // g). For every row we keep the k best groups seen so far,
# ranked by (group maximum desc, group id asc), with the g similarities of each
# (`GroupLists` = (maxima [r, k], ids [r, k], members [r, k, g]), always in
# that order). The row's top k lie inside its k best groups: an element of any
# other group is outranked by the maxima of k better groups (a tied maximum
# sits in a group of lower indices). So each tile costs one max-reduction into
# groups and a selection among tile/g group maxima per row, two ordered lists
# merge by ranks, and elements are selected once, at the end, among k g
# members. Negative ids are sentinels (all members -inf).

def empty_group_lists(rows: int, k: int, g: int):
  """Group lists `[rows]` holding only sentinels (ids -k..-1: in list order)."""
  return (jnp.full((rows, k), _NEG_INF, jnp.float32),
          jnp.broadcast_to(jnp.arange(-k, 0, dtype=jnp.int32), (rows, k)),
          jnp.full((rows, k, g), _NEG_INF, jnp.float32))


def _take(values, index, axis: int):
  """`jnp.take_along_axis` for indices in range by construction: no bounds or
  negative-index logic in the (fused, per-element) gather loop."""
  return jnp.take_along_axis(values, index, axis=axis, mode="promise_in_bounds")


def merge_group_lists(a, b, k: int):
  """The k best groups of two group lists, each in list order, with their members.

  A stable merge by ranks: entry i of `a` lands at i + #{entries of `b`
  strictly better}, entry j of `b` at j + #{entries of `a` at least as good},
  a permutation of the 2k places (equal sentinel entries included), so the
  first k places are the k best in list order. O(r k^2) comparisons and one
  gather of the k chosen groups' members, without a selection loop.
  """
  (va, ia, ma), (vb, ib, mb) = a, b
  ka, kb = va.shape[1], vb.shape[1]
  b_better = (vb[:, None, :] > va[:, :, None]) | (
      (vb[:, None, :] == va[:, :, None]) & (ib[:, None, :] < ia[:, :, None]))  # [r, ka, kb]
  rank = jnp.concatenate([jnp.arange(ka, dtype=jnp.int32) + b_better.sum(2, dtype=jnp.int32),
                          jnp.arange(kb, dtype=jnp.int32) + (~b_better).sum(1, dtype=jnp.int32)],
                         axis=1)
  place = jnp.arange(k, dtype=jnp.int32)
  source = jnp.sum(jnp.where(rank[:, :, None] == place, jnp.arange(ka + kb, dtype=jnp.int32)[:, None],
                             0), axis=1)  # [r, k]: which entry lands at each of the first k places
  values, ids = jnp.concatenate([va, vb], axis=1), jnp.concatenate([ia, ib], axis=1)
  members = jnp.concatenate([ma, mb], axis=1)
  return (_take(values, source, axis=1), _take(ids, source, axis=1),
          _take(members, source[:, :, None], axis=1))


def fold_groups(lists, maxima, members_of, first_group, k: int,
                approx_recall: float | None = None, groups_axis: int = 1):
  """Folds one tile side into `lists`: row r's columns in G groups of g.

  `maxima` holds each group's maximum, `[r, G]` (`groups_axis=1`) or
  `[G, r]` (`groups_axis=0`: the column side, selected in that layout rather
  than through a transposed copy); `members_of(chosen)` gathers the
  `[r, k, g]` similarities of the chosen local groups `[r, k]`.
  `first_group` is the global id of group 0. Cost: O(r G k) for the
  selection (`lax.approx_max_k` with `approx_recall`) plus O(r k g).
  """
  # NaN maxima become -inf (a non-finite input is reported by the callers'
  # `finite` flag). The select also keeps the maxima a materialised array:
  # without it XLA rewrites the first extraction's max of the group maxima as
  # a second max-reduction over the whole [r, c] tile.
  maxima = jnp.where(maxima == maxima, maxima, _NEG_INF)
  if approx_recall is None:
    top, chosen = select_top_k_by_position(maxima, k, axis=groups_axis)
    if groups_axis == 0:
      top, chosen = top.T, chosen.T
  else:
    maxima = maxima.T if groups_axis == 0 else maxima
    top, chosen = lax.approx_max_k(maxima, k, recall_target=approx_recall)
    top, chosen = select_top_k(top, chosen.astype(jnp.int32), k)  # into list order
  return merge_group_lists(lists, (top, chosen + first_group, members_of(chosen)), k)


def finish_group_lists(lists, k: int):
  """(similarities, indices) `[r, k]`: the top k among each row's k g members.

  The groups are first put in id order (a stable rank, O(r k^2)), so that a
  member's position in the row is in the order of its global index and the
  selection needs no index array (`select_top_k_by_position`).
  """
  _, ids, members = lists
  rows, groups, g = members.shape
  slot = jnp.arange(groups, dtype=jnp.int32)
  before = (ids[:, None, :] < ids[:, :, None]) | (
      (ids[:, None, :] == ids[:, :, None]) & (slot[None, :] < slot[:, None]))  # [r, p, q]: q before p
  rank = before.sum(axis=2, dtype=jnp.int32)
  source = jnp.sum(jnp.where(rank[:, :, None] == slot, slot[:, None], 0), axis=1)  # slot -> entry
  ids, members = _take(ids, source, axis=1), _take(members, source[:, :, None], axis=1)
  values, position = select_top_k_by_position(members.reshape(rows, -1), k)
  return values, _take(ids, position // g, axis=1) * g + position % g


def masked_tile(q, db, row0, col0, n_valid: int, precision: str):
  """`q @ db.T` (float32) of rows from `row0` and columns from `col0`, the diagonal
  and padding (index >= n_valid) set to -inf; the mask pass runs only on tiles that
  hold either."""
  s = similarity(q, db, precision).astype(jnp.float32)
  r, c = s.shape

  def mask(s):
    row = row0 + jnp.arange(r, dtype=jnp.int32)
    col = col0 + jnp.arange(c, dtype=jnp.int32)
    valid = (row[:, None] < n_valid) & (col[None, :] < n_valid) & (row[:, None] != col[None, :])
    return jnp.where(valid, s, _NEG_INF)

  overlaps = (row0 < col0 + c) & (col0 < row0 + r)
  return lax.cond(overlaps | (row0 + r > n_valid) | (col0 + c > n_valid), mask, lambda s: s, s)


def fold_tile(row_lists, col_lists, s, row0, col0, g: int, k: int, approx_recall, *,
              column_start: int = 0):
  """Folds the tile `s` [r, c] into its rows' lists and its columns' lists.

  `row0`, `col0`: global indices of the tile's first row and column (multiples of g).
  The column side (skipped when `col_lists` is None) covers the columns from
  `column_start` on (a multiple of g), and reads `s` in groups of g rows
  without a transposed copy.
  """
  r, c = s.shape
  by_rows = s.reshape(r, c // g, g)
  by_columns = s.reshape(r // g, g, c)  # column c's groups, read in place (no transposed copy)

  def column_members(chosen):  # [c - column_start, k] local groups
    chosen = jnp.pad(chosen, ((column_start, 0), (0, 0))) if column_start else chosen
    return _take(by_columns, chosen.T[:, None, :], axis=0).transpose(2, 0, 1)[column_start:]

  if col_lists is not None:
    # The maxima of all c columns, then the slice: slicing the tile first would copy it.
    col_lists = fold_groups(col_lists, by_columns.max(axis=1)[:, column_start:], column_members,
                            row0 // g, k, approx_recall, groups_axis=0)
  members = lambda chosen: _take(by_rows, chosen[:, :, None], axis=1)
  row_lists = fold_groups(row_lists, by_rows.max(axis=2), members, col0 // g, k, approx_recall)
  return row_lists, col_lists


def _block(lists, i):
  return tuple(lax.dynamic_index_in_dim(a, i, keepdims=False) for a in lists)


def _set_block(lists, i, new):
  return tuple(lax.dynamic_update_index_in_dim(a, b, i, 0) for a, b in zip(lists, new))


def diagonal_step_rows() -> int:
  """Rows per step of `fold_diagonal`'s staircase.

  512 on CPU: at 2048-row tiles, steps of 512 folded a diagonal tile 1.10x
  faster (D = 1024) than halving it recursively down to 512 rows, steps of
  256 0.81x. 1024 elsewhere (unmeasured: smaller GEMMs underuse an
  accelerator).
  """
  return 512 if jax.default_backend() == "cpu" else 1024


def fold_diagonal(lists, block, row0, n_valid: int, k: int, precision: str, approx_recall):
  """Folds the diagonal tile of `block` `[t, D]` (rows from `row0`) into its lists `[t, ...]`.

  The tile is symmetric, so it runs as a staircase of steps of h =
  `diagonal_step_rows()` rows (the last takes the remainder too; h must hold
  k groups): step i multiplies its rows by the block's rows from i h on, one
  `[h, t - i h]` GEMM that serves step i's rows and, right of its own square,
  the rows of the later steps as columns. (t + h) / (2t) of the tile's GEMM
  work where h divides t: 5/8 for four steps (halving recursively down to the
  same h did 11/16).
  """
  t = block.shape[0]
  g = lists[2].shape[-1]
  h = diagonal_step_rows()
  if not (t >= 2 * h and h % g == 0 and h // g >= k):
    s = masked_tile(block, block, row0, row0, n_valid, precision)
    return fold_tile(lists, None, s, row0, row0, g, k, approx_recall)[0]
  last = (t // h - 1) * h  # the last step takes the remainder rows too
  done, rest = [], lists
  for first in range(0, last, h):
    s = masked_tile(block[first:first + h], block[first:], row0 + first, row0 + first, n_valid,
                    precision)
    step, rest = fold_tile(tuple(a[:h] for a in rest), tuple(a[h:] for a in rest), s,
                           row0 + first, row0 + first, g, k, approx_recall, column_start=h)
    done.append(step)
  s = masked_tile(block[last:], block[last:], row0 + last, row0 + last, n_valid, precision)
  done.append(fold_tile(rest, None, s, row0 + last, row0 + last, g, k, approx_recall)[0])
  return tuple(jnp.concatenate(parts) for parts in zip(*done))


def symmetric_pass(blocks, offset, n_valid: int, k: int, g: int, precision: str, approx_recall):
  """The group lists `[T, tile, ...]` (groups of g) of one block's rows (`blocks`
  [T, tile, D], global rows from `offset`) over the block's own columns, each
  unordered pair of row tiles computed once: tile (i, j), i < j, serves tile i
  through its rows and tile j through its columns.

  Column by column: tile j is sliced once, its column-side lists are carried
  through the tiles (i, j), i < j, and become tile j's lists (its rows meet
  the tiles (j, j'), j' > j, only in later steps), and its diagonal tile
  follows (`fold_diagonal`). Each step updates one tile's lists in place and
  reads no other (a second update of the list array in a step made XLA copy
  the whole array); no separate column-side array, no copy of tile j per pair.
  """
  num, tile, _ = blocks.shape
  lists = _as_tiles(empty_group_lists(num * tile, k, g), num)

  def column_block_step(lists, j):
    column_block, col0 = blocks[j], offset + j * tile

    def tile_step(i, carry):
      lists, column_side = carry
      s = masked_tile(blocks[i], column_block, offset + i * tile, col0, n_valid, precision)
      rows, column_side = fold_tile(_block(lists, i), column_side, s, offset + i * tile, col0, g,
                                    k, approx_recall)
      return _set_block(lists, i, rows), column_side

    lists, column_side = lax.fori_loop(0, j, tile_step, (lists, empty_group_lists(tile, k, g)))
    own = fold_diagonal(column_side, column_block, col0, n_valid, k, precision, approx_recall)
    return _set_block(lists, j, own), None

  lists, _ = lax.scan(column_block_step, lists, jnp.arange(num))
  return lists


def cross_pass(q_lists, db_lists, q_blocks, db_blocks, q_offset, db_offset, n_valid: int, k: int,
               precision: str, approx_recall, *, columns: bool):
  """Folds every tile of two distinct blocks into the query rows' lists and (where
  `columns`) into the database rows' lists: one GEMM serves both sides."""
  tile = q_blocks.shape[1]
  g = q_lists[2].shape[-1]
  num = q_blocks.shape[0]
  rows_of_pairs = np.repeat(np.arange(num, dtype=np.int32), num)
  cols_of_pairs = np.tile(np.arange(num, dtype=np.int32), num)

  def step(state, pair):
    q_lists, db_lists = state
    i, j = pair
    s = masked_tile(q_blocks[i], db_blocks[j], q_offset + i * tile, db_offset + j * tile,
                    n_valid, precision)
    rows, cols = fold_tile(_block(q_lists, i), _block(db_lists, j) if columns else None, s,
                           q_offset + i * tile, db_offset + j * tile, g, k, approx_recall)
    if columns:
      db_lists = _set_block(db_lists, j, cols)
    return (_set_block(q_lists, i, rows), db_lists), None

  (q_lists, db_lists), _ = lax.scan(step, (q_lists, db_lists),
                                    (jnp.asarray(rows_of_pairs), jnp.asarray(cols_of_pairs)))
  return q_lists, db_lists


def self_knn_dense(x: jax.Array, k: int, precision: str = "highest"):
  """Full N x N similarity, diagonal masked, `top_k` per row. O(N^2 D) time, O(N^2) memory."""
  x = cast_for_precision(x, precision)
  s = similarity(x, x, precision)
  n = s.shape[0]
  s = jnp.where(jnp.eye(n, dtype=bool), _NEG_INF, s)
  return lax.top_k(s, k)


# Measured on the 2-core CPU (BUILD_NOTES "kNN on CPU"): up to 2048 rows the
# assembled Gram beats the tiled pass (1.27x at N = 2048, D = 1024), at 4096 it
# does not; 256-row blocks beat 128 and 512 at N = 1024.
_ASSEMBLED_MAX_ROWS = 2048
_ASSEMBLED_BLOCK = 256
_ASSEMBLED_MAX_BLOCKS = 8


def self_knn_assembled(x: jax.Array, k: int, precision: str = "highest"):
  """Self-kNN of a small N: the whole Gram from its upper blocks, one selection per row.

  Rows are padded to T <= 8 blocks of b <= 256 rows (a multiple of 16).
  Only the T (T + 1) / 2 blocks (i, j), i <= j, are multiplied (the diagonal
  and the padding masked). Each block gives the group maxima of its rows and,
  read down its columns in place, those of block j's rows; the `[N, N / g]`
  maxima are assembled, each row selects its k best groups once over all
  columns, gathers their members from the blocks (row-wise above the
  diagonal, column-wise below), and `finish_group_lists` selects the k best
  members. No running lists to merge and no transposed copies: few enough
  compiled operations that their dispatch does not dominate at this size.

  Cost: (T + 1) / (2T) of the N^2 D multiply-adds of a Gram, O(N^2) for the
  group maxima, O(N^2 k / g) for the selection; O(N^2 / 2 + N D) memory,
  hence only up to `_ASSEMBLED_MAX_ROWS`.
  """
  n, d = x.shape
  num_blocks = min(-(-n // _ASSEMBLED_BLOCK), _ASSEMBLED_MAX_BLOCKS)
  block = -(-n // (num_blocks * _tiles.ALIGNMENT)) * _tiles.ALIGNMENT
  padded = num_blocks * block
  g = list_group_size(padded, k)
  xs = jnp.pad(cast_for_precision(x, precision), ((0, padded - n), (0, 0)))
  xs = [xs[i * block:(i + 1) * block] for i in range(num_blocks)]
  per_block = block // g
  tiles, maxima = [], [[None] * num_blocks for _ in range(num_blocks)]
  tile_of = np.zeros((num_blocks, num_blocks), np.int32)
  for i in range(num_blocks):
    for j in range(i, num_blocks):
      s = masked_tile(xs[i], xs[j], i * block, j * block, n, precision)
      tile_of[i, j] = tile_of[j, i] = len(tiles)
      tiles.append(s)
      maxima[i][j] = s.reshape(block, per_block, g).max(axis=2)
      if j > i:  # block j's rows see block i's groups down the columns, read in place
        maxima[j][i] = s.reshape(per_block, g, block).max(axis=1).T
  maxima = jnp.concatenate([jnp.concatenate(row, axis=1) for row in maxima], axis=0)
  top, chosen = select_top_k_by_position(jnp.where(maxima == maxima, maxima, _NEG_INF), k)
  # Member m of group `chosen` of row r: in tile (I, J) at [r, column] when the
  # group's block J >= r's block I, else down the column of tile (J, I).
  row = jnp.arange(padded, dtype=jnp.int32)[:, None, None]
  row_block, group_block = row // block, (chosen // per_block)[:, :, None]
  column = (chosen % per_block)[:, :, None] * g + jnp.arange(g, dtype=jnp.int32)
  upper = group_block >= row_block
  tile = jnp.asarray(tile_of)[row_block, group_block]
  members = jnp.stack(tiles).at[tile, jnp.where(upper, row % block, column),
                                jnp.where(upper, column, row % block)].get(
                                    mode="promise_in_bounds")
  # Rows with fewer than k finite groups (small N, padding) fill up with -inf
  # picks, which may repeat a group: such a pick must hold no member.
  lists = (top, chosen, jnp.where(top[:, :, None] > _NEG_INF, members, _NEG_INF))
  values, index = finish_group_lists(lists, k)
  return values[:n], index[:n]


def self_tile_size(n: int, tile_size: int | None) -> int:
  """Rows per tile of the single-device pass: `tile_size`, or the default capped so that
  a small N still spans several tiles (the symmetry saves (T-1)/(2T) of the GEMM work:
  nothing for one tile) without tiles under 512 rows (slow GEMMs), except that N <= 1024
  always gets two."""
  if tile_size:
    return tile_size
  return min(_tiles.default_tile_size(), max(min(512, -(-n // 2)), -(-n // 4)))


def _as_tiles(lists, num_tiles: int):
  return tuple(a.reshape((num_tiles, -1) + a.shape[1:]) for a in lists)


def _as_rows(lists):
  return tuple(a.reshape((-1,) + a.shape[2:]) for a in lists)


def self_knn_tiled(x: jax.Array, k: int, precision: str = "highest", tile_size: int | None = None,
                   approx_recall: float | None = None):
  """Symmetric tiled self-kNN on one device.

  Cost: (T+1)/(2T) of the N^2 D multiply-adds of a full Gram (T = ceil(N/tile)
  tiles per side); per tile two max-reductions into groups and O(tile^2 k / g)
  group selection; O(N k g + tile^2 + N D) memory (g = `list_group_size`).
  """
  n, d = x.shape
  tile, num_tiles = _tiles.tile_layout(n, self_tile_size(n, tile_size), min_rows=k + 1)
  padded = num_tiles * tile
  blocks = jnp.pad(cast_for_precision(x, precision), ((0, padded - n), (0, 0)))
  blocks = blocks.reshape(num_tiles, tile, d)
  lists = symmetric_pass(blocks, 0, n, k, list_group_size(tile, k), precision, approx_recall)
  values, index = finish_group_lists(_as_rows(lists), k)
  return values[:n], index[:n]


def ring_knn(x_local, k: int, *, axes, shards: int, n_valid: int, precision: str, tile: int,
             approx_recall: float | None = None):
  """Self-kNN of row-sharded features, inside `shard_map`, at half the GEMM work.

  Each device first pairs its block with itself (`symmetric_pass`). Then
  blocks travel around the ring (`lax.ppermute`, device j sends to j - 1)
  carrying their own group lists: at step s device `me` holds block
  (me + s) mod P, and one GEMM per tile pair serves both its own rows and the
  visitor's. After floor(P/2) steps every unordered block pair has been met
  once (for even P the last step pairs the two halves twice, so it serves only
  the holder's rows), and one `ppermute` returns each travelling list to its
  owner. Group lists merge in any order, so the results equal the single-device
  ones. Per device: about N^2 D / (2P) multiply-adds (exactly (P/2 + 1) N^2 D
  / P^2 for even P), O(N (D + k g) / P + tile^2) memory.
  """
  me = lax.axis_index(axes)
  n_local, d = x_local.shape
  blocks = cast_for_precision(x_local, precision).reshape(-1, tile, d)
  num_tiles = blocks.shape[0]
  g = list_group_size(tile, k)
  own = symmetric_pass(blocks, me * n_local, n_valid, k, g, precision, approx_recall)
  shift = [(j, (j - 1) % shards) for j in range(shards)]

  def visit(carry, s, columns):
    own, (db, db_lists) = carry
    db, db_lists = lax.ppermute((db, db_lists), axes, shift)
    own, db_lists = cross_pass(own, db_lists, blocks, db, me * n_local,
                               ((me + s) % shards) * n_local, n_valid, k, precision,
                               approx_recall, columns=columns)
    return own, (db, db_lists)

  visits = shards // 2
  carry = (own, (blocks, _as_tiles(empty_group_lists(n_local, k, g), num_tiles)))
  both_sides = visits - 1 if shards % 2 == 0 else visits
  carry, _ = lax.scan(lambda c, s: (visit(c, s, True), None), carry,
                      jnp.arange(1, both_sides + 1))
  if both_sides < visits:
    carry = visit(carry, visits, False)
  own, (_, visitor_lists) = carry
  if both_sides:
    home = [(j, (j + visits) % shards) for j in range(shards)]
    returned = lax.ppermute(visitor_lists, axes, home)
    own = merge_group_lists(_as_rows(own), _as_rows(returned), k)
  else:
    own = _as_rows(own)
  return finish_group_lists(own, k)


def sharded_knn(x, k: int, mesh, axes, precision: str, tile_size: int | None,
                approx_recall: float | None):
  """(similarities, indices) `[N, k]` of `x` with rows sharded over `axes` of `mesh`."""
  n = x.shape[0]
  shards = _mesh.shard_count(mesh, axes)
  # Ring tiles hold k + 1 rows too, so a tile always has k groups to select from.
  tile, _ = _tiles.tile_layout(max(-(-n // shards), k + 1), tile_size, min_rows=k + 1)
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
  picks the symmetric tiled path or the dense one. 'auto' without a
  `tile_size` or `approx_recall` assembles the Gram of N <= 2048 rows from its
  upper blocks (`self_knn_assembled`) and tiles larger ones.
  """
  if mesh is not None:
    values, index = sharded_knn(x, k, mesh, axes, precision, tile_size, approx_recall)
  elif method == "dense":
    values, index = self_knn_dense(x, k, precision)
  elif method == "pallas":
    values, index = _pallas_knn.self_knn_pallas(x, k, precision)
  elif (method == "auto" and tile_size is None and approx_recall is None
        and x.shape[0] <= _ASSEMBLED_MAX_ROWS):  # few tiles: the scan's overheads dominate
    values, index = self_knn_assembled(x, k, precision)
  else:
    values, index = self_knn_tiled(x, k, precision, tile_size, approx_recall)
  return values.astype(jnp.float32), index.astype(jnp.int32)


def check_knn_args(x: ArrayLike, k, precision: str, method: str = "auto", *, name: str = "x",
                   min_k: int = 1, tile_size=None, mesh=None, approx_recall=None,
                   check_finite: bool = True):
  """Validates kNN arguments; returns (x as a float array, k).

  `check_finite=False` skips the NaN/Inf pass for features already checked
  (`_validation.feature_pair`).
  """
  x = _validation.features(x, name, check_finite=check_finite)
  k = _validation.neighbour_count(k, x.shape[0], minimum=min_k)
  _validation.choice(precision, PRECISIONS, "precision")
  _validation.choice(method, METHODS, "method")
  _validation.tile_size(tile_size)
  if approx_recall is not None and not 0.0 < approx_recall <= 1.0:
    raise ValueError(f"`approx_recall` must be in (0, 1] or None, got {approx_recall!r}.")
  if mesh is not None and method in ("dense", "pallas"):
    raise ValueError(f"`method={method!r}` cannot be sharded; use 'auto' or 'tiled' with `mesh`.")
  return x, k


class Neighbours(NamedTuple):
  """One representation's kNN, computed once and shared by every metric built on it.

  Attributes:
    index: int32 `[N, k]` neighbour indices (descending similarity, ties to the
      lower index); -1 everywhere when traced features hold NaN/Inf.
    similarity: float32 `[N, k]`, `x[i] . x[index[i, p]]`.
    constant: bool scalar, the features are constant over samples (every
      neighbour is a tie-break).
    finite: bool scalar, the features hold no NaN/Inf (scores built on a
      non-finite representation must be NaN).
  """
  index: Int[Array, "n k"]
  similarity: Float[Array, "n k"]
  constant: Bool[Array, ""]
  finite: Bool[Array, ""]


def neighbours(x, k: int, precision: str = "highest", tile_size: int | None = None, mesh=None,
               axes=None, *, include_self: bool = False) -> Neighbours:
  """Unchecked: the `Neighbours` of validated features `x` `[N, D]` (traceable).

  With `include_self` the list is the top k including the sample itself (the
  self similarity |x_i|^2 merged in), as the biased CKNNA uses. Cost: one
  tiled kNN (see `knn`), plus O(N k) to merge the self entries.
  """
  values, index = knn_with_similarities(x, k, precision, "auto", tile_size, mesh, axes)
  if include_self:
    self_similarity = jnp.sum(x * x, axis=1).astype(values.dtype)[:, None]
    self_index = jnp.arange(x.shape[0], dtype=index.dtype)[:, None]
    values, index = merge(values, index, self_similarity, self_index, k)
  finite = _validation.all_finite_traced(x)
  return Neighbours(jnp.where(finite, index, -1), values,
                    _validation.constant_over_samples(x), finite)


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
    method: 'auto' (default): for N <= 2048 (and no `tile_size` or
      `approx_recall`) the Gram is assembled from its upper 256-row blocks
      and each row selects once (`self_knn_assembled`, O(N^2) memory, 16
      MiB at most), otherwise 'tiled': symmetric blockwise Gram with a
      running top-k, O(N k + tile^2) memory; 'dense': the full N x N matrix;
      'pallas': one fused Pallas kernel (Triton on GPU; interpret mode, slow,
      on CPU) that never writes a similarity tile to memory (see
      `_pallas_knn`; not chosen by 'auto' until measured faster on a GPU).
    tile_size: rows per tile (default 2048 on CPU, 4096 elsewhere).
    mesh: shard rows over this `jax.sharding.Mesh` (auto or explicit axes)
      and run the device ring (`ring_knn`). N need not divide the device count
      (rows are padded). Without it, an `x` whose rows are already sharded over
      several devices runs the ring on its own mesh, where it lives.
    axis_name: mesh axis (or axes) the rows are split over; default all.
    approx_recall: use `lax.approx_max_k` with this recall target for the
      per-tile selection (meant for TPU; exact elsewhere). Off by default.

  Returns:
    int32 `[N, k]`, row-sharded like the computation when P divides N. Under
    tracing (`jit`), features holding NaN/Inf give -1 everywhere (never a
    plausible list; the `*_from_indices` metrics turn it into NaN).

  Raises:
    ValueError: bad rank, empty, NaN/Inf (concrete `x`), k out of range,
      unknown precision or method, `tile_size` not a positive int, or `x`
      constant over samples (concrete).

  Cost: 'tiled' does about half the N^2 D multiply-adds of a Gram matrix
  ((T+1)/(2T) of them for T tiles) plus O(N^2 (1 + k / g)) selection work
  (groups of g <= 16 columns); memory O(N D + N k g + tile^2). With a mesh of
  P devices each does about N^2 D / (2P) multiply-adds (the ring uses the
  symmetry too) and holds O(N (D + k g) / P + tile^2). 'dense' does N^2 D
  and holds N^2 floats.
  """
  x, k = check_knn_args(x, k, precision, method, tile_size=tile_size, mesh=mesh,
                        approx_recall=approx_recall, check_finite=False)
  _validation.reject_bad_samples(x=x)
  place = _mesh.placement([x], mesh, axis_name, shard=method not in ("dense", "pallas"))

  def kernel(mesh, x):
    index = knn_with_similarities(x, k, precision, method, tile_size, mesh, place.axes,
                                  approx_recall)[1]
    return index if _validation.is_concrete(x) else _validation.nan_unless(
        _validation.all_finite_traced(x), index, "`x` contains NaN or Inf values.", fill=-1)

  return place.run(kernel, x, out_specs=place.row_spec(x.shape[0]))
