"""The baseline users run today: the reference's own algorithms in PyTorch.

minyoungg/platonic-rep `metrics.py`, as its users run it: the full N x N
similarity matrix, a full `argsort` for the kNN, dense float masks, N x N
kernel matrices and the O(N^3) HSIC products, on the GPU when one is present
(else the CPU). Optional: torch comes with the `torch` extra
(`pip install 'platonic_jax[torch]'`) and is imported only when a benchmark
builds one of these implementations, never by the library.

Every `*_build(params)` returns `fn(a, b) -> float` taking host or JAX arrays.
Memory and work models (`*_memory`, `*_flops`) follow the reference's own
temporaries and products.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

F32 = 4


def unavailable(params) -> str | None:
  """`Implementation.unavailable` hook: a reason when torch is not installed."""
  del params
  return None if importlib.util.find_spec("torch") else (
      "torch is not installed (pip install 'platonic_jax[torch]')")


def _device():
  import torch  # pylint: disable=import-outside-toplevel
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _tensor(x):
  """A torch tensor on torch's device sharing `x`'s host memory where it can.

  A JAX array's host view is read-only; torch warns about that on every
  conversion, but the reference's functions never write into their inputs
  (they clone before `fill_diagonal_`), so the view is used without a copy
  that would add to the baseline's time.
  """
  import torch  # pylint: disable=import-outside-toplevel
  host = np.ascontiguousarray(np.asarray(x, np.float32))
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    return torch.from_numpy(host).to(_device())


def _sync():
  import torch  # pylint: disable=import-outside-toplevel
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def nearest_neighbours(feats, topk: int):
  """The reference's `compute_nearest_neighbors`: `[N, topk]` int64 (torch)."""
  return (feats @ feats.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]


def mutual_knn(feats_a, feats_b, topk: int) -> float:
  """The reference's `mutual_knn`: two N x N float masks, their product, a row mean."""
  import torch  # pylint: disable=import-outside-toplevel
  knn_a = nearest_neighbours(feats_a, topk)
  knn_b = nearest_neighbours(feats_b, topk)
  n = knn_a.shape[0]
  rows = torch.arange(n, device=knn_a.device).unsqueeze(1)
  mask_a = torch.zeros(n, n, device=knn_a.device)
  mask_b = torch.zeros(n, n, device=knn_a.device)
  mask_a[rows, knn_a] = 1.0
  mask_b[rows, knn_b] = 1.0
  return ((mask_a * mask_b).sum(dim=1) / topk).mean().item()


def hsic_unbiased(k, l):
  """The reference's unbiased HSIC (Song et al. 2012) with its O(N^3) K~ @ L~."""
  m = k.shape[0]
  k_tilde = k.clone().fill_diagonal_(0)
  l_tilde = l.clone().fill_diagonal_(0)
  value = ((k_tilde * l_tilde.T).sum()
           + k_tilde.sum() * l_tilde.sum() / ((m - 1) * (m - 2))
           - 2 * (k_tilde @ l_tilde).sum() / (m - 2))
  return value / (m * (m - 3))


def hsic_biased(k, l):
  """The reference's biased HSIC: tr(K H L H) with explicit N x N products."""
  import torch  # pylint: disable=import-outside-toplevel
  h = torch.eye(k.shape[0], dtype=k.dtype, device=k.device) - 1 / k.shape[0]
  return torch.trace(k @ h @ l @ h)


def cka(feats_a, feats_b, unbiased: bool) -> float:
  """The reference's linear ('ip') CKA."""
  import torch  # pylint: disable=import-outside-toplevel
  k = torch.mm(feats_a, feats_a.T)
  l = torch.mm(feats_b, feats_b.T)
  hsic = hsic_unbiased if unbiased else hsic_biased
  return (hsic(k, l) / (torch.sqrt(hsic(k, k) * hsic(l, l)) + 1e-6)).item()


def cknna(feats_a, feats_b, topk: int) -> float:
  """The reference's CKNNA (unbiased, distance-aware): `topk` masks of N x N kernels."""
  import torch  # pylint: disable=import-outside-toplevel
  n = feats_a.shape[0]
  k = feats_a @ feats_a.T
  l = feats_b @ feats_b.T

  def similarity(k, l):
    k_hat = k.clone().fill_diagonal_(float("-inf"))
    l_hat = l.clone().fill_diagonal_(float("-inf"))
    _, top_k = torch.topk(k_hat, topk, dim=1)
    _, top_l = torch.topk(l_hat, topk, dim=1)
    mask_k = torch.zeros(n, n, device=k.device).scatter_(1, top_k, 1)
    mask_l = torch.zeros(n, n, device=k.device).scatter_(1, top_l, 1)
    mask = mask_k * mask_l
    return hsic_unbiased(mask * k, mask * l)

  return (similarity(k, l) / (torch.sqrt(similarity(k, k) * similarity(l, l)) + 1e-6)).item()


def _timed_on_device(metric):
  """fn(a, b): copies the inputs to torch's device, runs `metric`, waits for it."""
  def fn(a, b):
    value = metric(_tensor(a), _tensor(b))
    _sync()
    return value
  return fn


def mutual_knn_build(params):
  return _timed_on_device(lambda a, b: mutual_knn(a, b, params["k"]))


def cka_build(unbiased: bool):
  return lambda params: _timed_on_device(lambda a, b: cka(a, b, unbiased))


def cknna_build(params):
  return _timed_on_device(lambda a, b: cknna(a, b, params["k"]))


def _n2(params) -> float:
  return float(params["n"]) ** 2


def mutual_knn_memory(params) -> float:
  """Gram (f32) and argsort output (int64, plus its sort temporaries) per side, two masks."""
  return (F32 + 3 * 8 + 3 * F32) * _n2(params)


def mutual_knn_flops(params) -> float:
  """Two Grams and two full N log N row sorts (about 30 flop-equivalents per comparison)."""
  n = params["n"]
  return 2 * (2.0 * n * n * params["d"] + 30.0 * n * n * np.log2(n))


def cka_memory(params) -> float:
  """K, L, the centring matrix or K~, L~, and two N x N product temporaries."""
  return 7 * F32 * _n2(params)


def cka_flops(unbiased: bool):
  """Two Grams, and per HSIC (three of them) one (unbiased) or three (biased) N^3 products."""
  def flops(params):
    n = params["n"]
    return 2 * 2.0 * n * n * params["d"] + 3 * (1 if unbiased else 3) * 2.0 * n ** 3
  return flops


def cknna_memory(params) -> float:
  """K, L, their masked copies, two masks, the masked kernels and the HSIC temporaries."""
  return 12 * F32 * _n2(params)


def cknna_flops(params) -> float:
  """Two Grams, six top-k passes, and one N^3 product per HSIC (three of them)."""
  n = params["n"]
  return 2 * 2.0 * n * n * params["d"] + 3 * 2.0 * n ** 3
