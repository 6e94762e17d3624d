r"""Every registered alignment metric on built-in synthetic data, as a table.

Two "models" see the same N samples through a shared latent space plus
private noise; the shared fraction is `--shared`. Features go through
`prepare_features` (clamp at the 0.95 quantile, row L2 normalisation) as in
the PRH pipeline, then every metric in the registry is computed.

  python scripts/demo.py                 # N=2048, runs offline in seconds
  python scripts/demo.py --n=8192 --shared=0.2

Expected with the defaults (CPU, about 8 s): every value inside its range;
mutual_knn 0.41, cka 0.86, unbiased_cka 0.86, cknna 0.43. With independent
features (`--shared=0 --n=1024`) mutual_knn falls to 0.010 (chance is
k/(N-1)) and unbiased_cka to 0.001, while biased cka stays at 0.34: the
small-sample bias of the biased estimator.
"""

import time

from absl import flags
from absl import logging
import jax
import numpy as np

import platonic_jax as pj
from platonic_jax import bench

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 2048, "Samples.")
flags.DEFINE_integer("da", 384, "Width of model A's features.")
flags.DEFINE_integer("db", 768, "Width of model B's features.")
flags.DEFINE_integer("latent", 32, "Dimension of the shared latent space.")
flags.DEFINE_float("shared", 0.6, "Fraction of each feature's variance that is shared.")
flags.DEFINE_integer("k", 10, "Neighbours for the kNN metrics (PRH uses 10).")
flags.DEFINE_integer("cca_dim", 10, "SVCCA subspace size (capped at min(N - 1, Da, Db)).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def synthetic_pair(n, da, db, latent, shared, seed):
  """Features `[N, Da]`, `[N, Db]` that share a latent factor, heavy-tailed like real activations."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((n, latent))

  def view(d):
    signal = z @ rng.standard_normal((latent, d)) / np.sqrt(latent)
    noise = rng.standard_t(4, size=(n, d)) / np.sqrt(2.0)
    return (np.sqrt(shared) * signal + np.sqrt(1.0 - shared) * noise).astype(np.float32)

  return view(da), view(db)


def hyperparameters(name, k, cca_dim):
  keys = pj.get_metric(name).hyperparameters
  return {key: value for key, value in (("k", k), ("cca_dim", cca_dim)) if key in keys}


def main(argv):
  bench.reject_arguments(argv)
  logging.set_verbosity(logging.WARNING)  # hides JAX's "no TPU found" notice on CPU
  a, b = synthetic_pair(FLAGS.n, FLAGS.da, FLAGS.db, FLAGS.latent, FLAGS.shared, FLAGS.seed)
  a, b = pj.prepare_features(a), pj.prepare_features(b)
  print(f"platonic_jax {pj.__version__} on {jax.default_backend()} "
        f"({jax.devices()[0].device_kind}); N={FLAGS.n}, Da={FLAGS.da}, Db={FLAGS.db}, "
        f"k={FLAGS.k}, shared={FLAGS.shared}\n")
  print(f"| {'metric':<18} | {'value':>8} | {'range':<12} | {'first call s':>12} | "
        f"{'next call s':>11} |")
  print(f"|{'-' * 20}|{'-' * 10}|{'-' * 14}|{'-' * 14}|{'-' * 13}|")
  for name in pj.metric_names():
    kwargs = hyperparameters(name, FLAGS.k, min(FLAGS.cca_dim, FLAGS.n - 1, FLAGS.da, FLAGS.db))
    start = time.perf_counter()
    jax.block_until_ready(pj.measure(name, a, b, **kwargs))
    first = time.perf_counter() - start
    start = time.perf_counter()
    value = float(jax.block_until_ready(pj.measure(name, a, b, **kwargs)))
    again = time.perf_counter() - start
    low, high = pj.get_metric(name).range_for(**kwargs)
    print(f"| {name:<18} | {value:8.4f} | [{low:g}, {high:g}]{'':<{10 - len(f'{low:g}, {high:g}')}} | "
          f"{first:12.3f} | {again:11.3f} |")


if __name__ == "__main__":
  bench.run_script(main)
