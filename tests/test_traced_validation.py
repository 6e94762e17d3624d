"""Under tracing a bad input gives NaN, never a plausible score; `checked` raises instead.

Also the shape and type checks shared by every entry point: neighbour lists
(`*_from_indices`) and `tile_size`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import platonic_jax as pj
from conftest import correlated_pair

HYPER = {"mutual_knn": {"k": 5}, "cycle_knn": {"k": 5}, "lcs_knn": {"k": 5},
         "edit_distance_knn": {"k": 5}, "cknna": {"k": 5}, "cka": {}, "unbiased_cka": {},
         "svcca": {"cca_dim": 4}}
FROM_INDICES = [pj.mutual_knn_from_indices, pj.cycle_knn_from_indices, pj.lcs_knn_from_indices,
                pj.edit_distance_knn_from_indices]


@pytest.fixture(scope="module")
def poisoned():
  a, b = correlated_pair(np.random.default_rng(3), 256, 16, 16)
  a = a.copy()
  a[3, 2] = np.nan
  return a, b


@pytest.mark.parametrize("name", sorted(HYPER))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_under_jit_gives_nan(poisoned, name, bad):
  a, b = poisoned
  a = np.where(np.isnan(a), bad, a)
  fn = pj.get_metric(name).fn
  for x, y in ((a, b), (b, a)):
    with pytest.raises(ValueError, match="NaN or Inf"):  # eagerly: the documented error
      fn(x, y, **HYPER[name])
    assert np.isnan(float(jax.jit(lambda x, y: fn(x, y, **HYPER[name]))(x, y))), (name, bad)


@pytest.mark.parametrize("name", ["cka", "unbiased_cka", "cknna", "svcca"])
def test_the_constant_guard_does_not_swallow_nan(name):
  a = np.ones((32, 4), np.float32)  # constant: scores exactly 0 ...
  b = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
  fn = jax.jit(lambda x, y: pj.get_metric(name).fn(x, y, **HYPER[name]))
  assert float(fn(a, b)) == 0.0
  a[0, 0] = np.nan  # ... unless it holds a NaN
  assert np.isnan(float(fn(a, b)))


def test_traced_knn_of_non_finite_features_is_no_plausible_list(poisoned):
  a, _ = poisoned
  index = jax.jit(lambda x: pj.knn(x, 5))(a)
  assert (np.asarray(index) == -1).all()
  for fn in FROM_INDICES:
    assert np.isnan(float(jax.jit(fn)(index, index)))


@pytest.mark.parametrize("fn", FROM_INDICES, ids=lambda f: f.__name__)
def test_traced_indices_out_of_range_give_nan(fn):
  x = np.random.default_rng(1).standard_normal((40, 3)).astype(np.float32)
  good = np.array(pj.knn(x, 4))
  assert np.isfinite(float(jax.jit(fn)(good, good)))
  for bad_value in (40, -1):
    bad = good.copy()
    bad[5, 1] = bad_value
    with pytest.raises(ValueError, match=r"outside \[0, N\)"):
      fn(good, bad)
    assert np.isnan(float(jax.jit(fn)(good, bad)))


def test_traced_cknna_from_indices_out_of_range_gives_nan():
  a, b = correlated_pair(np.random.default_rng(2), 40, 5, 5)
  ia, ib = np.array(pj.knn(a, 4)), np.array(pj.knn(b, 4))
  ib[0, 0] = 99
  assert np.isnan(float(jax.jit(pj.cknna_from_indices)(a, b, ia, ib)))


def test_layer_grid_and_zoo_under_jit_give_nan_for_a_non_finite_layer(poisoned):
  a, b = poisoned
  for name in ("mutual_knn", "cknna", "cka"):
    scores = jax.jit(lambda x, y: pj.layer_grid(name, x, y, **HYPER[name]).scores)(
        np.stack([a, b]), np.stack([b, b]))
    assert np.isnan(scores[0]).all() and np.isfinite(scores[1]).all(), name
    zoo = jax.jit(lambda x, y: pj.zoo_alignment([x, y], name, **HYPER[name]).scores)(
        np.stack([a, b]), np.stack([b, b]))
    assert np.isnan(zoo[0, 1]), name


@pytest.mark.parametrize("name", sorted(HYPER))
def test_checked_raises_under_jit_naming_the_argument(poisoned, name):
  a, b = poisoned
  run = pj.checked(lambda x, y: pj.measure(name, x, y, **HYPER[name]))
  with pytest.raises(ValueError, match=r"^`a` contains NaN or Inf values\.$"):
    run(a, b)
  with pytest.raises(ValueError, match=r"^`b` contains NaN or Inf values\.$"):
    run(b, a)
  finite = np.nan_to_num(a)
  np.testing.assert_allclose(float(run(finite, b)), float(pj.measure(name, finite, b,
                                                                    **HYPER[name])), atol=1e-6)


def test_checked_raises_for_traced_indices_out_of_range():
  x = np.random.default_rng(1).standard_normal((40, 3)).astype(np.float32)
  good = np.array(pj.knn(x, 4))
  bad = good.copy()
  bad[2, 2] = 77
  with pytest.raises(ValueError, match=r"`knn_b` holds indices outside \[0, N\) = \[0, 40\)"):
    pj.checked(pj.mutual_knn_from_indices)(good, bad)


@pytest.mark.parametrize("fn", FROM_INDICES, ids=lambda f: f.__name__)
def test_index_lists_are_validated(fn):
  x = np.random.default_rng(1).standard_normal((30, 3)).astype(np.float32)
  good = np.array(pj.knn(x, 4))
  with pytest.raises(ValueError, match="`knn_b` must hold integer indices"):
    fn(good, good.astype(np.float32))
  with pytest.raises(ValueError, match="same shape"):
    fn(good, good[:, :3])
  with pytest.raises(ValueError, match=r"`knn_a` must be \[N, k\]"):
    fn(good[0], good)


def test_cknna_from_indices_validates_its_lists():
  a, b = correlated_pair(np.random.default_rng(4), 30, 4, 4)
  ia, ib = np.array(pj.knn(a, 4)), np.array(pj.knn(b, 4))
  with pytest.raises(ValueError, match="`knn_a` must hold integer indices"):
    pj.cknna_from_indices(a, b, ia.astype(np.float64), ib)
  with pytest.raises(ValueError, match=r"one row per sample of the features \(N = 30\)"):
    pj.cknna_from_indices(a, b, ia[:20], ib[:20])
  with pytest.raises(ValueError, match="same shape"):
    pj.cknna_from_indices(a, b, ia, ib[:, :3])
  with pytest.raises(ValueError, match=r"`knn_b` holds indices outside \[0, N\)"):
    pj.cknna_from_indices(a, b, ia, np.where(ib == 0, 30, ib))


@pytest.mark.parametrize("tile_size", [-5, 0, 2.5, True, "64"])
def test_tile_size_must_be_a_positive_int(tile_size):
  a, b = correlated_pair(np.random.default_rng(5), 40, 4, 4)
  for call in (lambda: pj.knn(a, 3, tile_size=tile_size),
               lambda: pj.mutual_knn(a, b, 3, tile_size=tile_size),
               lambda: pj.cknna(a, b, 3, tile_size=tile_size),
               lambda: pj.cka(a, b, kernel="rbf", tile_size=tile_size),
               lambda: pj.layer_grid("mutual_knn", a[None], b[None], k=3, tile_size=tile_size)):
    with pytest.raises(ValueError, match=r"`tile_size` must be None or a positive int"):
      call()


def test_nan_scores_propagate_through_vmap():
  a, b = correlated_pair(np.random.default_rng(6), 64, 6, 6)
  stack = np.stack([a, a])
  stack[1, 0, 0] = np.nan
  scores = jax.vmap(lambda x: pj.mutual_knn(x, b, 4))(jnp.asarray(stack))
  assert np.isfinite(scores[0]) and np.isnan(scores[1])
