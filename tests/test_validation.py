"""Bad input raises ValueError naming the argument; degenerate input has a documented result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import platonic_jax as pj

ALL = ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
       "cknna", "svcca"]


@pytest.fixture
def pair(rng):
  return (rng.standard_normal((20, 4)).astype(np.float32),
          rng.standard_normal((20, 6)).astype(np.float32))


@pytest.mark.parametrize("name", ALL)
def test_rank_must_be_two(name, pair):
  a, b = pair
  with pytest.raises(ValueError, match=r"`a` must be a rank-2 array.*\(20,\)"):
    pj.measure(name, a[:, 0], b)
  with pytest.raises(ValueError, match=r"`b` must be a rank-2 array"):
    pj.measure(name, a, b[None])


@pytest.mark.parametrize("name", ALL)
def test_sample_counts_must_match(name, pair):
  a, b = pair
  with pytest.raises(ValueError, match=r"same number of samples.*N=20.*N=19"):
    pj.measure(name, a, b[:19])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(name, pair, bad):
  a, b = pair
  b = b.copy()
  b[3, 2] = bad
  with pytest.raises(ValueError, match=r"`b` contains NaN or Inf"):
    pj.measure(name, a, b)
  with pytest.raises(ValueError, match=r"`a` contains NaN or Inf"):
    pj.measure(name, jnp.asarray(b), a)


@pytest.mark.parametrize("name", ALL)
def test_empty_inputs(name):
  with pytest.raises(ValueError, match=r"`a` is empty"):
    pj.measure(name, np.zeros((0, 3)), np.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"`b` is empty"):
    pj.measure(name, np.ones((5, 3)), np.zeros((5, 0)))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.complex64, object, "U3"])
def test_non_numeric_dtypes(name, pair, dtype):
  a, b = pair
  with pytest.raises(ValueError, match=r"`a` must have a real numeric dtype"):
    pj.measure(name, a.astype(dtype), b)


@pytest.mark.parametrize("name", ALL)
def test_integer_and_bool_inputs_are_promoted(name, rng):
  a = rng.integers(-5, 6, size=(30, 5))
  b = rng.integers(0, 2, size=(30, 7)).astype(bool)
  assert jnp.isfinite(pj.measure(name, a, b) if name != "svcca" else pj.svcca(a, b, 3))


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"])
@pytest.mark.parametrize("k", [0, -1, 20, 21])
def test_k_out_of_range(name, pair, k):
  with pytest.raises(ValueError, match=rf"1 <= k <= N - 1 = 19.*k={k}"):
    pj.measure(name, *pair, k=k)


@pytest.mark.parametrize("k", [1, 20])
def test_cknna_needs_k_at_least_two(pair, k):
  with pytest.raises(ValueError, match=rf"2 <= k <= N - 1 = 19.*k={k}"):
    pj.cknna(*pair, k=k)


def test_k_must_be_an_int(pair):
  with pytest.raises(ValueError, match=r"`k` must be a Python int"):
    pj.mutual_knn(*pair, k=2.5)
  with pytest.raises(ValueError, match=r"`k` must be a Python int"):
    pj.knn(pair[0], True)


@pytest.mark.parametrize("fn", [pj.unbiased_cka, lambda a, b: pj.cka(a, b, unbiased=True),
                                lambda a, b: pj.cknna(a, b, k=2)])
def test_unbiased_estimators_need_four_samples(fn, rng):
  a = rng.standard_normal((3, 4))
  with pytest.raises(ValueError, match=r"unbiased HSIC estimator needs at least N = 4.*N = 3"):
    fn(a, a + 1)


def test_biased_cka_needs_two_samples():
  with pytest.raises(ValueError, match=r"at least N = 2"):
    pj.cka(np.ones((1, 3)), np.ones((1, 3)))


def test_bad_hyper_parameter_values(pair):
  a, b = pair
  with pytest.raises(ValueError, match=r"`kernel` must be one of \['linear', 'rbf'\]"):
    pj.cka(a, b, kernel="poly")
  with pytest.raises(ValueError, match=r"`sigma` must be > 0"):
    pj.cka(a, b, kernel="rbf", sigma=0.0)
  with pytest.raises(ValueError, match=r"`sigma` must be one of \['median'\]"):
    pj.cka(a, b, kernel="rbf", sigma="mean")
  with pytest.raises(ValueError, match=r"`method` must be one of \['auto', 'tiled', 'gram'\]"):
    pj.cka(a, b, kernel="rbf", method="features")
  with pytest.raises(ValueError, match=r"`precision` must be one of"):
    pj.mutual_knn(a, b, precision="fp8")
  with pytest.raises(ValueError, match=r"`method` must be one of"):
    pj.knn(a, 3, method="faiss")
  with pytest.raises(ValueError, match=r"`cca_dim` must be an int with 1 <= cca_dim <= .* = 4"):
    pj.svcca(a, b, cca_dim=5)
  with pytest.raises(ValueError, match=r"`q` must be in \(0, 1\]"):
    pj.prepare_features(a, q=0.0)


def test_constant_features_are_rejected_by_knn_metrics(pair):
  a, b = pair
  const = np.ones_like(a)
  for name in ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"]:
    with pytest.raises(ValueError, match=r"`a` is constant over samples"):
      pj.measure(name, const, b)
  with pytest.raises(ValueError, match=r"`x` is constant over samples"):
    pj.knn(const, 3)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("method", ["auto", "gram"])
def test_constant_features_give_zero_cka(pair, kernel, unbiased, method):
  a, b = pair
  const = np.full_like(a, 0.1)  # 0.1 is inexact in binary: a naive mean would not cancel
  for x, y in ((const, b), (b, const), (const, const)):
    got = pj.cka(x, y, kernel=kernel, unbiased=unbiased, method=method)
    assert float(got) == 0.0
  grad = jax.grad(lambda x: pj.cka(x, b, kernel=kernel, unbiased=unbiased, method=method))
  assert jnp.isfinite(grad(jnp.asarray(const))).all()


def test_constant_features_give_zero_cknna_and_svcca(pair):
  a, b = pair
  const = np.full_like(a, 0.1)
  assert float(pj.cknna(const, b, k=3)) == 0.0
  assert float(jax.jit(lambda x: pj.cknna(x, b, k=3))(const)) == 0.0
  assert float(pj.svcca(const, b, cca_dim=3)) == 0.0


def test_zero_norm_rows_cannot_be_normalised(pair):
  a = pair[0].copy()
  a[7] = 0
  with pytest.raises(ValueError, match=r"1 zero-norm row\(s\) \(first at index \(7,\)\)"):
    pj.prepare_features(a)
  assert np.isfinite(np.asarray(pj.prepare_features(a, normalize=False))).all()


def test_prepare_features_rejects_bad_rank_and_nan(pair):
  with pytest.raises(ValueError, match=r"`x` must be \[N, D\] or \[L, N, D\]"):
    pj.prepare_features(pair[0][0])
  bad = pair[0].copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match=r"`x` contains NaN or Inf"):
    pj.prepare_features(bad)


def test_shape_checks_fire_under_jit_and_vmap(pair):
  a, b = pair
  with pytest.raises(ValueError, match=r"same number of samples"):
    jax.jit(pj.cka)(a, b[:10])
  with pytest.raises(ValueError, match=r"1 <= k <= N - 1 = 19"):
    jax.vmap(lambda x, y: pj.mutual_knn(x, y, k=25))(a[None], b[None])


def test_from_indices_checks_its_inputs(pair):
  idx = np.asarray(pj.knn(pair[0], 3))
  with pytest.raises(ValueError, match=r"same shape \[N, k\]"):
    pj.mutual_knn_from_indices(idx, idx[:, :2])
  with pytest.raises(ValueError, match=r"integer indices"):
    pj.cycle_knn_from_indices(idx.astype(np.float32), idx)
  bad = idx.copy()
  bad[0, 0] = 20
  with pytest.raises(ValueError, match=r"`knn_b` holds indices outside \[0, N\) = \[0, 20\)"):
    pj.lcs_knn_from_indices(idx, bad)
  with pytest.raises(ValueError, match=r"must be \[N, k\] neighbour indices"):
    pj.edit_distance_knn_from_indices(idx[0], idx[0])


def test_hsic_terms_do_not_overflow_at_large_n():
  from platonic_jax import _hsic
  n = 1_000_000  # n (n - 3) and n^2 exceed int32
  value = _hsic.unbiased_from_terms(1.0, 2.0, 3.0, 4.0, n)
  expected = (1.0 + 6.0 / ((n - 1) * (n - 2)) - 8.0 / (n - 2)) / (n * (n - 3))
  np.testing.assert_allclose(float(value), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_traced_finiteness_check(dtype):
  """`all_finite_traced` (one fused sum of x * 0) flags NaN and either infinity, and does not
  overflow on large finite values."""
  from platonic_jax import _validation
  check = jax.jit(_validation.all_finite_traced)
  big = jnp.full((64, 8), jnp.finfo(dtype).max, dtype)
  assert bool(check(big))
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert not bool(check(big.at[3, 5].set(bad)))
  assert not bool(check(big.at[0, 0].set(jnp.inf).at[1, 1].set(-jnp.inf)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_value_checks_name_the_argument_in_order(pair, dtype):
  """One compiled pass checks both inputs (`reject_bad_samples`): every NaN/Inf before the
  first constant input, in argument order, for jax and NumPy inputs of any float dtype."""
  a, b = pair
  const = np.ones_like(a)
  nan_b = b.copy()
  nan_b[5, 1] = np.nan
  for wrap in (np.asarray, lambda x: jnp.asarray(x, dtype)):
    with pytest.raises(ValueError, match=r"`b` contains NaN or Inf"):
      pj.mutual_knn(wrap(const), wrap(nan_b), k=3)
    with pytest.raises(ValueError, match=r"`a` contains NaN or Inf"):
      pj.mutual_knn(wrap(nan_b), wrap(const), k=3)
    with pytest.raises(ValueError, match=r"`a` is constant over samples"):
      pj.mutual_knn(wrap(const), wrap(const), k=3)
    with pytest.raises(ValueError, match=r"`b` is constant over samples"):
      pj.cycle_knn(wrap(a), wrap(const[:, :2]), k=3)
    with pytest.raises(ValueError, match=r"`x` contains NaN or Inf"):
      pj.knn(wrap(nan_b), 3)
    with pytest.raises(ValueError, match=r"`a` contains NaN or Inf"):
      pj.cknna(wrap(nan_b), wrap(a), k=3)
  assert 0.0 <= float(pj.mutual_knn(jnp.asarray(a, dtype), jnp.asarray(b, dtype), k=3)) <= 1.0


def test_integer_features_skip_nothing(pair):
  """Integer features are promoted, then checked for constant rows like any other."""
  ints = np.ones((20, 3), np.int32)
  with pytest.raises(ValueError, match=r"`x` is constant over samples"):
    pj.knn(ints, 3)
  varied = np.arange(60, dtype=np.int32).reshape(20, 3) % 7
  assert pj.knn(varied, 3).shape == (20, 3)
