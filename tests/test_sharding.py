"""Sharded paths over 8 simulated CPU devices equal the single-device ones."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import platonic_jax as pj
import reference
from conftest import assert_same_neighbours, correlated_pair


@pytest.fixture(scope="module")
def mesh8():
  assert jax.device_count() >= 8, "conftest asks for 8 simulated CPU devices"
  return Mesh(np.array(jax.devices()[:8]), ("data",))


@pytest.fixture(scope="module")
def mesh4x2():
  return Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))


@pytest.mark.parametrize("n", [64, 61, 9, 300])
def test_ring_knn_equals_single_device(mesh8, rng, n):
  x = rng.standard_normal((n, 6)).astype(np.float32)
  x[n // 2] = x[1]  # an exact duplicate: a tie that must break the same way
  k = min(7, n - 1)
  single = np.asarray(pj.knn(x, k))
  np.testing.assert_array_equal(pj.knn(x, k, mesh=mesh8), single)
  np.testing.assert_array_equal(pj.knn(x, k, mesh=mesh8, tile_size=16), single)
  assert_same_neighbours(single, x, reference.knn(x, k))


def test_ring_knn_with_k_near_n(mesh8, rng):
  x = rng.standard_normal((40, 5)).astype(np.float32)
  for k in (37, 39):
    np.testing.assert_array_equal(pj.knn(x, k, mesh=mesh8), pj.knn(x, k))


def test_ring_knn_integer_ties(mesh8, rng):
  x = rng.integers(-1, 2, size=(130, 3)).astype(np.float32)
  np.testing.assert_array_equal(pj.knn(x, 9, mesh=mesh8, tile_size=16), reference.knn(x, 9))


def test_ring_knn_bfloat16_equals_single_device_bfloat16(mesh8, rng):
  x = rng.standard_normal((96, 32)).astype(np.float32)
  np.testing.assert_array_equal(pj.knn(x, 5, precision="bfloat16", mesh=mesh8),
                                pj.knn(x, 5, precision="bfloat16"))


def test_two_dimensional_mesh_and_axis_selection(mesh4x2, rng):
  x = rng.standard_normal((50, 4)).astype(np.float32)
  single = np.asarray(pj.knn(x, 6))
  np.testing.assert_array_equal(pj.knn(x, 6, mesh=mesh4x2), single)
  np.testing.assert_array_equal(pj.knn(x, 6, mesh=mesh4x2, axis_name="data"), single)
  np.testing.assert_array_equal(pj.knn(x, 6, mesh=mesh4x2, axis_name=("model", "data")), single)
  with pytest.raises(ValueError, match=r"`axis_name` must name axes of the mesh"):
    pj.knn(x, 6, mesh=mesh4x2, axis_name="batch")
  with pytest.raises(ValueError, match=r"cannot be sharded"):
    pj.knn(x, 6, mesh=mesh4x2, method="dense")


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn",
                                  "cknna"])
@pytest.mark.parametrize("n", [80, 77])
def test_knn_metrics_on_a_mesh(mesh8, rng, name, n):
  a, b = correlated_pair(rng, n, 6, 9)
  single = float(pj.measure(name, a, b, k=5))
  sharded = float(pj.get_metric(name).fn(a, b, k=5, mesh=mesh8))
  np.testing.assert_allclose(sharded, single, atol=1e-5)
  np.testing.assert_allclose(single, getattr(reference, name)(a, b, 5), atol=1e-4)


@pytest.mark.parametrize("n", [96, 101])
@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_on_a_mesh(mesh8, rng, n, unbiased):
  a, b = correlated_pair(rng, n, 7, 5)
  a = a + 300.0  # a mean offset: the shared pilot shift must cancel it on every shard
  single = float(pj.cka(a, b, unbiased=unbiased))
  sharded = float(pj.cka(a, b, unbiased=unbiased, mesh=mesh8, chunk_size=4))
  np.testing.assert_allclose(sharded, single, atol=1e-5)
  centred = a.astype(np.float64) - a.astype(np.float64).mean(0)
  np.testing.assert_allclose(sharded, reference.cka(centred, b, unbiased=unbiased), atol=1e-5)


def test_svcca_on_a_mesh(mesh8, rng):
  a, b = correlated_pair(rng, 203, 12, 9)
  np.testing.assert_allclose(float(pj.svcca(a, b, 4, mesh=mesh8)), float(pj.svcca(a, b, 4)),
                             atol=1e-5)
  np.testing.assert_allclose(float(pj.svcca(a, b, 4, mesh=mesh8)), reference.svcca(a, b, 4),
                             atol=1e-4)


def test_sharded_inputs_stay_sharded(mesh8, rng):
  x = jax.device_put(rng.standard_normal((64, 8)).astype(np.float32),
                     jax.sharding.NamedSharding(mesh8, jax.sharding.PartitionSpec("data")))
  idx = pj.knn(x, 4, mesh=mesh8)
  assert idx.sharding.is_equivalent_to(x.sharding, 2)


@pytest.mark.parametrize("n", [64, 45])
@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_cka_on_a_mesh(mesh8, rng, n, unbiased):
  a, b = correlated_pair(rng, n, 5, 4)
  single = float(pj.cka(a, b, kernel="rbf", sigma=2.0, unbiased=unbiased))
  sharded = float(pj.cka(a, b, kernel="rbf", sigma=2.0, unbiased=unbiased, mesh=mesh8,
                         tile_size=16))
  np.testing.assert_allclose(sharded, single, atol=1e-5)
  np.testing.assert_allclose(
      sharded, reference.cka(a, b, kernel="rbf", sigma=2.0, unbiased=unbiased), atol=1e-5)
