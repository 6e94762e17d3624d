"""The PyTorch baseline (the reference's own algorithms) agrees with our metrics."""

import subprocess
import sys

import numpy as np
import pytest

import platonic_jax as pj
from platonic_jax import bench
import platonic_jax.bench.definitions  # noqa: F401  (registers the benchmarks)
import reference
from conftest import correlated_pair


def test_library_never_imports_torch():
  code = ("import sys, platonic_jax, platonic_jax.bench.definitions; "
          "sys.exit('torch' in sys.modules)")
  assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_torch_reference_is_registered_beside_ours():
  for name in ("knn/mutual", "cka/linear/biased", "cka/linear/unbiased", "cknna"):
    implementations = {i.name for i in bench.get_benchmark(name).implementations}
    assert {"ours", "torch_reference"} <= implementations, name


@pytest.fixture(scope="module")
def torch_reference():
  pytest.importorskip("torch")
  from platonic_jax.bench.definitions import torch_reference  # pylint: disable=import-outside-toplevel
  return torch_reference


def test_mutual_knn_agrees(torch_reference, rng):
  a, b = correlated_pair(rng, 96, 8, 12)
  got = torch_reference.mutual_knn_build({"k": 7})(a, b)
  np.testing.assert_allclose(got, float(pj.mutual_knn(a, b, 7)), atol=1e-6)
  np.testing.assert_allclose(got, reference.mutual_knn(a, b, 7), atol=1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_agrees(torch_reference, rng, unbiased):
  a, b = correlated_pair(rng, 64, 6, 9)
  got = torch_reference.cka_build(unbiased)({})(a, b)
  np.testing.assert_allclose(got, float(pj.cka(a, b, unbiased=unbiased)), atol=1e-4)


def test_cknna_agrees(torch_reference, rng):
  a, b = correlated_pair(rng, 80, 6, 9)
  got = torch_reference.cknna_build({"k": 6})(a, b)
  np.testing.assert_allclose(got, float(pj.cknna(a, b, 6)), atol=1e-4)


def test_jax_inputs_convert_without_warnings(torch_reference):
  # torch warns once per process about read-only NumPy views (a JAX array's
  # host memory), so the check runs in a fresh process with warnings as errors.
  del torch_reference
  code = ("import jax.numpy as jnp; "
          "from platonic_jax.bench.definitions import torch_reference as t; "
          "t.mutual_knn_build({'k': 2})(jnp.eye(6), jnp.eye(6))")
  result = subprocess.run([sys.executable, "-W", "error", "-c", code], check=False,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
