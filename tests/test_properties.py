"""Invariances, symmetries and ranges, on inputs drawn by hypothesis."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, strategies as st

import platonic_jax as pj

N, DA, DB, K = 48, 6, 9, 5  # fixed shapes: one XLA compile per metric


@st.composite
def feature_pairs(draw):
  seed = draw(st.integers(0, 2**32 - 1))
  noise = draw(st.floats(0.0, 3.0))
  offset = draw(st.floats(-5.0, 5.0))
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((N, DA))
  b = a @ rng.standard_normal((DA, DB)) + noise * rng.standard_normal((N, DB)) + offset
  return a.astype(np.float32), b.astype(np.float32), rng


METRICS = {
    "mutual_knn": {"k": K}, "cycle_knn": {"k": K}, "lcs_knn": {"k": K},
    "edit_distance_knn": {"k": K}, "cka": {}, "unbiased_cka": {}, "cknna": {"k": K},
    "svcca": {"cca_dim": 4},
}


def _orthogonal(rng, d):
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  return q.astype(np.float32)


@given(feature_pairs())
def test_values_lie_in_their_range(pair):
  a, b, _ = pair
  for name, kwargs in METRICS.items():
    low, high = pj.get_metric(name).range_for(**kwargs)
    value = float(pj.measure(name, a, b, **kwargs))
    assert low - 1e-5 <= value <= high + 1e-5, (name, value, low, high)


@given(feature_pairs())
def test_identical_inputs_give_the_maximum(pair):
  a, _, _ = pair
  assert float(pj.mutual_knn(a, a, K)) == 1.0
  assert float(pj.lcs_knn(a, a, K)) == K
  assert float(pj.edit_distance_knn(a, a, K)) == 1.0
  for value in (pj.cka(a, a), pj.unbiased_cka(a, a), pj.cknna(a, a, K), pj.svcca(a, a, 4)):
    np.testing.assert_allclose(float(value), 1.0, atol=1e-4)


@given(feature_pairs())
def test_cka_is_invariant_to_rotation_and_isotropic_scaling(pair):
  a, b, rng = pair
  scale = float(rng.uniform(0.1, 10.0))
  a2 = scale * a @ _orthogonal(rng, DA)
  b2 = b @ _orthogonal(rng, DB) / scale
  for kwargs in ({}, {"unbiased": True}, {"method": "gram"}):
    np.testing.assert_allclose(float(pj.cka(a2, b2, **kwargs)), float(pj.cka(a, b, **kwargs)),
                               atol=1e-4)


@given(feature_pairs())
def test_linear_cka_is_invariant_to_a_feature_shift(pair):
  a, b, rng = pair
  shift = rng.uniform(-100, 100, size=DA).astype(np.float32)
  for unbiased in (False, True):
    np.testing.assert_allclose(float(pj.cka(a + shift, b, unbiased=unbiased)),
                               float(pj.cka(a, b, unbiased=unbiased)), atol=1e-4)


@given(feature_pairs())
def test_knn_metrics_are_equivariant_to_a_shared_sample_permutation(pair):
  a, b, rng = pair
  perm = rng.permutation(N)
  for name in ("mutual_knn", "cycle_knn"):
    np.testing.assert_allclose(float(pj.measure(name, a[perm], b[perm], k=K)),
                               float(pj.measure(name, a, b, k=K)), atol=1e-6)
  np.testing.assert_allclose(float(pj.cka(a[perm], b[perm])), float(pj.cka(a, b)), atol=1e-5)


@given(feature_pairs())
def test_symmetric_metrics_are_symmetric(pair):
  a, b, _ = pair
  for name, kwargs in METRICS.items():
    if pj.get_metric(name).symmetric:
      np.testing.assert_allclose(float(pj.measure(name, a, b, **kwargs)),
                                 float(pj.measure(name, b, a, **kwargs)), atol=1e-5,
                                 err_msg=name)


@given(feature_pairs())
def test_knn_neighbours_exclude_self_and_are_distinct(pair):
  a, _, _ = pair
  idx = np.asarray(pj.knn(a, K))
  assert not (idx == np.arange(N)[:, None]).any()
  assert all(len(set(row)) == K for row in idx)
  sims = np.einsum("id,ikd->ik", a.astype(np.float64), a[idx].astype(np.float64))
  assert (np.diff(sims, axis=1) <= 1e-4 * np.abs(sims).max()).all()


@given(feature_pairs())
def test_prepare_features_gives_unit_rows_and_bounded_entries(pair):
  a, _, _ = pair
  out = np.asarray(pj.prepare_features(jnp.asarray(a)))
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
