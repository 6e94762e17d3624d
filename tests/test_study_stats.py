"""Permutation nulls, bootstrap intervals and the layer-search null (platonic_jax.study)."""

import hypothesis
import hypothesis.strategies as hst
import numpy as np
import pytest

import platonic_jax as pj
from platonic_jax import study

N = 64
KNN_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna")


def _k(metric):
  return {"k": 5} if pj.get_metric(metric).uses_knn else {}


def _related(rng, n=N, noise=0.5):
  z = rng.normal(size=(n, 6)).astype(np.float32)
  a = z @ rng.normal(size=(6, 10)).astype(np.float32)
  b = z @ rng.normal(size=(6, 8)).astype(np.float32) + noise * rng.normal(size=(n, 8)).astype(
      np.float32)
  return a, b


@pytest.mark.parametrize("metric", ["mutual_knn", "cknna", "unbiased_cka"])
def test_identical_inputs_reach_the_minimum_p_value(rng, metric):
  a = rng.normal(size=(N, 8)).astype(np.float32)
  result = study.permutation_test(metric, a, a, num_permutations=39, **_k(metric))
  assert result.p_value == pytest.approx(1 / 40)
  assert result.score == pytest.approx(1.0, abs=1e-5)
  assert result.score > result.null_mean + 8 * result.null_std
  assert result.null.shape == (39,) and result.null.dtype == np.float32


@pytest.mark.parametrize("metric", ["mutual_knn", "unbiased_cka"])
def test_independent_inputs_sit_inside_their_null(rng, metric):
  a = rng.normal(size=(N, 8)).astype(np.float32)
  b = rng.normal(size=(N, 8)).astype(np.float32)
  test = study.permutation_test(metric, a, b, num_permutations=99, seed=3, **_k(metric))
  assert test.null.min() <= test.score <= test.null.max()
  assert test.p_value > 0.01
  interval = study.bootstrap_interval(metric, a, b, num_resamples=60, seed=3, **_k(metric))
  assert interval.low <= test.null_mean <= interval.high


def test_statistics_reproduce_from_their_seed(rng):
  a, b = _related(rng)
  first = study.permutation_test("mutual_knn", a, b, num_permutations=20, seed=7, k=5)
  again = study.permutation_test("mutual_knn", a, b, num_permutations=20, seed=7, k=5)
  other = study.permutation_test("mutual_knn", a, b, num_permutations=20, seed=8, k=5)
  np.testing.assert_array_equal(first.null, again.null)
  assert not np.array_equal(first.null, other.null)
  boot = study.bootstrap_interval("cka", a, b, num_resamples=20, seed=7)
  np.testing.assert_array_equal(boot.samples,
                                study.bootstrap_interval("cka", a, b, num_resamples=20,
                                                         seed=7).samples)
  np.testing.assert_array_equal(study.permutations(N, 5, 1), study.permutations(N, 5, 1))
  np.testing.assert_array_equal(study.resamples(N, 5, 1), study.resamples(N, 5, 1))


@pytest.mark.parametrize("metric,extra", [(m, {}) for m in KNN_METRICS]
                         + [("cknna", {"unbiased": False})])
def test_permuted_neighbour_lists_equal_recomputation(rng, metric, extra):
  a, b = _related(rng)
  perms = study.permutations(N, 6, seed=2)
  result = study.permutation_test(metric, a, b, indices=perms, k=5, **extra)
  recomputed = [float(pj.measure(metric, a, b[p], k=5, **extra)) for p in perms]
  np.testing.assert_allclose(result.null, recomputed, rtol=1e-5, atol=1e-6)
  assert result.score == pytest.approx(float(pj.measure(metric, a, b, k=5, **extra)), abs=1e-6)


def test_generic_null_is_the_metric_on_permuted_rows(rng):
  a, b = _related(rng)
  perms = study.permutations(N, 4, seed=5)
  result = study.permutation_test("svcca", a, b, indices=perms, cca_dim=4)
  expected = [float(pj.svcca(a, b[p], cca_dim=4)) for p in perms]
  np.testing.assert_allclose(result.null, expected, rtol=1e-5, atol=1e-6)


def test_interval_is_a_recentred_half_sampling_interval(rng):
  a, b = _related(rng)
  halves = study.resamples(N, 5, seed=4)
  assert halves.shape == (5, N // 2)
  result = study.bootstrap_interval("mutual_knn", a, b, indices=halves, k=5)
  raw = np.array([float(pj.mutual_knn(a[s], b[s], k=5)) for s in halves])
  np.testing.assert_allclose(result.samples, result.score + raw - raw.mean(), atol=1e-6)
  assert result.score == pytest.approx(float(pj.mutual_knn(a, b, k=5)))
  # No duplicated rows, so identical inputs agree exactly in every half-sample.
  same = study.bootstrap_interval("mutual_knn", a, a, indices=halves, k=5)
  np.testing.assert_allclose(same.samples, 1.0)
  assert same.low == pytest.approx(1.0) and same.high == pytest.approx(1.0)


def test_feature_space_interval_uses_the_same_half_samples(rng):
  a, b = _related(rng)
  draws = study.resamples(N, 4, seed=6)
  result = study.bootstrap_interval("unbiased_cka", a, b, indices=draws, confidence=0.5)
  raw = np.array([float(pj.unbiased_cka(a[r], b[r])) for r in draws])
  expected = result.score + raw - raw.mean()
  np.testing.assert_allclose(result.samples, expected, rtol=1e-5, atol=1e-6)
  assert result.low == pytest.approx(np.quantile(expected, 0.25), rel=1e-5)
  assert result.high == pytest.approx(np.quantile(expected, 0.75), rel=1e-5)


def test_bootstrap_interval_covers_a_known_population_value():
  """Linear CKA of a fixed generative model; truth from a 40k-sample estimate."""
  w = np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32)

  def draw(rng, n):
    z = rng.normal(size=(n, 5)).astype(np.float32)
    return z, z @ w + 1.5 * rng.normal(size=(n, 5)).astype(np.float32)

  truth = float(pj.cka(*draw(np.random.default_rng(1), 40_000)))
  rng = np.random.default_rng(2)
  covered = 0
  for rep in range(20):
    interval = study.bootstrap_interval("cka", *draw(rng, 150), num_resamples=200,
                                        confidence=0.9, seed=rep)
    covered += interval.low <= truth <= interval.high
  assert covered >= 15  # nominal 18 of 20


def test_layer_search_null_is_the_max_over_permuted_grids(rng):
  a, b = _related(rng)
  c = rng.normal(size=(N, 8)).astype(np.float32)
  a_layers, b_layers = [a[:, :8], a[:, 2:]], np.stack([c, b, b + c])
  perms = study.permutations(N, 5, seed=9)
  result = study.layer_search_null("mutual_knn", a_layers, b_layers, indices=perms, k=5,
                                   fixed_pair=(0, -1))
  grid = pj.layer_grid("mutual_knn", a_layers, b_layers, k=5)
  np.testing.assert_allclose(result.scores, grid.scores, atol=1e-6)
  assert result.best_score == pytest.approx(float(grid.best_score))
  assert result.best_pair == tuple(int(v) for v in grid.best_pair)
  assert result.fixed_pair == (0, 2)
  for p, best, fixed in zip(perms, result.null, result.fixed_null):
    shuffled = pj.layer_grid("mutual_knn", a_layers, b_layers[:, p], k=5).scores
    assert best == pytest.approx(float(shuffled.max()), abs=1e-6)
    assert fixed == pytest.approx(float(shuffled[0, 2]), abs=1e-6)
  assert result.p_value == pytest.approx(1 / 6)


def test_layer_search_null_of_a_feature_space_metric(rng):
  a, b = _related(rng)
  perms = study.permutations(N, 3, seed=1)
  result = study.layer_search_null("unbiased_cka", [a, b], [b], indices=perms)
  for p, best in zip(perms, result.null):
    expected = max(float(pj.unbiased_cka(x, b[p])) for x in (a, b))
    assert best == pytest.approx(expected, abs=1e-5)
  assert result.best_pair == (1, 0) and result.fixed_pair == (1, 0)


@pytest.mark.parametrize("metric", ["mutual_knn", "cka"])
def test_zoo_search_nulls_equal_the_pairwise_null(rng, metric):
  a, b = _related(rng)
  c = rng.normal(size=(N, 8)).astype(np.float32)
  models = [np.stack([b, c]), np.stack([c + b, b]), [b[:, ::-1], c]]
  perms = study.permutations(N, 4, seed=3)
  results = dict(study.iter_zoo_search_nulls(metric, models, indices=perms,
                                             fixed_layers=[0, -1, 0], **_k(metric)))
  assert list(results) == [(0, 1), (0, 2), (1, 2)]  # symmetric: i < j
  for (i, j), got in results.items():
    want = study.layer_search_null(metric, models[i], models[j], indices=perms,
                                   fixed_pair=([0, -1, 0][i], [0, -1, 0][j]), **_k(metric))
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
    np.testing.assert_allclose(got.null, want.null, atol=1e-6)
    np.testing.assert_allclose(got.fixed_null, want.fixed_null, atol=1e-6)
    assert (got.best_pair, got.fixed_pair) == (want.best_pair, want.fixed_pair)


@hypothesis.given(n=hst.integers(2, 40), count=hst.integers(1, 5), seed=hst.integers(0, 2**31))
def test_index_sets_are_permutations_and_in_range(n, count, seed):
  perms = study.permutations(n, count, seed)
  assert perms.shape == (count, n) and perms.dtype == np.int32
  np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(n), (count, 1)))
  halves = study.resamples(n, count, seed)
  assert halves.shape == (count, n // 2)
  assert all(len(set(row)) == n // 2 for row in halves.tolist())


@pytest.mark.parametrize("call,match", [
    (lambda a, b: study.permutation_test("mutal_knn", a, b), "mutual_knn"),
    (lambda a, b: study.permutation_test("mutual_knn", a, b, num_permutations=0),
     "num_permutations"),
    (lambda a, b: study.permutation_test("mutual_knn", a, b[:10]), "`b`"),
    (lambda a, b: study.permutation_test("mutual_knn", a, b, seed=-1), "seed"),
    (lambda a, b: study.permutation_test("cka", a, b, k=3), "k"),
    (lambda a, b: study.permutation_test("mutual_knn", a, b, indices=np.zeros((2, N), int)),
     "indices"),
    (lambda a, b: study.bootstrap_interval("cka", a, b, confidence=1.0), "confidence"),
    (lambda a, b: study.bootstrap_interval("cka", a, b, num_resamples=-2), "num_resamples"),
    (lambda a, b: study.bootstrap_interval("cka", a, b, indices=np.full((2, 9), N)), "indices"),
    (lambda a, b: study.bootstrap_interval("mutual_knn", a, b, k=N // 2), "`k`"),
    (lambda a, b: study.bootstrap_interval("cknna", a, b, indices=np.zeros((2, 8), int)),
     "repeats"),
    (lambda a, b: study.layer_search_null("cka", [a], [b], fixed_pair=(1, 0)), "fixed_pair"),
    (lambda a, b: study.layer_search_null("cka", [a], [b[:-1]]), "N="),
])
def test_bad_arguments_are_named(rng, call, match):
  a, b = _related(rng)
  with pytest.raises(ValueError, match=match):
    call(a, b)


def test_nan_input_is_rejected(rng):
  a, b = _related(rng)
  a[3, 1] = np.nan
  with pytest.raises(ValueError, match="`a` contains NaN"):
    study.bootstrap_interval("unbiased_cka", a, b)
