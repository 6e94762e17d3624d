"""CKNNA: O(N k) masked HSIC from neighbour lists vs the reference's N x N masks.

  python scripts/bench.py --filter='cknna' --sizes=small --output=/tmp/cknna.jsonl

Expected: the same score; ours costs two tiled kNN (about one Gram of GEMM
work) while the reference-style path also forms N x N masks and an O(N^3)
product, and stops at N = 8192 on the 2-core CPU.
"""

from __future__ import annotations

import jax.numpy as jnp

import platonic_jax as pj
from platonic_jax.bench.definitions import common, torch_reference
from platonic_jax.bench import Benchmark, Implementation, register_benchmark


def _ours(params):
  mesh = common.mesh_for(params)
  return lambda a, b: pj.cknna(a, b, params["k"], mesh=mesh)


def _dense_reference(params):
  k = params["k"]

  def fn(a, b):
    kk, ll = a @ a.T, b @ b.T

    def similarity(x, y):
      n = x.shape[0]
      eye = jnp.eye(n, dtype=bool)
      mask = (common.reference_style_mask(jnp.argsort(-jnp.where(eye, -jnp.inf, x), 1)[:, :k])
              * common.reference_style_mask(jnp.argsort(-jnp.where(eye, -jnp.inf, y), 1)[:, :k]))
      return common.reference_style_hsic_unbiased(mask * x, mask * y)

    return similarity(kk, ll) / (jnp.sqrt(similarity(kk, kk) * similarity(ll, ll)) + 1e-6)
  return common.full_float32(fn)


_N2 = lambda params: float(params["n"]) ** 2

register_benchmark(Benchmark(
    name="cknna",
    description=__doc__,
    sizes={
        "small": [{"n": n, "d": 64, "k": 10, "devices": 1} for n in (256, 1024)],
        "cpu": [{"n": n, "d": 1024, "k": 10, "devices": 1} for n in (1024, 4096, 8192, 16384)],
        "gpu": [{"n": n, "d": 1024, "k": 10, "devices": 1} for n in (16384, 65536, 262144)],
    },
    setup=lambda p: common.correlated_features(4, n=p["n"], da=p["d"], db=p["d"]),
    implementations=[
        Implementation("ours", _ours, unavailable=common.too_many_devices,
                       work_flops=common.gram_flops),
        Implementation("dense_reference", _dense_reference,
                       memory_bytes=lambda p: 10 * common.F32 * _N2(p),
                       work_flops=lambda p: 2 * common.gram_flops(p) + 6 * 2.0 * p["n"] ** 3),
        Implementation("torch_reference", torch_reference.cknna_build, jit=False,
                       unavailable=torch_reference.unavailable,
                       memory_bytes=torch_reference.cknna_memory,
                       work_flops=torch_reference.cknna_flops),
    ],
    floor_flops=lambda p: 2 * common.gram_flops(p),
    alignment=lambda out, p, impl: {"cknna": out},
))
