"""Argument checks shared by every public kernel.

Checks that depend only on shapes run at trace time, so they also fire under
`jax.jit` and `jax.vmap`. Checks that need values (NaN/Inf, zero-norm rows) run
only on concrete arrays: a traced value cannot be inspected without a host
round trip, and the kernels are meant to be traced.
"""

from __future__ import annotations

import difflib

import numpy as np
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


_TRACER = getattr(jax.core, "Tracer", None)
if _TRACER is None:  # pragma: no cover - newer JAX keeps it private
  from jax._src.core import Tracer as _TRACER  # pylint: disable=g-import-not-at-top


def is_concrete(x) -> bool:
  """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, _TRACER)


def all_finite(x) -> bool:
  """Whether concrete `x` has no NaN/Inf; evaluated eagerly even while tracing."""
  if isinstance(x, np.ndarray):
    return bool(np.isfinite(x).all())
  with jax.ensure_compile_time_eval():
    return bool(jnp.isfinite(x).all())


def constant_over_samples(x: jax.Array) -> jax.Array:
  """Traceable: True when every row of `x` equals the first (no sample varies)."""
  return jnp.all(x == x[:1])


def reject_constant(x: jax.Array, name: str) -> None:
  """Raises for concrete `x` whose rows are all equal: every similarity ties."""
  if is_concrete(x):
    with jax.ensure_compile_time_eval():
      constant = bool(constant_over_samples(x))
    if constant:
      raise ValueError(
          f"`{name}` is constant over samples (all rows equal): every pairwise similarity "
          f"ties, so its nearest neighbours would be arbitrary.")


def _float_dtype(dtype, name: str):
  dtype = np.dtype(dtype) if not hasattr(dtype, "itemsize") else dtype
  if jnp.issubdtype(dtype, jnp.floating):
    # bf16/f16 inputs are computed in float32; the metrics are sums over N^2 terms.
    return jnp.promote_types(dtype, jnp.float32)
  if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
    return jnp.dtype(jnp.float32)
  raise ValueError(
      f"`{name}` must have a real numeric dtype (float, int or bool), got {dtype}."
  )


def features(x: ArrayLike, name: str, *, check_finite: bool = True) -> jax.Array:
  """Returns `x` as a floating `[N, D]` array, or raises ValueError naming `name`."""
  if not isinstance(x, (jax.Array, np.ndarray)):
    try:
      x = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument's name
      raise ValueError(f"`{name}` must be an array, got {type(x).__name__}.") from e
  dtype = _float_dtype(x.dtype, name)
  if x.ndim != 2:
    raise ValueError(
        f"`{name}` must be a rank-2 array [N, D] (samples x features), got shape "
        f"{tuple(x.shape)} (rank {x.ndim})."
    )
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"`{name}` is empty: shape {tuple(x.shape)}; need N >= 1 and D >= 1.")
  if check_finite and is_concrete(x) and not all_finite(x):
      raise ValueError(f"`{name}` contains NaN or Inf values.")
  return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(dtype))


def feature_pair(a: ArrayLike, b: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Validates two feature matrices describing the same N samples."""
  a = features(a, "a")
  b = features(b, "b")
  if a.shape[0] != b.shape[0]:
    raise ValueError(
        f"`a` and `b` must have the same number of samples (rows): got N={a.shape[0]} for "
        f"`a` and N={b.shape[0]} for `b`."
    )
  dtype = jnp.promote_types(a.dtype, b.dtype)
  return a.astype(dtype), b.astype(dtype)


def neighbour_count(k, n: int, *, minimum: int = 1, name: str = "k") -> int:
  """Checks `minimum <= k <= n - 1` (self is excluded, so at most N - 1 neighbours)."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(f"`{name}` must be a Python int (a static hyper-parameter), got {k!r}.")
  k = int(k)
  if k < minimum or k >= n:
    raise ValueError(
        f"`{name}` must satisfy {minimum} <= {name} <= N - 1 = {n - 1} (N = {n} samples, "
        f"self excluded), got {name}={k}."
    )
  return k


def min_samples(n: int, minimum: int, what: str) -> None:
  if n < minimum:
    raise ValueError(f"{what} needs at least N = {minimum} samples, got N = {n}.")


def lookup(registry: dict, name: str, what: str):
  """`registry[name]`, or a ValueError listing the close matches and every name."""
  try:
    return registry[name]
  except KeyError:
    folded = {key.lower(): key for key in registry}  # 'CKA' suggests 'cka'
    close = [folded[m] for m in difflib.get_close_matches(str(name).lower(), folded, n=3,
                                                          cutoff=0.5)]
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown {what} {name!r}.{hint} Registered: {', '.join(sorted(registry))}.") from None


def choice(value, options, name: str):
  if value not in options:
    raise ValueError(f"`{name}` must be one of {sorted(options)}, got {value!r}.")
  return value


def positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
  return int(value)
