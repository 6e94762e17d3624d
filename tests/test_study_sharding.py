"""The study's statistics, layer grids and zoos split over 8 simulated devices equal one device.

kNN searches run as the device ring and permutations / half-samples / layer
pairs are divided between the devices; the meshes are those users make
(`jax.make_mesh`, explicit axes by default), an auto-axis mesh, a 2-D mesh,
and inputs already row-sharded with no `mesh=`.
"""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import platonic_jax as pj
from platonic_jax import study

N = 61  # not a multiple of 8: the ring pads rows
PERMS = 5  # 1 + 5 grids: not a multiple of 8 either


def _k(metric):
  return {"k": 5} if pj.get_metric(metric).uses_knn else {}


@pytest.fixture(scope="module")
def meshes():
  assert jax.device_count() >= 8, "conftest asks for 8 simulated CPU devices"
  return {
      "explicit": jax.make_mesh((8,), ("rows",)),
      "auto": jax.make_mesh((8,), ("rows",), axis_types=(AxisType.Auto,)),
      "explicit-2d": jax.make_mesh((4, 2), ("rows", "model")),
  }


def _data(rng, n=N):
  z = rng.normal(size=(n, 4)).astype(np.float32)
  a = z @ rng.normal(size=(4, 9)).astype(np.float32)
  b = z @ rng.normal(size=(4, 7)).astype(np.float32) + 0.5 * rng.normal(size=(n, 7)).astype(
      np.float32)
  return a, b


def _close(metric):
  # Neighbour lists are identical, so scores counted from them are exactly
  # equal; CKNNA's and CKA's float sums may run in another order.
  exact = pj.get_metric(metric).from_neighbours and metric != "cknna"
  return 0.0 if exact else 1e-5


@pytest.mark.parametrize("metric", ["mutual_knn", "cknna", "cycle_knn", "unbiased_cka", "cka"])
@pytest.mark.parametrize("mesh_name", ["explicit", "auto", "explicit-2d"])
def test_permutation_test_on_a_mesh_equals_one_device(rng, meshes, metric, mesh_name):
  a, b = _data(rng)
  perms = study.permutations(N, PERMS, seed=4)
  single = study.permutation_test(metric, a, b, indices=perms, **_k(metric))
  sharded = study.permutation_test(metric, a, b, indices=perms, mesh=meshes[mesh_name],
                                   **_k(metric))
  atol = _close(metric)
  assert sharded.score == pytest.approx(single.score, abs=atol)
  np.testing.assert_allclose(sharded.null, single.null, atol=atol)
  assert sharded.p_value == single.p_value


@pytest.mark.parametrize("metric", ["mutual_knn", "cknna", "unbiased_cka"])
def test_bootstrap_interval_on_a_mesh_equals_one_device(rng, meshes, metric):
  a, b = _data(rng)
  draws = study.resamples(N, 11, seed=2)
  single = study.bootstrap_interval(metric, a, b, indices=draws, **_k(metric))
  for mesh in (meshes["explicit"], meshes["explicit-2d"]):
    sharded = study.bootstrap_interval(metric, a, b, indices=draws, mesh=mesh, **_k(metric))
    atol = _close(metric)
    assert sharded.score == pytest.approx(single.score, abs=max(atol, 1e-6))
    np.testing.assert_allclose(sharded.samples, single.samples, atol=max(atol, 1e-6))
    assert (sharded.low, sharded.high) == pytest.approx((single.low, single.high), abs=1e-5)


def test_row_sharded_inputs_run_on_their_own_mesh(rng, meshes):
  a, b = _data(rng, n=64)
  mesh = meshes["explicit"]
  rows = NamedSharding(mesh, PartitionSpec("rows"))
  a_sharded, b_sharded = jax.device_put(a, rows), jax.device_put(b, rows)
  perms = study.permutations(64, PERMS, seed=5)
  single = study.permutation_test("mutual_knn", a, b, indices=perms, k=5)
  sharded = study.permutation_test("mutual_knn", a_sharded, b_sharded, indices=perms, k=5)
  np.testing.assert_array_equal(sharded.null, single.null)
  draws = study.resamples(64, 6, seed=1)
  np.testing.assert_allclose(
      study.bootstrap_interval("unbiased_cka", a_sharded, b_sharded, indices=draws).samples,
      study.bootstrap_interval("unbiased_cka", a, b, indices=draws).samples, atol=1e-5)


@pytest.mark.parametrize("metric", ["mutual_knn", "unbiased_cka"])
def test_layer_search_null_on_a_mesh_equals_one_device(rng, meshes, metric):
  a, b = _data(rng)
  c = rng.normal(size=(N, 7)).astype(np.float32)
  a_layers, b_layers = [a, a[:, :5]], np.stack([c, b, b + c])
  perms = study.permutations(N, PERMS, seed=6)
  single = study.layer_search_null(metric, a_layers, b_layers, indices=perms, **_k(metric))
  for mesh_name in ("explicit", "auto"):
    sharded = study.layer_search_null(metric, a_layers, b_layers, indices=perms,
                                      mesh=meshes[mesh_name], **_k(metric))
    atol = _close(metric)
    np.testing.assert_allclose(sharded.scores, single.scores, atol=atol)
    np.testing.assert_allclose(sharded.null, single.null, atol=atol)
    np.testing.assert_allclose(sharded.fixed_null, single.fixed_null, atol=atol)
    assert (sharded.best_pair, sharded.p_value) == (single.best_pair, single.p_value)


@pytest.mark.parametrize("metric", ["cknna", "cka"])
def test_zoo_search_nulls_on_a_mesh_equal_one_device(rng, meshes, metric):
  a, b = _data(rng)
  c = rng.normal(size=(N, 7)).astype(np.float32)
  models = [np.stack([b, c]), [a, b], [b[:, ::-1], c, b + c]]
  perms = study.permutations(N, PERMS, seed=7)
  single = dict(study.iter_zoo_search_nulls(metric, models, indices=perms, **_k(metric)))
  sharded = dict(study.iter_zoo_search_nulls(metric, models, indices=perms,
                                             mesh=meshes["explicit-2d"], axis_name="rows",
                                             **_k(metric)))
  assert list(sharded) == list(single)
  atol = _close(metric)
  for pair, want in single.items():
    np.testing.assert_allclose(sharded[pair].scores, want.scores, atol=atol)
    np.testing.assert_allclose(sharded[pair].null, want.null, atol=atol)


@pytest.mark.parametrize("metric", ["mutual_knn", "lcs_knn", "svcca"])
def test_layer_grid_and_zoo_on_a_mesh_equal_one_device(rng, meshes, metric):
  a, b = _data(rng)
  kwargs = {"cca_dim": 3} if metric == "svcca" else _k(metric)
  models = [np.stack([a[:, :7], b]), [a, b[:, :3]], np.stack([b, b * 2, a[:, 2:]])]
  atol = _close(metric)
  single = pj.layer_grid(metric, models[0], models[1], **kwargs)
  sharded = pj.layer_grid(metric, models[0], models[1], mesh=meshes["explicit"], **kwargs)
  np.testing.assert_allclose(sharded.scores, single.scores, atol=atol)
  zoo = pj.zoo_alignment(models, metric, **kwargs)
  zoo_sharded = pj.zoo_alignment(models, metric, mesh=meshes["auto"], **kwargs)
  np.testing.assert_allclose(zoo_sharded.scores, zoo.scores, atol=atol)
  _assert_same_best_layers(zoo_sharded, zoo, atol)


def _assert_same_best_layers(got, want, atol):
  """The same best layer pair wherever it is unique by more than `atol`; where
  several tie within rounding (a model against itself scores 1 at every
  matching layer), the pick must be one of them."""
  for m1, row in enumerate(want.layer_scores):
    for m2, grid in enumerate(row):
      grid = np.asarray(grid)
      tied = np.argwhere(grid >= grid.max() - atol)
      picked = tuple(np.asarray(got.best_layers)[m1, m2])
      if len(tied) == 1:
        assert picked == tuple(np.asarray(want.best_layers)[m1, m2]), (m1, m2)
      else:
        assert grid[picked] >= grid.max() - atol, (m1, m2, picked)


def test_measure_feature_sets_on_a_mesh_equals_one_device(rng, meshes):
  a, b = _data(rng)
  c = rng.normal(size=(N, 7)).astype(np.float32)
  sets = [study.FeatureSet("a", [a, a[:, :4]], {}), study.FeatureSet("b", [b, c], {}),
          study.FeatureSet("c", [c + b], {})]
  kwargs = {"metrics": ("mutual_knn", "unbiased_cka"), "k": 5, "num_permutations": 4,
            "num_resamples": 5}
  single = study.measure_feature_sets(sets, **kwargs)
  sharded = study.measure_feature_sets(sets, mesh=meshes["explicit"], **kwargs)
  assert len(sharded) == len(single) == 6
  for got, want in zip(sharded, single):
    assert (got["metric"], got["a"], got["b"]) == (want["metric"], want["a"], want["b"])
    for field in ("layer_scores", "best_score", "search_null_mean", "fixed_score",
                  "fixed_null_mean", "best_interval", "fixed_interval"):
      np.testing.assert_allclose(got[field], want[field], atol=1e-5, err_msg=field)
    assert got["best_layers"] == want["best_layers"]
    assert got["search_p_value"] == want["search_p_value"]
