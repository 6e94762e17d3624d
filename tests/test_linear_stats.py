"""Feature-space statistics of the linear-kernel HSIC against float64 NumPy."""

import jax
import numpy as np
import pytest

from platonic_jax import _hsic


@pytest.mark.parametrize("d", [8, 300, 1024, 2100])
def test_symmetric_rows_dot_matches_float64_and_is_symmetric(rng, d):
  # One block (D < 512), uneven blocks (300 -> 2, 2100 -> 8), even blocks (1024 -> 4).
  x = rng.standard_normal((64, d)).astype(np.float32)
  got = np.asarray(jax.jit(_hsic.symmetric_rows_dot)(x))
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(got, x64.T @ x64, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(got, got.T)


def test_linear_stats_match_float64(rng):
  x = rng.standard_normal((200, 300)).astype(np.float32)
  y = rng.standard_normal((200, 40)).astype(np.float32) + 3.0
  stats = jax.jit(_hsic.linear_stats)(x, y)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  r, q = np.sum(x64 ** 2, axis=1), np.sum(y64 ** 2, axis=1)
  expected = {
      "xy": x64.T @ y64, "xx": x64.T @ x64, "yy": y64.T @ y64, "sx": x64.sum(0), "sy": y64.sum(0),
      "xr": x64.T @ r, "xq": x64.T @ q, "yr": y64.T @ r, "yq": y64.T @ q,
      "sum_r": r.sum(), "sum_q": q.sum(), "rq": r @ q, "rr": r @ r, "qq": q @ q}
  assert set(expected) == set(stats._fields)
  for name, value in expected.items():
    np.testing.assert_allclose(getattr(stats, name), value, rtol=2e-5,
                               atol=1e-5 * np.abs(value).max(), err_msg=name)
