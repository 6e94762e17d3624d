"""Layer grids and model zoos: every cell equals the per-pair metric; kNN computed once.

Shapes are few and fixed (every new shape is a new XLA compile): N = 48 for
the value checks, N = 40 for the call-count checks.
"""

import jax
import numpy as np
import pytest

import platonic_jax as pj
import reference
from platonic_jax import _knn
from platonic_jax import _layers
from conftest import correlated_pair

N, K = 48, 5


def _models(seed=0):
  """A stacked model [3, N, 6], a list model of widths (5, 7, 5), a stacked [2, N, 4]."""
  rng = np.random.default_rng(seed)
  base = rng.standard_normal((N, 6)).astype(np.float32)

  def near(d):  # layers that share structure with `base`, so scores vary across pairs
    mix = rng.standard_normal((6, d)) / np.sqrt(6)
    return (base @ mix + rng.uniform(0.3, 2.0) * rng.standard_normal((N, d))).astype(np.float32)

  stacked = np.stack([near(6) for _ in range(3)])
  listed = [near(d) for d in (5, 7, 5)]
  small = np.stack([near(4) for _ in range(2)])
  return stacked, listed, small


def _layer(model, l):
  return np.asarray(model[l])


def _expected(fn, a, b):
  return np.array([[fn(_layer(a, i), _layer(b, j)) for j in range(len(b))]
                   for i in range(len(a))])


def _check_best(grid):
  scores = np.asarray(grid.scores)
  assert grid.scores.dtype == np.float32 and grid.best_pair.dtype == np.int32
  i, j = np.unravel_index(np.argmax(scores), scores.shape)
  assert tuple(np.asarray(grid.best_pair)) == (i, j)
  assert float(grid.best_score) == scores[i, j]


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"])
def test_knn_metric_grid_matches_reference_per_cell(name):
  stacked, listed, _ = _models()
  grid = _layers.layer_grid(name, stacked, listed, k=K)
  assert grid.scores.shape == (3, 3)
  expected = _expected(lambda x, y: getattr(reference, name)(x, y, K), stacked, listed)
  np.testing.assert_allclose(np.asarray(grid.scores), expected, atol=1e-5)
  if name in ("mutual_knn", "cycle_knn"):  # ... and the per-pair feature metric, exactly
    per_pair = _expected(lambda x, y: float(pj.measure(name, x, y, k=K)), stacked, listed)
    np.testing.assert_array_equal(np.asarray(grid.scores), per_pair)
  _check_best(grid)


def test_cycle_knn_grid_is_computed_in_each_direction():
  stacked, listed, _ = _models()
  ab = np.asarray(_layers.layer_grid("cycle_knn", stacked, listed, k=K).scores)
  ba = np.asarray(_layers.layer_grid("cycle_knn", listed, stacked, k=K).scores)
  np.testing.assert_allclose(ba, _expected(lambda x, y: reference.cycle_knn(x, y, K),
                                           listed, stacked), atol=1e-5)
  assert not np.allclose(ab, ba.T)  # not symmetric: the transpose must not be assumed


@pytest.mark.parametrize("unbiased", [True, False])
def test_cknna_grid_matches_reference_per_cell(unbiased):
  stacked, listed, _ = _models()
  grid = _layers.layer_grid("cknna", listed, stacked, topk=K, unbiased=unbiased)
  expected = _expected(lambda x, y: reference.cknna(x, y, K, unbiased=unbiased), listed, stacked)
  np.testing.assert_allclose(np.asarray(grid.scores), expected, atol=1e-4)
  _check_best(grid)


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_grid_matches_reference_per_cell(unbiased):
  stacked, listed, _ = _models()
  grid = _layers.layer_grid("cka", stacked, listed, unbiased=unbiased)
  expected = _expected(lambda x, y: reference.cka(x, y, unbiased=unbiased), stacked, listed)
  np.testing.assert_allclose(np.asarray(grid.scores), expected, atol=1e-4)
  _check_best(grid)


def test_best_pair_ties_go_to_the_first_cell(rng):
  x, _ = correlated_pair(rng, N, 6, 6)
  grid = _layers.layer_grid("mutual_knn", np.stack([x, x, x]), [x, x, x], k=K)
  np.testing.assert_array_equal(np.asarray(grid.scores), np.ones((3, 3), np.float32))
  assert tuple(np.asarray(grid.best_pair)) == (0, 0)


def test_zoo_matches_brute_force_layer_grids_and_mirrors():
  models = _models()
  zoo = _layers.zoo_alignment(models, "mutual_knn", k=K)
  assert zoo.scores.shape == (3, 3) and zoo.best_layers.shape == (3, 3, 2)
  assert zoo.scores.dtype == np.float32 and zoo.best_layers.dtype == np.int32
  for i, mi in enumerate(models):
    for j, mj in enumerate(models):
      grid = zoo.layer_scores[i][j]
      assert grid.shape == (len(mi), len(mj))
      expected = _expected(lambda x, y: reference.mutual_knn(x, y, K), mi, mj)
      np.testing.assert_allclose(np.asarray(grid), expected, atol=1e-5)
      np.testing.assert_array_equal(np.asarray(grid), np.asarray(zoo.layer_scores[j][i]).T)
      assert float(zoo.scores[i, j]) == float(zoo.scores[j, i]) == np.asarray(grid).max()
      bi, bj = np.asarray(zoo.best_layers[i, j])
      assert np.asarray(grid)[bi, bj] == np.asarray(grid).max()
      np.testing.assert_array_equal(np.asarray(zoo.best_layers[j, i]), [bj, bi])
  # The upper triangle is the brute-force layer grid of each model pair.
  grid = _layers.layer_grid("mutual_knn", models[0], models[1], k=K)
  np.testing.assert_array_equal(np.asarray(zoo.layer_scores[0][1]), np.asarray(grid.scores))
  np.testing.assert_array_equal(np.asarray(zoo.best_layers[0, 1]), np.asarray(grid.best_pair))


@pytest.mark.parametrize("name", ["cycle_knn", "cknna"])
def test_zoo_with_a_non_symmetric_metric_computes_both_directions(name):
  models = _models()[:2]
  zoo = _layers.zoo_alignment(models, name, k=K)
  ref = getattr(reference, name)
  for i in range(2):
    for j in range(2):
      grid = np.asarray(zoo.layer_scores[i][j])
      np.testing.assert_allclose(grid, _expected(lambda x, y: ref(x, y, K), models[i], models[j]),
                                 atol=1e-4, err_msg=f"{name} ({i}, {j})")
      bi, bj = np.unravel_index(np.argmax(grid), grid.shape)
      np.testing.assert_array_equal(np.asarray(zoo.best_layers[i, j]), [bi, bj])
      assert float(zoo.scores[i, j]) == grid[bi, bj]
  assert not np.allclose(np.asarray(zoo.layer_scores[0][1]), np.asarray(zoo.layer_scores[1][0]).T)


def test_zoo_of_a_non_knn_metric_falls_back_to_layer_grids():
  stacked = _models()[0]
  models = [stacked, stacked[::-1] + 0.5]  # one shape: a single compiled grid
  zoo = _layers.zoo_alignment(models, "cka")
  for i in range(2):
    for j in range(2):
      expected = _expected(lambda x, y: reference.cka(x, y), models[i], models[j])
      np.testing.assert_allclose(np.asarray(zoo.layer_scores[i][j]), expected, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(zoo.layer_scores[1][0]),
                                np.asarray(zoo.layer_scores[0][1]).T)
  np.testing.assert_array_equal(np.asarray(zoo.best_layers[1, 0]),
                                np.asarray(zoo.best_layers[0, 1])[::-1])


def _count_knn(monkeypatch):
  """Counts layer kNN computations at run time (a vmapped call counts once per layer)."""
  traced, ran = [], []
  real = _knn.knn_with_similarities

  def counting(x, k, *args, **kwargs):
    traced.append(x.shape)
    jax.debug.callback(lambda v: ran.append(1), x[0, 0])
    return real(x, k, *args, **kwargs)

  monkeypatch.setattr(_knn, "knn_with_similarities", counting)
  for f in (_layers._layer_grid, _layers._model_cache_jit):
    f.clear_cache()  # trace again, through the counting wrapper
  return traced, ran


def test_each_layer_knn_is_computed_once(monkeypatch):
  stacked, listed, small = _models(seed=1)
  traced, ran = _count_knn(monkeypatch)
  _layers.layer_grid("mutual_knn", stacked, listed, k=K).scores.block_until_ready()
  jax.effects_barrier()
  assert len(ran) == 3 + 3  # La + Lb, not 2 La Lb = 18
  assert len(traced) == 1 + 2  # one vmapped kernel per width group: [6], [5, 5], [7]
  ran.clear()
  zoo = _layers.zoo_alignment([stacked, listed, small], "mutual_knn", k=K)
  zoo.scores.block_until_ready()
  jax.effects_barrier()
  assert len(ran) == 3 + 3 + 2  # sum of layer counts


def test_memory_bounded_batches_give_the_same_grid(monkeypatch):
  stacked, listed, _ = _models()
  expected = np.asarray(_layers.layer_grid("mutual_knn", stacked, listed, k=K).scores)
  # A tiny budget: layers one at a time, layer pairs two at a time plus a remainder.
  monkeypatch.setattr(_layers, "_working_set_budget", lambda what="pairs": 3000)
  _layers._layer_grid.clear_cache()
  try:
    got = np.asarray(_layers.layer_grid("mutual_knn", stacked, listed, k=K).scores)
  finally:
    _layers._layer_grid.clear_cache()
  np.testing.assert_array_equal(got, expected)


def test_hyper_parameters_match_the_registry(rng):
  stacked, listed, _ = _models()
  with pytest.raises(ValueError, match=r"takes no hyper-parameter 'cca_dim'"):
    _layers.layer_grid("mutual_knn", stacked, listed, cca_dim=3)
  with pytest.raises(ValueError, match=r"unknown metric 'mutal_knn'"):
    _layers.layer_grid("mutal_knn", stacked, listed)
  with pytest.raises(ValueError, match=r"unknown metric"):
    _layers.zoo_alignment([stacked, listed], "nope")
  with pytest.raises(ValueError, match=r"`k` must satisfy"):
    _layers.layer_grid("mutual_knn", stacked, listed, k=N)
  with pytest.raises(ValueError, match=r"`k` must satisfy 2 <= k"):
    _layers.layer_grid("cknna", stacked, listed, k=1)
  with pytest.raises(ValueError, match=r"`mesh` must be a jax.sharding.Mesh"):
    _layers.layer_grid("cka", stacked, listed, mesh=object())
  with pytest.raises(ValueError, match=r"`precision` must be one of"):
    _layers.layer_grid("mutual_knn", stacked, listed, precision="fast")


def test_bad_models_are_rejected(rng):
  stacked, listed, _ = _models()
  with pytest.raises(ValueError, match=r"same N samples: `b_layers\[1\]` has N=47"):
    _layers.layer_grid("mutual_knn", stacked, [listed[0], listed[1][:-1]])
  with pytest.raises(ValueError, match=r"same N samples: `models\[1\]` has N=40"):
    _layers.zoo_alignment([stacked, stacked[:, :40]])
  with pytest.raises(ValueError, match=r"`models` is empty"):
    _layers.zoo_alignment([])
  with pytest.raises(ValueError, match=r"`a_layers` must be a stacked \[L, N, D\]"):
    _layers.layer_grid("mutual_knn", stacked[0], listed)
  with pytest.raises(ValueError, match=r"`b_layers` is an empty list"):
    _layers.layer_grid("mutual_knn", stacked, [])
  with pytest.raises(ValueError, match=r"`b_layers\[2\]` must be a rank-2"):
    _layers.layer_grid("mutual_knn", stacked, [listed[0], listed[1], stacked])
  bad = stacked.copy()
  bad[1, 3, 2] = np.nan
  with pytest.raises(ValueError, match=r"`a_layers\[1\]` .*NaN or Inf"):
    _layers.layer_grid("cka", bad, listed)
  bad_list = [listed[0], np.full_like(listed[1], np.inf)]
  with pytest.raises(ValueError, match=r"`models\[0\]\[1\]` contains NaN or Inf"):
    _layers.zoo_alignment([bad_list, stacked])
  constant = stacked.copy()
  constant[2] = 1.0
  with pytest.raises(ValueError, match=r"`a_layers\[2\]` is constant over samples"):
    _layers.layer_grid("mutual_knn", constant, listed)
