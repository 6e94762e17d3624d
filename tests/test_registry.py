"""The metric registry and `measure`."""

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
  pj.register_metric(info)
  with pytest.raises(ValueError, match="already registered"):
    pj.register_metric(info)
  a, b = correlated_pair(rng, 20, 3, 3)
  assert float(pj.measure("test_only_negated_cka", a, b)) == -float(pj.cka(a, b))
