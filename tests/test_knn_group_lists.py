"""The group-list kNN (single device and the symmetric ring) against independent references.

Edge cases of the group lists: exact ties across group and tile borders,
duplicate rows, k near N (few groups, g = 1), padding rows and sentinel
groups, small N (two half tiles), and rings of odd and even device counts.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import platonic_jax as pj
import reference
from platonic_jax import _knn


@pytest.mark.parametrize("n,k,tile", [(200, 12, 32), (130, 9, None), (97, 10, 48)])
def test_integer_ties_across_groups_and_tiles(rng, n, k, tile):
  x = rng.integers(-1, 2, size=(n, 3)).astype(np.float32)  # massive exact ties
  np.testing.assert_array_equal(pj.knn(x, k, tile_size=tile), reference.knn(x, k))


def test_duplicates_in_other_tiles_rank_by_index(rng):
  x = rng.standard_normal((100, 5)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  x[[2, 31, 64, 99]] = x[50]  # copies in three different 32-row tiles
  idx = np.asarray(pj.knn(x, 6, tile_size=32))
  np.testing.assert_array_equal(idx[50, :4], [2, 31, 64, 99])
  np.testing.assert_array_equal(idx[99, :4], [2, 31, 50, 64])
  np.testing.assert_array_equal(idx, reference.knn(x, 6))


@pytest.mark.parametrize("n,k", [(17, 16), (17, 15), (33, 30)])
def test_k_near_n_with_padding_and_sentinels(rng, n, k):
  # Few real groups per row, padding rows in the last tile: sentinel groups
  # survive in the lists until the end and must never reach the output.
  x = rng.integers(-2, 3, size=(n, 4)).astype(np.float32)
  got = np.asarray(pj.knn(x, k, tile_size=16))
  np.testing.assert_array_equal(got, reference.knn(x, k))
  assert ((got >= 0) & (got < n)).all()


def test_small_n_uses_two_half_tiles_and_matches_dense(rng):
  x = rng.standard_normal((300, 24)).astype(np.float32)
  assert _knn.self_tile_size(300, None) == 150
  np.testing.assert_array_equal(pj.knn(x, 10, method="tiled"), pj.knn(x, 10, method="dense"))


@pytest.mark.parametrize("n,k", [(2, 1), (17, 10), (17, 16), (33, 30), (257, 10), (600, 12),
                                 (1000, 10), (2048, 10)])
def test_assembled_gram_matches_reference(rng, n, k):
  # One to eight blocks, padding rows, rows with fewer than k groups of finite
  # similarities (N = 17, k = 10: eight groups of two), exact ties everywhere.
  x = rng.integers(-2, 3, size=(n, 6)).astype(np.float32)
  x[n - 1] = x[0]
  values, index = _knn.self_knn_assembled(jnp.asarray(x), k)
  expected = reference.knn(x, k)
  np.testing.assert_array_equal(index, expected)
  np.testing.assert_array_equal(values, np.take_along_axis(x @ x.T, expected, axis=1))


def test_auto_assembles_small_grams_and_tiles_larger_ones(rng):
  limit = _knn._ASSEMBLED_MAX_ROWS  # pylint: disable=protected-access
  for n in (limit, limit + 1):
    x = rng.standard_normal((n, 8)).astype(np.float32)
    x[n - 1] = x[3]
    jaxpr = str(jax.make_jaxpr(lambda v: pj.knn(v, 10))(x))  # pylint: disable=cell-var-from-loop
    assert ("scan" in jaxpr) == (n > limit)  # the tiled pass scans over tile pairs
    np.testing.assert_array_equal(pj.knn(x, 10), pj.knn(x, 10, method="dense"))


def test_group_lists_merge_with_repeated_sentinels():
  k, g = 3, 2
  empty = _knn.empty_group_lists(1, k, g)
  real = (jnp.array([[5.0, 4.0, -jnp.inf]]), jnp.array([[7, 2, -1]], jnp.int32),
          jnp.array([[[5.0, 1.0], [4.0, 4.0], [-jnp.inf, -jnp.inf]]]))
  top, ids, members = _knn.merge_group_lists(empty, real, k)
  np.testing.assert_array_equal(ids[:, :2], [[7, 2]])
  assert ids[0, 2] < 0  # a sentinel (any of them: their members are all -inf)
  np.testing.assert_array_equal(members[0, :2], [[5.0, 1.0], [4.0, 4.0]])
  values, index = _knn.finish_group_lists((top, ids, members), k)
  np.testing.assert_array_equal(values, [[5.0, 4.0, 4.0]])
  np.testing.assert_array_equal(index, [[14, 4, 5]])  # a tie goes to the lower index


def _ordered_lists(rng, rows, k, g, ids_from, sentinels):
  """Group lists in list order (maximum desc, id asc) with integer ties and sentinel tails."""
  values = rng.integers(0, 4, (rows, 3 * k)).astype(np.float32)
  ids = np.stack([rng.permutation(3 * k) for _ in range(rows)]).astype(np.int32) + ids_from
  top, chosen = _knn.select_top_k(jnp.asarray(values), jnp.asarray(ids), k)
  top, chosen = np.array(top), np.array(chosen)
  for r, count in enumerate(sentinels):
    if count:
      top[r, k - count:] = -np.inf
      chosen[r, k - count:] = np.arange(-count, 0)
  members = rng.normal(size=(rows, k, g)).astype(np.float32)
  members[np.isneginf(top)] = -np.inf
  return jnp.asarray(top), jnp.asarray(chosen), jnp.asarray(members)


def test_rank_merge_equals_selecting_from_both_lists(rng):
  """The stable rank merge keeps the k best by (maximum desc, id asc), ties across lists included."""
  rows, k, g = 64, 10, 4
  sentinels_a = rng.integers(0, k + 1, rows)
  sentinels_b = rng.integers(0, k + 1, rows)
  a = _ordered_lists(rng, rows, k, g, 0, sentinels_a)
  b = _ordered_lists(rng, rows, k, g, 3 * k, sentinels_b)
  top, ids, members = _knn.merge_group_lists(a, b, k)
  values = jnp.concatenate([a[0], b[0]], axis=1)
  index = jnp.concatenate([a[1], b[1]], axis=1)
  want_top, want_ids = _knn.select_top_k(values, index, k)
  np.testing.assert_array_equal(top, want_top)
  real = np.isfinite(np.asarray(want_top))
  np.testing.assert_array_equal(np.asarray(ids)[real], np.asarray(want_ids)[real])
  assert (np.asarray(ids)[~real] < 0).all()
  every = np.concatenate([np.asarray(a[2]), np.asarray(b[2])], axis=1)
  for r in range(rows):
    for p in np.nonzero(real[r])[0]:
      source = list(np.asarray(index[r])).index(int(ids[r, p]))
      np.testing.assert_array_equal(members[r, p], every[r, source])
  # list order holds, so merged lists merge again
  again = _knn.merge_group_lists((top, ids, members), _knn.empty_group_lists(rows, k, g), k)
  np.testing.assert_array_equal(again[0], top)


def test_approx_recall_is_exact_on_cpu(rng):
  x = rng.standard_normal((150, 8)).astype(np.float32)
  if jax.default_backend() != "cpu":
    pytest.skip("approx_max_k is approximate on TPU")
  np.testing.assert_array_equal(pj.knn(x, 5, approx_recall=0.9, tile_size=48), pj.knn(x, 5))


@pytest.mark.parametrize("devices", [2, 3, 8])
def test_symmetric_ring_equals_single_device(rng, devices):
  mesh = Mesh(np.array(jax.devices()[:devices]), ("data",))
  x = rng.integers(-1, 2, size=(101, 3)).astype(np.float32)  # ties across shards
  x[77] = x[5]
  single = np.asarray(pj.knn(x, 8))
  np.testing.assert_array_equal(single, reference.knn(x, 8))
  np.testing.assert_array_equal(pj.knn(x, 8, mesh=mesh), single)
  np.testing.assert_array_equal(pj.knn(x, 8, mesh=mesh, tile_size=16), single)


def test_symmetric_ring_with_k_near_n_on_odd_mesh(rng):
  mesh = Mesh(np.array(jax.devices()[:5]), ("data",))
  x = rng.standard_normal((23, 4)).astype(np.float32)
  np.testing.assert_array_equal(pj.knn(x, 22, mesh=mesh), reference.knn(x, 22))


@pytest.mark.parametrize("n,k,d", [(100, 7, 3), (70, 5, 20)])
def test_fused_pallas_kernel_in_interpret_mode(rng, n, k, d):
  x = rng.integers(-1, 2, size=(n, d)).astype(np.float32)  # exact ties
  x[n - 1] = x[2]
  np.testing.assert_array_equal(pj.knn(x, k, method="pallas"), reference.knn(x, k))
  if jax.default_backend() == "cpu":
    # Small blocks: several column blocks, skipped tiles, padding rows and columns.
    from platonic_jax import _pallas_knn  # pylint: disable=import-outside-toplevel
    _, index = _pallas_knn.self_knn_pallas(x, k, block_rows=16, block_cols=32)
    np.testing.assert_array_equal(index, reference.knn(x, k))
    # Partial products over feature slices of 16 (two for D = 20, padded to 32).
    values, index = _pallas_knn.self_knn_pallas(x, k, block_rows=16, block_cols=32,
                                                block_depth=16)
    np.testing.assert_array_equal(index, reference.knn(x, k))
    np.testing.assert_array_equal(values, np.take_along_axis(x @ x.T, index, axis=1))


@pytest.mark.parametrize("n,d,precision", [(1500, 300, "highest"), (37, 5, "default"),
                                            (1_000_000, 1024, "bfloat16")])
def test_pallas_kernel_lowers_to_triton_for_cuda(n, d, precision):
  # Lowered on any host, no GPU needed: the kernel must go to Triton. A GPU
  # pallas_call left to its default goes to Mosaic GPU, which stages the whole
  # [N, D] operand in shared memory and fails to lower.
  from platonic_jax import _pallas_knn  # pylint: disable=import-outside-toplevel
  search = jax.jit(lambda x: _pallas_knn.self_knn_pallas(x, 10, precision, interpret=False))
  lowered = search.trace(jax.ShapeDtypeStruct((n, d), jnp.float32)).lower(
      lowering_platforms=("cuda",)).as_text()
  assert re.findall(r"custom_call @(\S+)\(", lowered) == ["__gpu$xla.gpu.triton"]


def test_pallas_kernel_names_the_way_out_on_tpu(rng, monkeypatch):
  from platonic_jax import _pallas_knn  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  with pytest.raises(ValueError, match=r"lowers through Triton, for GPUs; on TPU use 'auto'"):
    _pallas_knn.self_knn_pallas(rng.standard_normal((19, 7)).astype(np.float32), 3)  # fresh trace


@pytest.mark.parametrize("block_depth", [24, 8, 0])
def test_pallas_feature_slices_must_be_a_power_of_two_of_at_least_16(rng, block_depth):
  from platonic_jax import _pallas_knn  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match=rf"block_depth must be a power of two of at least 16, "
                                       rf"got {block_depth}\b"):
    _pallas_knn.self_knn_pallas(rng.standard_normal((20, 40)).astype(np.float32), 3,
                                block_depth=block_depth)


def test_pallas_method_cannot_be_sharded(rng):
  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  with pytest.raises(ValueError, match=r"cannot be sharded"):
    pj.knn(rng.standard_normal((20, 3)).astype(np.float32), 3, mesh=mesh, method="pallas")


def test_split_diagonal_tiles_keep_ties_exact(rng):
  # 2048-row tiles: each diagonal tile runs as a staircase of 512-row steps (1024 off CPU).
  x = rng.integers(-1, 2, size=(2100, 3)).astype(np.float32)
  np.testing.assert_array_equal(pj.knn(x, 10, tile_size=2048), pj.knn(x, 10, method="dense"))


def test_finish_selects_by_value_then_global_index(rng):
  """The final selection (groups put in id order, then by position) breaks ties by global index,
  whatever order the groups are listed in, repeated sentinels included."""
  rows, k, g = 200, 6, 4
  ids = np.stack([rng.permutation(40)[:k] for _ in range(rows)]).astype(np.int32)
  members = rng.integers(0, 3, (rows, k, g)).astype(np.float32)  # many ties
  sentinel_rows = rng.random(rows) < 0.3
  ids[sentinel_rows, -2:] = -1  # the same sentinel twice
  members[sentinel_rows, -2:] = -np.inf
  maxima = members.max(axis=2)
  values, index = _knn.finish_group_lists(
      (jnp.asarray(maxima), jnp.asarray(ids), jnp.asarray(members)), k)
  for r in range(rows):
    candidates = sorted((-members[r, p, m], ids[r, p] * g + m)
                        for p in range(k) for m in range(g) if ids[r, p] >= 0)[:k]
    np.testing.assert_array_equal(values[r], [-v for v, _ in candidates])
    np.testing.assert_array_equal(index[r], [i for _, i in candidates])


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("k", [1, 10, 16, 20])
def test_selection_by_position_ranks_value_then_position(rng, axis, k):
  """k best of each row (axis 1) or column (axis 0) by (value desc, position asc), exact ties,
  -inf candidates and a row without k finite values included; a NaN row gives NaN maxima
  (and, by extraction, position int32 max)."""
  values = rng.integers(0, 4, (37, 40)).astype(np.float32)  # many ties
  values[rng.random(values.shape) < 0.2] = -np.inf
  values[5, 3:] = -np.inf  # three finite candidates only
  values[7] = np.nan
  values = values if axis == 1 else values.T
  top, position = _knn.select_top_k_by_position(jnp.asarray(values), k, axis=axis)
  top, position = np.asarray(top), np.asarray(position)
  if axis == 0:
    values, top, position = values.T, top.T, position.T
  assert position.dtype == np.int32
  for r, row in enumerate(values):
    if r == 7:
      assert np.isnan(top[r]).all()
      if k <= 16:  # the extractions: no candidate at a NaN max
        assert (position[r] == np.iinfo(np.int32).max).all()
      continue
    want = sorted(range(row.size), key=lambda p: (-row[p], p))[:k]
    np.testing.assert_array_equal(top[r], row[want])
    finite = np.isfinite(row[want])
    np.testing.assert_array_equal(position[r][finite], np.asarray(want)[finite])
