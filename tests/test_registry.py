"""The metric registry and `measure`."""

import dataclasses
import types

import jax.numpy as jnp
import numpy as np
import pytest

import platonic_jax as pj
import reference
from conftest import correlated_pair

EIGHT = {"mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
         "cknna", "svcca"}


def test_all_eight_prh_metrics_are_registered():
  assert EIGHT <= set(pj.metric_names())


@pytest.mark.parametrize("name", sorted(EIGHT))
def test_metadata_is_complete(name):
  info = pj.get_metric(name)
  assert info.name == name and callable(info.fn)
  low, high = info.range_for()
  assert low < high
  assert isinstance(info.symmetric, bool) and info.higher_is_more_similar
  assert info.cost


def test_metadata_values():
  assert pj.get_metric("lcs_knn").range_for(k=7) == (0.0, 7.0)
  assert pj.get_metric("cka").range_for() == (0.0, 1.0)
  assert pj.get_metric("cka").range_for(unbiased=True) == (-1.0, 1.0)
  assert not pj.get_metric("cycle_knn").symmetric
  assert not pj.get_metric("cknna").symmetric
  assert pj.get_metric("mutual_knn").uses_knn and not pj.get_metric("cka").uses_knn
  assert set(pj.get_metric("cka").hyperparameters) >= {"kernel", "sigma", "unbiased"}


def test_unknown_name_lists_close_matches():
  with pytest.raises(ValueError, match=r"unknown metric 'mutal_knn'\. Did you mean 'mutual_knn'"):
    pj.measure("mutal_knn", np.ones((5, 2)), np.ones((5, 2)))
  with pytest.raises(ValueError, match=r"Registered: cka, cknna"):
    pj.get_metric("zzz")


def test_unknown_hyper_parameter_is_named(rng):
  a, b = correlated_pair(rng, 20, 3, 3)
  with pytest.raises(ValueError, match=r"takes no hyper-parameter 'cca_dim'.*'k'"):
    pj.measure("mutual_knn", a, b, cca_dim=3)


def test_reference_keyword_spellings(rng):
  a, b = correlated_pair(rng, 40, 5, 6)
  np.testing.assert_allclose(float(pj.measure("mutual_knn", a, b, topk=4)),
                             reference.mutual_knn(a, b, 4), atol=1e-6)
  np.testing.assert_allclose(float(pj.measure("cka", a, b, kernel_metric="ip")),
                             reference.cka(a, b), atol=1e-5)
  np.testing.assert_allclose(
      float(pj.measure("unbiased_cka", a, b, kernel_metric="rbf", rbf_sigma=2.0)),
      reference.cka(a, b, kernel="rbf", sigma=2.0, unbiased=True), atol=1e-5)


def test_register_a_custom_metric(rng):
  info = pj.MetricInfo(
      name="test_only_negated_cka", fn=lambda a, b: -pj.cka(a, b), hyperparameters={},
      value_range=lambda **_: (-1.0, 0.0), symmetric=True, higher_is_more_similar=False,
      uses_knn=False, cost="as cka")
  with pj.registered_metric(info):
    with pytest.raises(ValueError, match="already registered"):
      pj.register_metric(info)
    a, b = correlated_pair(rng, 20, 3, 3)
    assert float(pj.measure("test_only_negated_cka", a, b)) == -float(pj.cka(a, b))
  assert "test_only_negated_cka" not in pj.metric_names()


def test_registered_metric_restores_a_replaced_metric():
  original = pj.get_metric("cka")
  stand_in = dataclasses.replace(original, cost="stand-in")
  with pj.registered_metric(stand_in, overwrite=True):
    assert pj.get_metric("cka").cost == "stand-in"
  assert pj.get_metric("cka") is original


def test_a_new_neighbour_metric_is_one_registration(rng):
  """A kNN metric declared only through the registry works in layer grids and zoos."""
  def jaccard_from_neighbours(na, nb, **_):
    shared = jnp.sum(na.index[:, :, None] == nb.index[:, None, :], axis=(1, 2))
    return jnp.mean(shared / (2 * na.index.shape[1] - shared))

  def jaccard_knn(a, b, k=10, precision="highest", tile_size=None, mesh=None, axis_name=None):
    lists = (types.SimpleNamespace(index=pj.knn(x, k)) for x in (a, b))
    return jaccard_from_neighbours(*lists)

  info = pj.MetricInfo(
      "test_only_jaccard_knn", jaccard_knn, pj.get_metric("mutual_knn").hyperparameters,
      lambda **_: (0.0, 1.0), True, True, True, "as mutual_knn",
      from_neighbours=jaccard_from_neighbours, rejects_constant=True)
  a, b = correlated_pair(rng, 60, 5, 7)
  layers_a, layers_b = np.stack([a, a * 2]), [b, b[:, :4]]
  with pj.registered_metric(info):
    grid = pj.layer_grid("test_only_jaccard_knn", layers_a, layers_b, k=6)
    for i, x in enumerate(layers_a):
      for j, y in enumerate(layers_b):
        np.testing.assert_allclose(grid.scores[i, j], jaccard_knn(x, y, 6), atol=1e-6)
