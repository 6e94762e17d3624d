"""kNN benchmarks: mutual kNN end to end, and the neighbour search alone.

  python scripts/bench.py --filter='knn/*' --sizes=small --output=/tmp/knn.jsonl

Expected on the 2-core CPU (cpu preset; the published run in
benchmarks/results/cpu.md and the six before it, BUILD_NOTES "kNN on
CPU"): ours takes 0.61-0.71x the computed GEMM floor at N = 16384, D = 1024
(two Grams at the machine's GEMM rate) and 0.72-1.15x at D = 256 from
N = 16384; against FAISS IndexFlatIP in its fastest OpenBLAS setting it is
1.3-1.9x faster from N = 4096 at D = 1024 and 1.5-1.95x from N = 65536 at
D = 256, 1.1-1.85x at 16384 x 256 and 32768 x 256, and 0.97-1.51x at
N = 1024, the rows that move most with the host's state. On a 2-core
EPYC of x86 family 25 (benchmarks/results/cpu-family25-knn.md, GEMMs 2.5x
slower): 1.42-2.06x FAISS on every row, 0.54-0.61x the floor at
16384 x 1024 in three runs (the published one, at c76925a: 1.50-2.01x,
0.601x). The dense reference-style path and the torch reference run
out of memory past N = 16384. All implementations give the same mutual_knn
up to tie-breaking.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

import platonic_jax as pj
from platonic_jax.bench.definitions import common, torch_reference
from platonic_jax.bench import Benchmark, Implementation, register_benchmark


def _setup(params):
  return common.correlated_features(0, n=params["n"], da=params["d"], db=params["d"])


def _ours(params):
  mesh = common.mesh_for(params)
  return lambda a, b: pj.mutual_knn(a, b, params["k"], precision=params["precision"], mesh=mesh)


def _pallas(params):
  """mutual kNN over the fused Pallas search (`knn(method='pallas')`), to time it on GPUs."""
  k, precision = params["k"], params["precision"]
  return lambda a, b: pj.mutual_knn_from_indices(pj.knn(a, k, precision=precision, method="pallas"),
                                                 pj.knn(b, k, precision=precision, method="pallas"))


def _interpreted_on_cpu(params):
  del params
  return ("Pallas runs in interpret mode on CPU (for tests, not timing)"
          if jax.default_backend() == "cpu" else None)


def _dense_reference(params):
  def fn(a, b):
    ma = common.reference_style_mask(common.reference_style_knn(a, params["k"]))
    mb = common.reference_style_mask(common.reference_style_knn(b, params["k"]))
    return jnp.mean(jnp.sum(ma * mb, axis=1) / params["k"])
  return common.full_float32(fn)


def _numpy_f64(params):
  k = params["k"]
  return lambda a, b: common.mutual_from_indices_numpy(common.numpy_knn_f64(a, k),
                                                       common.numpy_knn_f64(b, k))


def _faiss(params):
  k = params["k"]
  return lambda a, b: common.mutual_from_indices_numpy(common.faiss_knn(a, k),
                                                       common.faiss_knn(b, k))


def _gemm_only(params):
  """The two N x N Grams alone, outputs materialised (memory-bound at small N)."""
  hp = jax.lax.Precision.HIGHEST
  return lambda a, b: (jnp.dot(a, a.T, precision=hp), jnp.dot(b, b.T, precision=hp))


def _sort_work(params):
  n = params["n"]
  return 2 * (2.0 * n * n * params["d"] + 30.0 * n * n * math.log2(n))


_N2 = lambda params: float(params["n"]) ** 2

SIZES_CPU = ([{"n": n, "d": 1024, "k": 10, "precision": "highest", "devices": 1}
              for n in (1024, 4096, 16384)]
             + [{"n": n, "d": 256, "k": 10, "precision": "highest", "devices": 1}
                for n in (16384, 32768, 65536, 131072)])
SIZES_GPU = ([{"n": n, "d": 1024, "k": 10, "precision": "highest", "devices": 1}
              for n in (16384, 65536, 262144)]
             + [{"n": n, "d": 1024, "k": 10, "precision": p, "devices": 1}
                for n in (262144, 1_000_000) for p in ("default", "bfloat16")])

register_benchmark(Benchmark(
    name="knn/mutual",
    description=__doc__,
    sizes={
        "small": [{"n": n, "d": 64, "k": 10, "precision": "highest", "devices": 1}
                  for n in (256, 512)],
        "cpu": SIZES_CPU,
        "gpu": SIZES_GPU,
    },
    setup=_setup,
    implementations=[
        Implementation("ours", _ours, unavailable=common.too_many_devices,
                       work_flops=lambda p: 2 * 0.5 * common.gram_flops(p)),
        Implementation("pallas", _pallas, unavailable=_interpreted_on_cpu,
                       work_flops=lambda p: 2 * common.gram_flops(p)),
        Implementation("dense_reference", _dense_reference,
                       memory_bytes=lambda p: 5 * common.F32 * _N2(p), work_flops=_sort_work),
        Implementation("numpy_f64", _numpy_f64, jit=False,
                       memory_bytes=lambda p: 3 * 8 * _N2(p),
                       work_flops=lambda p: 4 * 2 * common.gram_flops(p)),
        Implementation("faiss_flat_ip", _faiss, jit=False, unavailable=common.missing_module("faiss"),
                       memory_bytes=lambda p: 0, work_flops=lambda p: 2 * common.gram_flops(p)),
        Implementation("gemm_only", _gemm_only, memory_bytes=lambda p: 2 * common.F32 * _N2(p),
                       work_flops=lambda p: 2 * common.gram_flops(p)),
        Implementation("torch_reference", torch_reference.mutual_knn_build, jit=False,
                       unavailable=torch_reference.unavailable,
                       memory_bytes=torch_reference.mutual_knn_memory,
                       work_flops=torch_reference.mutual_knn_flops),
    ],
    floor_flops=lambda p: 2 * common.gram_flops(p),
    alignment=lambda out, p, impl: {} if impl == "gemm_only" else {"mutual_knn": out},
))


def _recall_setup(params):
  a, _ = common.correlated_features(1, n=params["n"], da=params["d"], db=8)
  exact = pj.knn(a, params["k"], precision="highest")
  return a, exact


def _recall(params):
  def fn(a, exact):
    found = pj.knn(a, params["k"], precision=params["precision"],
                   approx_recall=params.get("approx_recall"))
    hits = jnp.sum(found[:, :, None] == exact[:, None, :], axis=(1, 2))
    return jnp.mean(hits / params["k"])
  return fn


register_benchmark(Benchmark(
    name="knn/precision",
    description="""Neighbour search at each precision, and its recall against exact float32.

  python scripts/bench.py --filter='knn/precision' --sizes=gpu

Expected: recall 1.0 for 'highest' everywhere and for 'default' on CPU; on
NVIDIA GPUs 'default' (TF32) and 'bfloat16' trade recall for speed. The gpu
preset also times `approx_recall=0.95` (`lax.approx_max_k`, approximate on
TPU only; on GPU XLA falls back to an exact selection).
""",
    sizes={
        "small": [{"n": 512, "d": 64, "k": 10, "precision": p}
                  for p in ("highest", "default", "bfloat16")],
        "cpu": [{"n": 16384, "d": 256, "k": 10, "precision": p}
                for p in ("highest", "default", "bfloat16")],
        # approx_recall: `lax.approx_max_k` per tile (approximate on TPU only).
        "gpu": [{"n": 262144, "d": 1024, "k": 10, "precision": p}
                for p in ("highest", "default", "bfloat16")]
               + [{"n": 262144, "d": 1024, "k": 10, "precision": "highest",
                   "approx_recall": 0.95}],
    },
    setup=_recall_setup,
    implementations=[Implementation("ours", _recall, work_flops=lambda p: 0.5 * common.gram_flops(p))],
    floor_flops=common.gram_flops,
    alignment=lambda out, p, impl: {"recall_vs_highest": out},
))
