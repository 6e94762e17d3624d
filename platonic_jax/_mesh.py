"""Row sharding over a `jax.sharding.Mesh`: axis resolution, padding, placement."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def row_axes(mesh: Mesh, axis_name) -> tuple[str, ...]:
  """The mesh axes rows are split over: `axis_name` (str or tuple), default all axes.

  Returned in the mesh's own axis order, whatever order they were named in, so
  the row-block layout, `lax.axis_index` and `lax.ppermute` agree.
  """
  if not isinstance(mesh, Mesh):
    raise ValueError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
  axes = mesh.axis_names if axis_name is None else (
      (axis_name,) if isinstance(axis_name, str) else tuple(axis_name))
  unknown = [a for a in axes if a not in mesh.axis_names]
  if unknown or not axes:
    raise ValueError(
        f"`axis_name` must name axes of the mesh {mesh.axis_names}, got {axis_name!r}.")
  return tuple(a for a in mesh.axis_names if a in axes)


def shard_count(mesh: Mesh, axes: tuple[str, ...]) -> int:
  return math.prod(mesh.shape[a] for a in axes)


def row_spec(axes: tuple[str, ...]) -> PartitionSpec:
  return PartitionSpec(axes if len(axes) > 1 else axes[0])


def rows_sharding(mesh: Mesh, axes: tuple[str, ...]) -> NamedSharding:
  return NamedSharding(mesh, row_spec(axes))


def padded_rows(n: int, shards: int, multiple: int = 1) -> int:
  """Smallest row count >= n that splits into `shards` blocks of a multiple of `multiple`."""
  per_shard = -(-n // shards)
  per_shard = -(-per_shard // multiple) * multiple
  return per_shard * shards


def pad_rows(x: jax.Array, rows: int, fill=None) -> jax.Array:
  """Appends rows (zeros, or copies of the vector `fill`) up to `rows`."""
  extra = rows - x.shape[0]
  if extra == 0:
    return x
  if fill is None:
    return jnp.pad(x, ((0, extra),) + ((0, 0),) * (x.ndim - 1))
  return jnp.concatenate([x, jnp.broadcast_to(fill, (extra,) + x.shape[1:]).astype(x.dtype)])
