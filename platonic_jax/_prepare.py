"""Feature preparation used before every metric in the PRH pipeline."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from platonic_jax import _mesh, _validation


def clamp_quantile(x: jax.Array, q: float) -> jax.Array:
  """Clamps `x` to +-t, t the `q` quantile of |x| over the whole tensor.

  The quantile is taken the way the reference does it ("exact"): the element at
  index `int(q * x.size)` of the ascending sort of |x|, not an interpolation.
  `q >= 1` clamps nothing. Cost: O(S log S) for S = x.size elements (one sort).
  """
  if q >= 1.0:
    return x
  flat = jnp.sort(jnp.abs(x).reshape(-1))
  threshold = flat[int(q * flat.shape[0])]
  return jnp.clip(x, -threshold, threshold)


def prepare_features(
    x: Float[ArrayLike, "... n d"],
    *,
    q: float = 0.95,
    normalize: bool = True,
) -> Float[Array, "... n d"]:
  """Outlier clamp then row L2 normalisation, as the reference pipeline does.

  The reference (`measure_alignment.prepare_features` with `exact=True`, then
  `F.normalize` in `compute_score`) clamps every entry to +-t where t is the `q`
  quantile of |x| over the whole tensor (all layers at once when `x` is
  `[L, N, D]`), then divides each row by its L2 norm.

  Args:
    x: features `[N, D]`, or `[L, N, D]` for L layers of one model (the clamp
      threshold is shared by all layers, as in the reference).
    q: quantile in (0, 1]; 1 disables the clamp.
    normalize: divide each row by its L2 norm.

  Returns:
    Array of the same shape, float32 (or float64 when x64 is on).

  Raises:
    ValueError: rank < 2, empty, NaN/Inf, q outside (0, 1], or a zero-norm row
      when `normalize` is set (checked on concrete inputs; under `jit` a zero
      row stays zero, as `F.normalize` leaves it).

  Cost: O(S log S) time and O(S) memory for S = x.size.
  """
  if not 0.0 < q <= 1.0:
    raise ValueError(f"`q` must be in (0, 1], got {q}.")
  arr = jnp.asarray(x) if not hasattr(x, "ndim") else x
  if arr.ndim < 2:
    raise ValueError(
        f"`x` must be [N, D] or [L, N, D], got shape {tuple(arr.shape)} (rank {arr.ndim})."
    )
  _validation.features(arr.reshape(-1, arr.shape[-1]) if arr.ndim > 2 else arr, "x")
  x = jnp.asarray(arr, dtype=jnp.promote_types(arr.dtype, jnp.float32))
  place = _mesh.placement([x], shard=False)
  out = place.run(lambda _, x: clamp_quantile(x, q), x, out_specs=_mesh.spec_of(x))
  if not normalize:
    return out
  norms = jnp.linalg.norm(out, axis=-1, keepdims=True)
  if _validation.is_concrete(norms):
    with jax.ensure_compile_time_eval():
      zero_rows = np.argwhere(np.asarray(norms[..., 0]) == 0)
    if zero_rows.shape[0]:
      raise ValueError(
          f"`x` has {zero_rows.shape[0]} zero-norm row(s) (first at index "
          f"{tuple(int(i) for i in zero_rows[0])}); they cannot be L2-normalised."
      )
  return out / jnp.maximum(norms, 1e-12)
