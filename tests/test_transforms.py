"""jit, vmap and grad: the metrics are pure functions of their array arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import platonic_jax as pj
from conftest import correlated_pair

CASES = [
    ("mutual_knn", {"k": 5}),
    ("cycle_knn", {"k": 5}),
    ("lcs_knn", {"k": 5}),
    ("edit_distance_knn", {"k": 5}),
    ("cka", {}),
    ("cka", {"kernel": "rbf", "sigma": 2.0, "unbiased": True}),
    ("unbiased_cka", {}),
    ("cknna", {"k": 5}),
    ("cknna", {"k": 5, "unbiased": False}),
    ("svcca", {"cca_dim": 4}),
]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_jit_equals_eager(name, kwargs, rng):
  a, b = correlated_pair(rng, 60, 8, 10)
  fn = pj.get_metric(name).fn
  eager = fn(a, b, **kwargs)
  jitted = jax.jit(lambda x, y: fn(x, y, **kwargs))(a, b)
  assert eager.shape == () and jitted.shape == ()
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", CASES)
def test_vmap_over_a_batch_of_pairs(name, kwargs, rng):
  pairs = [correlated_pair(rng, 60, 8, 10, noise=s) for s in (0.1, 1.0, 3.0)]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  fn = pj.get_metric(name).fn
  batched = jax.vmap(lambda x, y: fn(x, y, **kwargs))(a, b)
  one_by_one = [float(fn(x, y, **kwargs)) for x, y in zip(a, b)]
  np.testing.assert_allclose(np.asarray(batched), one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {}, {"unbiased": True}, {"method": "gram"}, {"unbiased": True, "method": "gram"},
    {"kernel": "rbf", "sigma": 3.0}, {"kernel": "rbf", "sigma": 3.0, "unbiased": True},
])
def test_cka_gradients_are_finite_and_correct(kwargs, rng):
  a, b = correlated_pair(rng, 30, 5, 7, dtype=np.float64)
  b = jnp.asarray(b, jnp.float32)
  grad = jax.jit(jax.grad(lambda x: pj.cka(x, b, **kwargs)))(jnp.asarray(a, jnp.float32))
  assert grad.shape == a.shape and jnp.isfinite(grad).all()
  # Central difference along a random direction.
  direction = rng.standard_normal(a.shape).astype(np.float32)
  direction /= np.linalg.norm(direction)
  eps = 1e-2
  f = lambda x: float(pj.cka(jnp.asarray(x, jnp.float32), b, **kwargs))
  numeric = (f(a + eps * direction) - f(a - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(float(jnp.sum(grad * direction)), numeric, rtol=2e-2, atol=1e-3)


def test_unbiased_cka_gradient_under_jit(rng):
  a, b = correlated_pair(rng, 40, 6, 6)
  grad = jax.jit(jax.grad(lambda x: pj.unbiased_cka(x, b)))(a)
  assert jnp.isfinite(grad).all() and jnp.abs(grad).sum() > 0


def test_gradient_with_respect_to_sigma(rng):
  a, b = correlated_pair(rng, 30, 5, 7)
  g = jax.grad(lambda s: pj.cka(a, b, kernel="rbf", sigma=s))(2.0)
  assert np.isfinite(float(g))
