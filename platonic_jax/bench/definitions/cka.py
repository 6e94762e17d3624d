"""CKA benchmarks: streaming linear CKA (biased and unbiased) and tiled RBF CKA.

  python scripts/bench.py --filter='cka/*' --sizes=small --output=/tmp/cka.jsonl

Expected on the 2-core CPU (cpu preset): unbiased linear CKA at N = 1,000,000,
D = 1024 in 1.13-1.23x the computed floor of its three D x D products (eight
published runs), level with or faster than those three plain products alone
(`gemm_only`), since X'X and Y'Y use their symmetry (BUILD_NOTES "Linear CKA
on CPU"); the reference-style dense path (N x N Grams and an O(N^3) product)
stops at N = 8192.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import platonic_jax as pj
from platonic_jax.bench.definitions import common, torch_reference
from platonic_jax.bench import Benchmark, Implementation, register_benchmark


def _setup(params):
  return common.correlated_features(2, n=params["n"], da=params["d"], db=params["d"],
                                    normalize=False)


def _linear_ours(unbiased):
  def build(params):
    mesh = common.mesh_for(params)
    return lambda a, b: pj.cka(a, b, unbiased=unbiased, mesh=mesh)
  return build


def _linear_dense_reference(unbiased):
  def build(params):
    def fn(a, b):
      k, l = a @ a.T, b @ b.T
      hsic = common.reference_style_hsic_unbiased if unbiased else _reference_hsic_biased
      return hsic(k, l) / (jnp.sqrt(hsic(k, k) * hsic(l, l)) + 1e-6)
    return common.full_float32(fn)
  return build


def _reference_hsic_biased(k, l):
  """The reference's tr(K H L H) with explicit N x N products."""
  n = k.shape[0]
  h = jnp.eye(n) - 1.0 / n
  return jnp.trace(k @ h @ l @ h)


def _linear_numpy_f64(unbiased):
  def build(params):
    def fn(a, b):
      a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
      k, l = a @ a.T, b @ b.T
      def hsic(k, l):
        n = k.shape[0]
        if not unbiased:
          h = np.eye(n) - 1.0 / n
          return np.trace(k @ h @ l @ h)
        kt, lt = k.copy(), l.copy()
        np.fill_diagonal(kt, 0)
        np.fill_diagonal(lt, 0)
        return ((np.sum(kt * lt.T) + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
                 - 2 * np.sum(kt @ lt) / (n - 2)) / (n * (n - 3)))
      return hsic(k, l) / (np.sqrt(hsic(k, k) * hsic(l, l)) + 1e-6)
    return fn
  return build


def _gemm_only(params):
  """The three D x D products alone (what the streaming statistics cost at least)."""
  hp = jax.lax.Precision.HIGHEST
  return lambda a, b: (jnp.dot(a.T, a, precision=hp), jnp.dot(b.T, b, precision=hp),
                       jnp.dot(a.T, b, precision=hp))


def _three_product_flops(params):
  return 3 * 2.0 * params["n"] * params["d"] ** 2


def _cubic(params, count):
  return count * 2.0 * params["n"] ** 3


_N2 = lambda params: float(params["n"]) ** 2

_LINEAR_SIZES = {
    "small": [{"n": n, "d": 64, "devices": 1} for n in (512, 2048)],
    "cpu": ([{"n": n, "d": 1024, "devices": 1} for n in (2048, 8192, 65536, 262144, 1_000_000)]),
    "gpu": ([{"n": n, "d": 1024, "devices": 1} for n in (65536, 1_000_000)]
            + [{"n": n, "d": 512, "devices": 1} for n in (1_000_000, 10_000_000)]),
}

for _unbiased in (False, True):
  register_benchmark(Benchmark(
      name=f"cka/linear/{'unbiased' if _unbiased else 'biased'}",
      description=__doc__,
      sizes=_LINEAR_SIZES,
      setup=_setup,
      implementations=[
          Implementation("ours", _linear_ours(_unbiased), unavailable=common.too_many_devices,
                         work_flops=_three_product_flops),
          Implementation("dense_reference", _linear_dense_reference(_unbiased),
                         memory_bytes=lambda p: 8 * common.F32 * _N2(p),
                         work_flops=lambda p: common.gram_flops(p) * 2 + _cubic(p, 6)),
          Implementation("numpy_f64", _linear_numpy_f64(_unbiased), jit=False,
                         memory_bytes=lambda p: 8 * 8 * _N2(p),
                         work_flops=lambda p: 2 * (common.gram_flops(p) * 2 + _cubic(p, 6))),
          Implementation("gemm_only", _gemm_only, work_flops=_three_product_flops),
          Implementation("torch_reference", torch_reference.cka_build(_unbiased), jit=False,
                         unavailable=torch_reference.unavailable,
                         memory_bytes=torch_reference.cka_memory,
                         work_flops=torch_reference.cka_flops(_unbiased)),
      ],
      floor_flops=_three_product_flops,
      alignment=lambda out, p, impl: {} if impl == "gemm_only" else {"cka": out},
  ))


def _rbf_ours(params):
  return lambda a, b: pj.unbiased_cka(a, b, kernel="rbf", sigma="median", method="tiled")


def _rbf_gram(params):
  return lambda a, b: pj.unbiased_cka(a, b, kernel="rbf", sigma="median", method="gram")


register_benchmark(Benchmark(
    name="cka/rbf/unbiased",
    description="""Unbiased RBF CKA (median-heuristic bandwidths): tiled vs N x N Grams.

  python scripts/bench.py --filter='cka/rbf/*' --sizes=small

Expected: the same score; the tiled path holds O(tile^2 + N) memory where the
Gram path holds several N x N matrices, and is faster from N of a few thousand.
""",
    sizes={
        "small": [{"n": n, "d": 64} for n in (512, 2048)],
        "cpu": [{"n": n, "d": 256} for n in (4096, 16384, 32768)],
        "gpu": [{"n": n, "d": 1024} for n in (16384, 65536, 262144)],
    },
    setup=lambda p: common.correlated_features(3, n=p["n"], da=p["d"], db=p["d"],
                                               normalize=False),
    implementations=[
        Implementation("ours", _rbf_ours, work_flops=lambda p: common.gram_flops(p)),
        Implementation("dense_gram", _rbf_gram, memory_bytes=lambda p: 8 * common.F32 * _N2(p),
                       work_flops=lambda p: 2 * common.gram_flops(p)),
    ],
    floor_flops=lambda p: 2 * common.gram_flops(p),
    alignment=lambda out, p, impl: {"unbiased_cka_rbf": out},
))
