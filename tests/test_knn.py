"""Exact kNN: tie-break, self exclusion, tiling edge cases, precision modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import platonic_jax as pj
import reference
from conftest import assert_same_neighbours


def test_ties_go_to_the_lower_index(rng):
  x = rng.integers(-1, 2, size=(200, 3)).astype(np.float32)  # massive exact ties
  expected = reference.knn(x, 12)
  for kwargs in ({"method": "dense"}, {"tile_size": 16}, {"tile_size": 48}, {}):
    np.testing.assert_array_equal(pj.knn(x, 12, **kwargs), expected)


def test_duplicate_rows_are_neighbours_in_index_order(rng):
  x = rng.standard_normal((70, 6)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)  # so a duplicate is the most similar row
  x[[3, 40, 41, 69]] = x[10]
  idx = np.asarray(pj.knn(x, 5, tile_size=16))
  np.testing.assert_array_equal(idx[10, :4], [3, 40, 41, 69])
  np.testing.assert_array_equal(idx[40, :4], [3, 10, 41, 69])
  np.testing.assert_array_equal(idx, reference.knn(x, 5))


@pytest.mark.parametrize("n", [512, 470])
def test_diagonal_tiles_run_as_a_staircase(rng, monkeypatch, n):
  # Tile 512 in eight steps of 64 rows: step i's [64, 512 - 64 i] strip serves its
  # own rows and, right of its square, the later steps' rows. N = 470 gets one
  # 480-row tile: six steps of 64 and a last one of 96 (the remainder), with padding.
  from platonic_jax import _knn
  monkeypatch.setattr(_knn, "diagonal_step_rows", lambda: 64)
  x = rng.integers(-1, 2, size=(n, 4)).astype(np.float32)  # exact ties everywhere
  np.testing.assert_array_equal(pj.knn(x, 3, tile_size=512), reference.knn(x, 3))
  y = rng.standard_normal((n, 9)).astype(np.float32)
  assert_same_neighbours(pj.knn(y, 3, tile_size=512), y, reference.knn(y, 3))


@pytest.mark.parametrize("n,tile", [(33, 16), (100, 32), (161, 64), (16, 16), (17, 16)])
def test_tiles_that_do_not_divide_n(rng, n, tile):
  x = rng.standard_normal((n, 7)).astype(np.float32)
  expected = reference.knn(x, 4)
  assert_same_neighbours(pj.knn(x, 4, tile_size=tile), x, expected)


@pytest.mark.parametrize("k_from_end", [1, 2, 5])
def test_k_near_n(rng, k_from_end):
  n = 40
  x = rng.standard_normal((n, 5)).astype(np.float32)
  k = n - k_from_end
  got = np.asarray(pj.knn(x, k, tile_size=16))
  assert_same_neighbours(got, x, reference.knn(x, k))
  assert not (got == np.arange(n)[:, None]).any()
  if k == n - 1:  # every other row exactly once
    np.testing.assert_array_equal(np.sort(got, 1),
                                  [np.delete(np.arange(n), i) for i in range(n)])


def test_large_group_selection_path_matches_dense(rng):
  # 4096 columns per tile engages the grouped pre-selection (g > 1).
  x = rng.standard_normal((4100, 16)).astype(np.float32)
  x[4099] = x[7]
  dense = pj.knn(x, 10, method="dense")
  np.testing.assert_array_equal(pj.knn(x, 10, tile_size=4096), dense)
  np.testing.assert_array_equal(pj.knn(x, 10, tile_size=1024), dense)


def test_bfloat16_precision_has_high_recall(rng):
  x = rng.standard_normal((512, 64)).astype(np.float32)
  exact = np.asarray(pj.knn(x, 10))
  approx = np.asarray(pj.knn(x, 10, precision="bfloat16"))
  recall = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact, approx)])
  assert recall > 0.9
  if jax.default_backend() == "cpu":  # 'default' is exact float32 only on CPU (TF32 on GPU)
    np.testing.assert_array_equal(pj.knn(x, 10, precision="default"), exact)


def test_bfloat16_inputs_are_accepted(rng):
  x = rng.standard_normal((64, 8)).astype(np.float32)
  xb = jnp.asarray(x, jnp.bfloat16)
  expected = reference.knn(np.asarray(xb.astype(jnp.float32)), 5)
  assert_same_neighbours(pj.knn(xb, 5), np.asarray(xb.astype(jnp.float32)), expected)


def test_knn_under_jit_and_vmap(rng):
  x = rng.standard_normal((3, 50, 6)).astype(np.float32)
  batched = jax.vmap(lambda v: pj.knn(v, 4, tile_size=16))(x)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], reference.knn(x[i], 4))
  np.testing.assert_array_equal(jax.jit(lambda v: pj.knn(v, 4))(x[0]), reference.knn(x[0], 4))


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"])
def test_from_indices_equals_from_features(name, rng):
  a = rng.standard_normal((80, 6)).astype(np.float32)
  b = a + 0.5 * rng.standard_normal((80, 6)).astype(np.float32)
  from_features = getattr(pj, name)(a, b, 7)
  from_indices = getattr(pj, name + "_from_indices")(pj.knn(a, 7), pj.knn(b, 7))
  assert float(from_features) == float(from_indices)
