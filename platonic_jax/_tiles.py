"""Square Gram tiles: their size, how many cover N rows, and which pairs a symmetric pass visits.

Shared by every kernel that walks a Gram matrix one `[tile, tile]` block at a
time (tiled kNN, tiled RBF HSIC, their device rings).
"""

from __future__ import annotations

import jax
import numpy as np

from platonic_jax import _validation

ALIGNMENT = 16  # tile rows are a multiple of this (vector-friendly blocks on every backend)


def default_tile_size() -> int:
  """Rows per Gram tile: 2048 on CPU (L2-friendly GEMMs), 4096 on accelerators."""
  return 2048 if jax.default_backend() == "cpu" else 4096


def tile_layout(n: int, tile_size: int | None, min_rows: int = 1) -> tuple[int, int]:
  """(tile, num_tiles) covering N rows.

  The tile is `tile_size` (default `default_tile_size()`), raised to at least
  `min_rows` (the tiled kNN needs k + 1 rows a tile), capped at N, then
  rounded up to a multiple of 16; `num_tiles = ceil(N / tile)`. Raises
  ValueError unless `tile_size` is None or a positive int.
  """
  tile = _validation.tile_size(tile_size) or default_tile_size()
  tile = min(max(tile, min_rows), n)
  tile = -(-tile // ALIGNMENT) * ALIGNMENT
  return tile, -(-n // tile)


def upper_tile_pairs(num_tiles: int) -> tuple[np.ndarray, np.ndarray]:
  """Tile pairs (i, j) with i <= j, column-major (j outer, i inner), as static int32 vectors.

  A symmetric Gram needs only these T (T + 1) / 2 of the T^2 tiles: tile (i, j)
  serves row block i through its rows and row block j through its columns.
  """
  cols, rows = np.tril_indices(num_tiles)  # row-major over (j, i), i <= j
  return rows.astype(np.int32), cols.astype(np.int32)
