"""Model zoo: best-layer mutual kNN between every pair of M models with L layers each.

  python scripts/bench.py --filter='zoo/*' --sizes=cpu --output=/tmp/zoo.jsonl

`ours` (`platonic_jax.zoo_alignment`) computes each (model, layer) kNN once:
M L kNN searches, then O(N k^2) per layer pair. The baseline recomputes both
kNN for every layer pair of every model pair (i <= j), as the reference's
`compute_alignment` does: M (M + 1) / 2 * L^2 * 2 searches; it is timed on a
sample of layer pairs and scaled up (the record says so). Expected on the
2-core CPU at M = L = 8, N = 4096: ours about 50-100x faster; the synthetic
zoo's alignment grows with model index and layer depth, by construction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import platonic_jax as pj
from platonic_jax.bench.definitions import common
from platonic_jax.bench import Benchmark, Implementation, register_benchmark

_SAMPLE_PAIRS = 8


@functools.partial(jax.jit, static_argnames=("m", "l", "n", "d"))
def zoo_features(seed, *, m: int, l: int, n: int, d: int, latent: int = 32):
  """`[M, L, N, D]` features sharing a latent factor more strongly in later layers and models."""
  key_z, key_rest = jax.random.split(jax.random.key(seed))
  z = jax.random.normal(key_z, (n, latent))
  shared = (jnp.arange(1, l + 1) / l)[None, :] * (0.3 + 0.6 * jnp.arange(m) / max(m - 1, 1))[:, None]
  keys = jax.random.split(key_rest, (m, l, 2))

  def layer(key_pair, s):
    w = jax.random.normal(key_pair[0], (latent, d)) / jnp.sqrt(latent)
    x = jnp.sqrt(s) * (z @ w) + jnp.sqrt(1 - s) * jax.random.normal(key_pair[1], (n, d))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)

  return (jax.vmap(jax.vmap(layer))(keys, shared),)


def _pairs(params):
  m, l = params["m"], params["l"]
  return [(i, j, a, b) for i in range(m) for j in range(i, m) for a in range(l) for b in range(l)]


def _sample(params):
  pairs = _pairs(params)
  chosen = np.round(np.linspace(0, len(pairs) - 1, _SAMPLE_PAIRS)).astype(int)
  return [pairs[c] for c in chosen]


def _ours(params):
  def fn(zoo):
    result = pj.zoo_alignment([zoo[i] for i in range(params["m"])], "mutual_knn", k=params["k"])
    return result.scores, result.best_layers
  return fn


def _recompute(params):
  sample = _sample(params)

  def fn(zoo):
    return jnp.stack([pj.mutual_knn(zoo[i, a], zoo[j, b], params["k"]) for i, j, a, b in sample])
  return fn


def _alignment(out, params, implementation):
  if implementation == "ours":
    scores, best = out
    off_diagonal = ~np.eye(params["m"], dtype=bool)
    return {"best_layer_mutual_knn": scores, "best_layers": best,
            "mean_off_diagonal": float(np.asarray(scores)[off_diagonal].mean())}
  return {"sampled_pairs": [list(p) for p in _sample(params)], "sampled_mutual_knn": out}


def _knn_flops(params, searches):
  return searches * 0.5 * common.gram_flops(params)


register_benchmark(Benchmark(
    name="zoo/all_pairs",
    description=__doc__,
    sizes={
        "small": [{"m": 3, "l": 3, "n": 256, "d": 32, "k": 10}],
        "cpu": [{"m": 8, "l": 8, "n": 4096, "d": 128, "k": 10}],
        "gpu": [{"m": 8, "l": 8, "n": 65536, "d": 512, "k": 10}],
    },
    setup=lambda p: zoo_features(5, m=p["m"], l=p["l"], n=p["n"], d=p["d"]),
    implementations=[
        Implementation("ours", _ours, jit=False,
                       work_flops=lambda p: _knn_flops(p, p["m"] * p["l"])),
        Implementation("recompute_per_pair", _recompute, jit=False,
                       work_flops=lambda p: _knn_flops(p, 2 * len(_pairs(p))),
                       sample=lambda p: (_SAMPLE_PAIRS, len(_pairs(p)))),
    ],
    flops=lambda p: _knn_flops(p, p["m"] * p["l"]),
    alignment=_alignment,
))
