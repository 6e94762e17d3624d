"""Inputs and helpers shared by the benchmark definitions."""

from __future__ import annotations

import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

F32 = 4


def _block_rows(n: int, largest: int = 65536) -> int:
  """The largest divisor of n that is at most `largest` (rows per generated block)."""
  return max(b for b in range(1, min(n, largest) + 1) if n % b == 0)


@functools.partial(jax.jit, static_argnames=("n", "da", "db", "latent", "normalize"))
def correlated_features(seed, *, n: int, da: int, db: int, latent: int = 32,
                        shared: float = 0.6, normalize: bool = True):
  """Two views `[n, da]`, `[n, db]` of a shared latent factor plus private noise.

  Built on the device in one jitted call, block by block, so the peak memory
  is the two outputs plus one block of temporaries (N = 1,000,000 x 1024 fits
  a 24 GiB host). Rows L2-normalised like `prepare_features` output when
  `normalize`.
  """
  key = jax.random.key(seed)
  key_wa, key_wb, key_rows = jax.random.split(key, 3)
  w_a = jax.random.normal(key_wa, (latent, da)) / jnp.sqrt(latent)
  w_b = jax.random.normal(key_wb, (latent, db)) / jnp.sqrt(latent)
  rows = _block_rows(n)

  def view(z, w, key_noise):
    x = jnp.sqrt(shared) * (z @ w) + jnp.sqrt(1 - shared) * jax.random.normal(
        key_noise, (rows, w.shape[1]))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True) if normalize else x

  def block(i):
    key_z, key_a, key_b = jax.random.split(jax.random.fold_in(key_rows, i), 3)
    z = jax.random.normal(key_z, (rows, latent))
    return view(z, w_a, key_a), view(z, w_b, key_b)

  a, b = jax.lax.map(block, jnp.arange(n // rows))
  return a.reshape(n, da), b.reshape(n, db)


def gram_flops(params) -> float:
  """One full N x N Gram of D-dimensional rows: 2 N^2 D."""
  return 2.0 * params["n"] ** 2 * params["d"]


def missing_module(name: str):
  """`unavailable` hook: a reason when an optional package is not installed."""
  return lambda params: None if importlib.util.find_spec(name) else (
      f"{name} is not installed (pip install 'platonic_jax[bench]')")


def too_many_devices(params):
  wanted = params.get("devices", 1)
  return None if wanted <= jax.device_count() else (
      f"needs {wanted} devices, {jax.device_count()} present")


def mesh_for(params):
  """A 1-D mesh over the first `devices` devices, or None for one device."""
  count = params.get("devices", 1)
  return None if count == 1 else Mesh(np.array(jax.devices()[:count]), ("data",))


def full_float32(fn):
  """Traces `fn` with float32-exact matmuls (the reference's `--precise` mode), on GPU too."""
  def wrapped(*args):
    with jax.default_matmul_precision("highest"):
      return fn(*args)
  return wrapped


def reference_style_knn(x, k):
  """kNN the way the reference computes it: full similarity, -1e8 diagonal, full sort."""
  s = x @ x.T
  s = jnp.where(jnp.eye(x.shape[0], dtype=bool), -1e8, s)
  return jnp.argsort(-s, axis=1)[:, :k]


def reference_style_mask(index):
  """The reference's float N x N mask with ones at each row's neighbours."""
  n = index.shape[0]
  return jnp.zeros((n, n), jnp.float32).at[jnp.arange(n)[:, None], index].set(1.0)


def reference_style_hsic_unbiased(k, l):
  """The reference's unbiased HSIC, including its O(N^3) K~ @ L~ product."""
  n = k.shape[0]
  kt = jnp.where(jnp.eye(n, dtype=bool), 0.0, k)
  lt = jnp.where(jnp.eye(n, dtype=bool), 0.0, l)
  value = (jnp.sum(kt * lt.T) + jnp.sum(kt) * jnp.sum(lt) / ((n - 1) * (n - 2))
           - 2 * jnp.sum(kt @ lt) / (n - 2))
  return value / (n * (n - 3))


def numpy_knn_f64(x, k):
  """Float64 NumPy kNN: Gram, masked diagonal, argpartition then an exact sort of the k."""
  x = np.asarray(x, np.float64)
  s = x @ x.T
  np.fill_diagonal(s, -np.inf)
  part = np.argpartition(-s, k, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
  return np.take_along_axis(part, order, 1)


def faiss_knn(x, k):
  """Exact brute-force kNN with FAISS IndexFlatIP (tiled GEMM + k-selection), self removed."""
  import faiss  # pylint: disable=import-outside-toplevel
  x = np.ascontiguousarray(np.asarray(x, np.float32))
  index = faiss.IndexFlatIP(x.shape[1])
  index.add(x)
  _, found = index.search(x, k + 1)
  not_self = found != np.arange(x.shape[0])[:, None]
  # Keep the first k entries that are not the query itself (it is usually first).
  order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(found, order, 1)


def mutual_from_indices_numpy(ia, ib):
  """Mean |ia(i) & ib(i)| / k; rows hold distinct indices, so shared ones sort adjacent."""
  merged = np.sort(np.concatenate([ia, ib], axis=1), axis=1)
  return float(np.mean(np.sum(merged[:, 1:] == merged[:, :-1], axis=1)) / ia.shape[1])
