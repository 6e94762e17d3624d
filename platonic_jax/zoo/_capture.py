"""Every layer's output, captured without editing the model, pooled to `[B, D]`.

NNX modules are run under `nnx.capture(..., method_outputs=nnx.Intermediate)`,
which sows the output of every public method (and `__call__`) of every
submodule for the duration of one call; Linen modules under
`apply(..., capture_intermediates=...)`. A captured output is named by its
module path and method, '/'-joined ('blocks/0/__call__'; the root's is
'__call__'), and pooled to `[B, D]`:

  [B, D]           kept as is;
  [B, T, D]        token 0 (`token_pooling='cls'`) or the mean over tokens,
                   restricted to `mask` `[B, T]` when one is given ('mean');
  [B, H, W, C]     mean over the positions (any rank > 3: mean over the middle axes).

Cost: one forward pass; memory holds every captured output of the batch until
pooled (under `jax.jit` only the selected outputs survive).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax import traverse_util
from jaxtyping import Array, Float

TOKEN_POOLINGS = ("mean", "cls")


def pool_output(y: jax.Array, *, token_pooling: str = "mean",
                mask: jax.Array | None = None) -> Float[Array, "B D"]:
  """Pools one layer's output `[B, ...]` to `[B, D]` (see the module docstring).

  Args:
    y: `[B, D]`, `[B, T, D]` or `[B, H, W, C]` (or higher rank).
    token_pooling: 'mean' or 'cls', for rank-3 outputs.
    mask: optional bool `[B, T]`, True at the tokens to average (rank-3 'mean' only).

  Returns:
    float32 `[B, D]`.
  """
  if token_pooling not in TOKEN_POOLINGS:
    raise ValueError(f"`token_pooling` must be one of {TOKEN_POOLINGS}, got {token_pooling!r}.")
  y = jnp.asarray(y)
  if y.ndim < 2:
    raise ValueError(f"a layer output must be [B, ...] with rank >= 2, got shape {y.shape}.")
  y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  if y.ndim == 2:
    return y
  if y.ndim == 3:
    if token_pooling == "cls":
      return y[:, 0]
    if mask is None:
      return y.mean(axis=1)
    if mask.shape != y.shape[:2]:
      raise ValueError(f"`mask` must be [B, T] = {y.shape[:2]} for a [B, T, D] output, got "
                       f"{tuple(mask.shape)}.")
    weights = mask.astype(y.dtype)[..., None]
    return (y * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
  return y.mean(axis=tuple(range(1, y.ndim - 1)))


def _is_layer_output(value: Any, batch: int) -> bool:
  return (isinstance(value, jax.Array) and value.ndim >= 2 and value.shape[0] == batch
          and jnp.issubdtype(value.dtype, jnp.floating))


def _name(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def _named_outputs(flat: Mapping[tuple, Any]) -> dict[str, Any]:
  """{path + (method,): tuple of per-call outputs} -> {name: output}, one entry per call."""
  named = {}
  for path, calls in flat.items():
    calls = tuple(calls) if isinstance(calls, tuple) else (calls,)
    for i, value in enumerate(calls):
      named[_name(path) + (f"#{i}" if len(calls) > 1 else "")] = value
  return named


def _select_and_pool(named: dict[str, Any], batch: int, include, token_pooling: str,
                     mask) -> dict[str, jax.Array]:
  if include is None or callable(include):
    keep = [n for n, v in named.items()
            if _is_layer_output(v, batch) and (include is None or include(n))]
  else:
    keep = list(include)
    missing = [n for n in keep if n not in named]
    if missing:
      raise ValueError(f"`include` names {missing} were not captured; captured: "
                       f"{sorted(named)}.")
    bad = [n for n in keep if not _is_layer_output(named[n], batch)]
    if bad:
      raise ValueError(f"`include` names {bad} are not float [B, ...] arrays with B = {batch}.")
  return {n: pool_output(named[n], token_pooling=token_pooling, mask=mask) for n in keep}


def nnx_layer_features(module: nnx.Module, x: Any, *,
                       method_outputs: type[nnx.Variable] = nnx.Intermediate,
                       include: Sequence[str] | Callable[[str], bool] | None = None,
                       token_pooling: str = "mean", mask: jax.Array | None = None,
                       **call_kwargs) -> dict[str, Float[Array, "B D"]]:
  """Every method output of any NNX module, pooled to `[B, D]`, by name.

  The module is not edited: `nnx.capture` sows each submodule's public-method
  and `__call__` outputs for this one call. Works under `jax.jit`/`nnx.jit`.

  Args:
    module: any `nnx.Module`; it is called as `module(x, **call_kwargs)`.
    x: its input; the batch size B is `jax.tree.leaves(x)[0].shape[0]`.
    method_outputs: the variable type the outputs are sown as.
    include: None (every float output with leading dim B), a predicate on the
      names, or the exact names to return, in that order.
    token_pooling: 'mean' or 'cls' for `[B, T, D]` outputs.
    mask: optional bool `[B, T]` for a masked token mean.
    **call_kwargs: passed to the module call.

  Returns:
    {name: float32 `[B, D_l]`}, ordered as `include` when it lists names,
    otherwise by module path (not necessarily execution order); the root's own
    output is named '__call__'.
  """
  batch = jax.tree.leaves(x)[0].shape[0]
  _, captured = nnx.capture(module, nnx.Intermediate, method_outputs=method_outputs)(
      x, **call_kwargs)
  flat = {path: var.get_value() for path, var in nnx.to_flat_state(captured)}
  return _select_and_pool(_named_outputs(flat), batch, include, token_pooling, mask)


def linen_layer_features(module: Any, variables: Mapping[str, Any], x: Any, *,
                         capture: bool | Callable[[Any, str], bool] = True,
                         include: Sequence[str] | Callable[[str], bool] | None = None,
                         token_pooling: str = "mean", mask: jax.Array | None = None,
                         **apply_kwargs) -> dict[str, Float[Array, "B D"]]:
  """Every submodule output of any Linen module, pooled to `[B, D]`, by name.

  Runs `module.apply(variables, x, capture_intermediates=capture,
  mutable=['intermediates'])`; names are the module paths with the method
  ('Dense_0/__call__'; the root's own output is '__call__').

  Args:
    module: a `flax.linen.Module`.
    variables: its variables ({'params': ...}, ...).
    x: its input; B is `jax.tree.leaves(x)[0].shape[0]`.
    capture: Linen's `capture_intermediates` (True: every `__call__`; or a
      filter `(module, method_name) -> bool`).
    include, token_pooling, mask: as in `nnx_layer_features`.
    **apply_kwargs: passed to `module.apply`.

  Returns:
    {name: float32 `[B, D_l]`}, ordered as `include` when it lists names,
    otherwise by module path.
  """
  batch = jax.tree.leaves(x)[0].shape[0]
  _, state = module.apply(variables, x, capture_intermediates=capture,
                          mutable=["intermediates"], **apply_kwargs)
  flat = traverse_util.flatten_dict(dict(state.get("intermediates", {})))
  return _select_and_pool(_named_outputs(flat), batch, include, token_pooling, mask)


def _capture_points(model: nnx.Module) -> tuple[tuple[str, tuple], ...]:
  points = getattr(model, "capture_points", None)
  if not points:
    raise ValueError(f"`model` ({type(model).__name__}) has no `capture_points`; build it with "
                     f"`make_encoder`, or use `nnx_layer_features` for any NNX module.")
  return tuple(points)


def layer_names(model: nnx.Module) -> list[str]:
  """Names of the layers `layer_features(model, x)` returns, in forward order."""
  return [name for name, _ in _capture_points(model)]


def layer_features(model: nnx.Module, x: Any) -> list[Float[Array, "B D"]]:
  """Every block's output of a zoo encoder, pooled, in forward order.

  Token outputs are pooled by the model's `token_pooling` (CLS token, or a
  mean over non-padding tokens using `model.token_mask(x)` when the model has
  one); image feature maps by the mean over positions. The last entry is the
  final representation `model(x)`. Jit-able (`nnx.jit`, or `jax.jit` over
  `nnx.split`/`nnx.merge`).

  Args:
    model: an encoder from `make_encoder` (anything with `capture_points`).
    x: a batch of its inputs, `[B, H, W, C]` images or `[B, T]` token ids.

  Returns:
    A list of float32 `[B, D_l]`, one per name of `layer_names(model)`.

  Cost: one forward pass plus O(B * activation size) pooling.
  """
  points = _capture_points(model)
  mask_fn = getattr(model, "token_mask", None)
  mask = mask_fn(x) if mask_fn is not None else None
  include = [_name(path + ("__call__",)) for _, path in points]
  # Every block is called once per forward pass; a repeated call would be a '#k' name.
  pooled = nnx_layer_features(model, x, include=include, token_pooling=model.token_pooling,
                              mask=mask)
  return [pooled[name] for name in include]
