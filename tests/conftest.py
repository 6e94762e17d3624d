"""Shared fixtures. Hypothesis runs few examples: every new shape is a new XLA compile.

The CPU is split into 8 simulated devices before JAX starts, so the sharded
paths run in every test session (single-device code uses device 0).
"""

import os
import zlib

import hypothesis
import jax
import numpy as np
import pytest

jax.config.update("jax_num_cpu_devices", 8)

hypothesis.settings.register_profile(
    "ci", max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "12")), deadline=None,
    derandomize=False, print_blob=True)
hypothesis.settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
  """Drops each module's compiled executables: one process runs every test file."""
  yield
  jax.clear_caches()


@pytest.fixture
def rng(request):
  """A fresh generator per test, seeded from the test's name so failures reproduce."""
  return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def correlated_pair(rng, n, da, db, noise=1.0, dtype=np.float32):
  """Two feature sets that share structure, so metrics land away from their extremes."""
  a = rng.standard_normal((n, da))
  b = a @ rng.standard_normal((da, db)) / np.sqrt(da) + noise * rng.standard_normal((n, db))
  return a.astype(dtype), b.astype(dtype)


def assert_same_neighbours(ours, x, expected, atol=1e-5):
  """Neighbour lists equal, except where float32 rounding reorders near-ties.

  A position may differ only if the float64 similarities of the two choices
  agree within `atol` (relative to the row's largest similarity).
  """
  ours = np.asarray(ours)
  expected = np.asarray(expected)
  assert ours.shape == expected.shape
  differ = ours != expected
  if not differ.any():
    return
  x = np.asarray(x, np.float64)
  rows = np.nonzero(differ)[0]
  s_ours = np.einsum("id,id->i", x[rows], x[ours[differ]])
  s_expected = np.einsum("id,id->i", x[rows], x[expected[differ]])
  scale = np.abs(x[rows]).sum(1) * np.abs(x).max()
  np.testing.assert_array_less(np.abs(s_ours - s_expected), atol * scale + 1e-12,
                               err_msg=f"{differ.sum()} neighbour(s) differ beyond rounding")
