"""Every metric against the independent float64 references in reference.py."""

import numpy as np
import pytest

import platonic_jax as pj
import reference
from conftest import assert_same_neighbours, correlated_pair

SHAPES = [(64, 8, 12, 5), (150, 32, 20, 10), (257, 5, 40, 16)]  # N, Da, Db, k
SEEDS = [0, 1, 2]


def _pair(seed, shape):
  n, da, db, _ = shape
  return correlated_pair(np.random.default_rng([seed, n, da, db]), n, da, db)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_knn_indices_match_reference(seed, shape):
  a, _ = _pair(seed, shape)
  k = shape[3]
  expected = reference.knn(a, k)
  for method in ("tiled", "dense"):
    assert_same_neighbours(pj.knn(a, k, method=method), a, expected)
  assert_same_neighbours(pj.knn(a, k, tile_size=32), a, expected)


KNN_METRICS = ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", KNN_METRICS)
def test_knn_metrics_match_reference(name, seed, shape):
  a, b = _pair(seed, shape)
  k = shape[3]
  expected = getattr(reference, name)(a, b, k)
  np.testing.assert_allclose(float(getattr(pj, name)(a, b, k)), expected, atol=1e-4)
  np.testing.assert_allclose(float(pj.measure(name, a, b, k=k)), expected, atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("method", ["features", "gram"])
def test_linear_cka_matches_reference(seed, shape, unbiased, method):
  a, b = _pair(seed, shape)
  expected = reference.cka(a, b, unbiased=unbiased)
  got = pj.cka(a, b, unbiased=unbiased, method=method, chunk_size=50)
  np.testing.assert_allclose(float(got), expected, atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("sigma", [1.0, 4.0])
@pytest.mark.parametrize("method", ["tiled", "gram"])
def test_rbf_cka_matches_reference(seed, unbiased, sigma, method):
  a, b = _pair(seed, (90, 6, 9, 0))
  expected = reference.cka(a, b, kernel="rbf", sigma=sigma, unbiased=unbiased)
  got = pj.cka(a, b, kernel="rbf", sigma=sigma, unbiased=unbiased, method=method, tile_size=32)
  np.testing.assert_allclose(float(got), expected, atol=1e-4)


def test_rbf_cka_with_the_median_heuristic(rng):
  a, b = (x.astype(np.float64) for x in correlated_pair(rng, 70, 5, 8))
  distances = [np.linalg.norm(x[:, None] - x[None], axis=-1) for x in (a, b)]
  sigmas = [np.median(d[np.triu_indices(70, 1)]) for d in distances]
  np.testing.assert_allclose([float(pj.median_sigma(a)), float(pj.median_sigma(b))], sigmas,
                             rtol=1e-5)
  k, l = (np.exp(-np.square(d) / (2 * s * s)) for d, s in zip(distances, sigmas))
  hsic = reference.hsic_unbiased
  expected = hsic(k, l) / (np.sqrt(hsic(k, k) * hsic(l, l)) + 1e-6)
  np.testing.assert_allclose(float(pj.unbiased_cka(a, b, kernel="rbf", sigma="median")),
                             expected, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_unbiased_cka_is_cka_unbiased(seed):
  a, b = _pair(seed, SHAPES[0])
  np.testing.assert_allclose(float(pj.unbiased_cka(a, b)),
                             reference.cka(a, b, unbiased=True), atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("unbiased", [True, False])
def test_cknna_matches_reference(seed, shape, unbiased):
  a, b = _pair(seed, shape)
  k = shape[3]
  expected = reference.cknna(a, b, k, unbiased=unbiased)
  np.testing.assert_allclose(float(pj.cknna(a, b, k, unbiased=unbiased)), expected, atol=1e-4)
  idx_a, idx_b = pj.knn(a, k), pj.knn(b, k)
  if unbiased:
    np.testing.assert_allclose(float(pj.cknna_from_indices(a, b, idx_a, idx_b)), expected,
                               atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cca_dim", [1, 5])
def test_svcca_matches_reference(seed, shape, cca_dim):
  a, b = _pair(seed, shape)
  expected = reference.svcca(a, b, cca_dim)
  np.testing.assert_allclose(float(pj.svcca(a, b, cca_dim)), expected, atol=1e-4)
  np.testing.assert_allclose(float(pj.svcca(a, b, cca_dim)),
                             reference.svcca_via_cca(a, b, cca_dim), atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
def test_prepare_features_matches_reference(seed):
  x = np.random.default_rng(seed).standard_t(3, size=(80, 30)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(pj.prepare_features(x)), reference.prepare_features(x),
                             atol=1e-6)


def test_prepare_features_shares_the_clamp_across_layers():
  x = np.random.default_rng(5).standard_t(3, size=(3, 40, 16)).astype(np.float32)
  clamp = np.sort(np.abs(x).ravel())[int(0.95 * x.size)]
  clipped = np.clip(x, -clamp, clamp)
  expected = clipped / np.linalg.norm(clipped, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(pj.prepare_features(x)), expected, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["features", "svd"])
def test_svcca_methods_agree_with_reference(seed, method):
  a, b = _pair(seed, (300, 24, 40, 0))
  for cca_dim in (3, 10):
    np.testing.assert_allclose(np.asarray(pj.svcca_correlations(a, b, cca_dim, method=method)),
                               reference.svcca_correlations(a, b, cca_dim), atol=1e-4)


@pytest.mark.parametrize("offset", [200.0, 1000.0])
@pytest.mark.parametrize("unbiased", [False, True])
def test_streaming_linear_cka_is_stable_under_a_large_mean_offset(offset, unbiased):
  a, b = _pair(7, (2000, 64, 32, 0))
  a, b = a + np.float32(offset), b - np.float32(offset)
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  # HSIC is exactly invariant to a feature shift, so the float64 reference is
  # evaluated on centred copies of the same float32 inputs: evaluated as is,
  # the uncentred float64 formula itself cancels badly at these offsets.
  expected = reference.cka(a64 - a64.mean(0), b64 - b64.mean(0), unbiased=unbiased)
  for chunk_size in (256, 4096):
    got = pj.cka(a, b, unbiased=unbiased, method="features", chunk_size=chunk_size)
    np.testing.assert_allclose(float(got), expected, atol=1e-5)
