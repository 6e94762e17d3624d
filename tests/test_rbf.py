"""Tiled RBF-kernel HSIC and the median bandwidth against float64 NumPy references.

Every distinct (N, Da, Db, tile, unbiased) is a new XLA compile, so the tests
share one jitted entry point and a few shapes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference
from conftest import correlated_pair
from platonic_jax import _cka, _hsic, _rbf

_tiled = jax.jit(_rbf.rbf_hsic_tiled, static_argnames=("unbiased", "tile_size"))
_median = jax.jit(_rbf.median_sigma, static_argnames=("max_samples",))

# (N, Da, Db, tile): N not a multiple of the tile, twice; tile >= N (default tile).
SHAPES = [(100, 8, 5, 32), (33, 4, 6, 16), (40, 3, 7, None)]


def _rbf64(x, sigma):
  """Dense float64 Gaussian kernel, computed from differences (no Gram identity)."""
  x = np.asarray(x, np.float64)
  d2 = np.sum(np.square(x[:, None, :] - x[None, :, :]), axis=-1)
  return np.exp(-d2 / (2.0 * sigma * sigma))


def _reference_hsics(a, b, sigma_a, sigma_b, unbiased):
  k, l = _rbf64(a, sigma_a), _rbf64(b, sigma_b)
  hsic = reference.hsic_unbiased if unbiased else reference.hsic_biased
  return np.array([hsic(k, l), hsic(k, k), hsic(l, l)])


def _median_distance64(x, sigma_scale=1.0):
  x = np.asarray(x, np.float64)
  d = np.sqrt(np.sum(np.square(x[:, None, :] - x[None, :, :]), axis=-1))
  return sigma_scale * float(np.median(d[np.triu_indices(x.shape[0], k=1)]))


def _assert_hsics_close(ours, expected, rtol=1e-4):
  ours = np.array([float(h) for h in ours])
  np.testing.assert_allclose(ours, expected, rtol=rtol, atol=0)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("n,da,db,tile", SHAPES)
def test_hsic_matches_float64_reference(rng, n, da, db, tile, unbiased):
  for _ in range(2):  # seeds
    a, b = correlated_pair(rng, n, da, db)
    # Two bandwidth regimes, different for K and L; sigmas are traced (no recompile).
    for scale_a, scale_b in [(1.0, 0.5), (4.0, 1.5)]:
      sigma_a, sigma_b = _median_distance64(a, scale_a), _median_distance64(b, scale_b)
      ours = _tiled(a, b, sigma_a, sigma_b, unbiased=unbiased, tile_size=tile)
      _assert_hsics_close(ours, _reference_hsics(a, b, sigma_a, sigma_b, unbiased))


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_ratio_matches_reference(rng, unbiased):
  n, da, db, tile = SHAPES[0]
  for sigma in (2.0, 5.0):
    a, b = correlated_pair(rng, n, da, db)
    ours = _hsic.cka_from_hsic(*_tiled(a, b, sigma, sigma, unbiased=unbiased, tile_size=tile))
    expected = reference.cka(a, b, kernel="rbf", sigma=sigma, unbiased=unbiased)
    assert abs(float(ours) - expected) < 1e-5


@pytest.mark.parametrize("unbiased", [False, True])
def test_duplicate_rows(rng, unbiased):
  n, da, db, tile = SHAPES[0]
  a, b = correlated_pair(rng, n, da, db)
  a[n // 2:] = a[:n - n // 2]  # duplicates inside a tile and across tiles
  b[::3] = b[1]
  ours = _tiled(a, b, 2.0, 3.0, unbiased=unbiased, tile_size=tile)
  _assert_hsics_close(ours, _reference_hsics(a, b, 2.0, 3.0, unbiased))


@pytest.mark.parametrize("unbiased", [False, True])
def test_feature_offset(rng, unbiased):
  """A 1000 offset: float32 inputs, float64 reference on mean-centred inputs (same distances)."""
  n, da, db, tile = SHAPES[0]
  a, b = correlated_pair(rng, n, da, db)
  a = (a + 1000.0).astype(np.float32)
  b = (b - 1000.0).astype(np.float32)
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  a64, b64 = a64 - a64.mean(0), b64 - b64.mean(0)
  ours = _tiled(a, b, 2.5, 3.0, unbiased=unbiased, tile_size=tile)
  _assert_hsics_close(ours, _reference_hsics(a64, b64, 2.5, 3.0, unbiased))


@pytest.mark.parametrize("unbiased", [False, True])
def test_matches_dense_gram_path(rng, unbiased):
  n, da, db, tile = SHAPES[1]
  a, b = correlated_pair(rng, n, da, db)
  hsic = _hsic.hsic_unbiased_gram if unbiased else _hsic.hsic_biased_gram

  @jax.jit
  def dense_hsics(x, y):
    k, l = _cka.rbf_gram(x, 2.0), _cka.rbf_gram(y, 2.5)
    return hsic(k, l), hsic(k, k), hsic(l, l)

  dense = [float(h) for h in dense_hsics(a, b)]
  _assert_hsics_close(_tiled(a, b, 2.0, 2.5, unbiased=unbiased, tile_size=tile), dense)


def test_jit_and_vmap_agree_with_eager(rng):
  n, da, db, tile = SHAPES[1]
  pairs = [correlated_pair(rng, n, da, db) for _ in range(3)]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  sigmas = [1.5, 2.0, 3.0]
  batched = jax.jit(jax.vmap(
      lambda x, y, s: _rbf.rbf_hsic_tiled(x, y, s, 2.0 * s, unbiased=True, tile_size=tile)))(
          a, b, jnp.asarray(sigmas))
  for t in range(3):
    jitted = _tiled(a[t], b[t], sigmas[t], 2.0 * sigmas[t], unbiased=True, tile_size=tile)
    for j, v in zip(jitted, batched):
      np.testing.assert_allclose(float(v[t]), float(j), rtol=1e-5)
  # Op by op, except the scan body.
  eager = _rbf.rbf_hsic_tiled(jnp.asarray(a[0]), jnp.asarray(b[0]), sigmas[0], 2.0 * sigmas[0],
                              unbiased=True, tile_size=tile)
  for e, j in zip(eager, _tiled(a[0], b[0], sigmas[0], 2.0 * sigmas[0], unbiased=True,
                                tile_size=tile)):
    np.testing.assert_allclose(float(j), float(e), rtol=1e-5)


def test_grad_finite_and_matches_dense(rng):
  n, da, db, tile = SHAPES[1]
  a, b = correlated_pair(rng, n, da, db)
  a[5] = a[20]  # a duplicate row: zero distance off the diagonal

  def tiled_cka(x, sigma):
    return _hsic.cka_from_hsic(*_rbf.rbf_hsic_tiled(x, b, sigma, 2.0, unbiased=True,
                                                    tile_size=tile))

  def dense_cka(x, sigma):
    k, l = _cka.rbf_gram(x, sigma), _cka.rbf_gram(jnp.asarray(b), 2.0)
    h = _hsic.hsic_unbiased_gram
    return _hsic.cka_from_hsic(h(k, l), h(k, k), h(l, l))

  grad_a, grad_sigma = jax.jit(jax.grad(tiled_cka, argnums=(0, 1)))(jnp.asarray(a), 1.5)
  assert np.all(np.isfinite(grad_a)) and np.isfinite(grad_sigma)
  dense_a, dense_sigma = jax.jit(jax.grad(dense_cka, argnums=(0, 1)))(jnp.asarray(a), 1.5)
  scale = float(jnp.max(jnp.abs(dense_a)))
  np.testing.assert_allclose(grad_a, dense_a, atol=1e-4 * scale)
  np.testing.assert_allclose(float(grad_sigma), float(dense_sigma), rtol=1e-3, atol=1e-6)


def test_invalid_tile_size():
  with pytest.raises(ValueError, match="tile_size"):
    _rbf.rbf_hsic_tiled(jnp.ones((8, 2)), jnp.ones((8, 2)), 1.0, 1.0, unbiased=False, tile_size=0)


# 300 rows: 44850 pairs (even count); 51 of 300 rows: 1275 pairs (odd count).
@pytest.mark.parametrize("n,max_samples", [(300, 2048), (300, 51)])
def test_median_sigma_matches_numpy(rng, n, max_samples):
  x = rng.standard_normal((n, 6)).astype(np.float32) * 3.0 + 50.0
  m = min(n, max_samples)
  index = np.round(np.linspace(0, n - 1, m)).astype(int)
  if m == n:
    np.testing.assert_array_equal(index, np.arange(n))
  expected = _median_distance64(x[index])
  np.testing.assert_allclose(float(_median(x, max_samples=max_samples)), expected, rtol=1e-5)


def test_median_sigma_degenerate():
  assert float(_median(np.full((20, 3), 7.0, np.float32), max_samples=2048)) == 1.0
  x = np.zeros((20, 3), np.float32)
  x[:15] = 1.0  # 105 of 190 pairs at distance 0: median 0
  assert float(_median(x, max_samples=2048)) == 1.0
  with pytest.raises(ValueError):
    _rbf.median_sigma(jnp.ones((1, 3)))
