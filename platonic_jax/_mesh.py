"""Where a kernel runs: row sharding over a mesh, padding, and meshes with explicit axes.

Every public entry point resolves a `Placement` before calling its jitted
kernel. The kernels are written against meshes whose axes are `Auto` (GSPMD
propagates shardings, `shard_map` rings and `psum`s split the work). Meshes
made by `jax.make_mesh` have `Explicit` axes by default, where every array's
type carries its sharding and slicing or gathering a sharded dimension is a
type error; a placement runs the kernel under `jax.sharding.auto_axes`, which
views those axes as `Auto` for its duration, so one kernel serves both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

AnyMesh = Mesh | AbstractMesh


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def row_axes(mesh: AnyMesh, axis_name) -> tuple[str, ...]:
  """The mesh axes rows are split over: `axis_name` (str or tuple), default all axes.

  Returned in the mesh's own axis order, whatever order they were named in, so
  the row-block layout, `lax.axis_index` and `lax.ppermute` agree.
  """
  if not isinstance(mesh, (Mesh, AbstractMesh)):
    raise ValueError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
  axes = mesh.axis_names if axis_name is None else (
      (axis_name,) if isinstance(axis_name, str) else tuple(axis_name))
  unknown = [a for a in axes if a not in mesh.axis_names]
  if unknown or not axes:
    raise ValueError(
        f"`axis_name` must name axes of the mesh {mesh.axis_names}, got {axis_name!r}.")
  return tuple(a for a in mesh.axis_names if a in axes)


def shard_count(mesh: AnyMesh, axes: tuple[str, ...]) -> int:
  return math.prod(mesh.shape[a] for a in axes)


def row_spec(axes: tuple[str, ...]) -> PartitionSpec:
  return PartitionSpec(axes if len(axes) > 1 else axes[0])


def rows_sharding(mesh: AnyMesh, axes: tuple[str, ...]) -> NamedSharding:
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


def _has_explicit_axes(mesh) -> bool:
  return mesh is not None and not mesh.empty and AxisType.Explicit in mesh.axis_types


def _auto(mesh: AnyMesh) -> AnyMesh:
  """The same mesh with every axis `Auto` (what the kernels' shardings refer to)."""
  if not _has_explicit_axes(mesh):
    return mesh
  if isinstance(mesh, Mesh):
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
  return mesh.update_axis_types({name: AxisType.Auto for name in mesh.axis_names})


def _named_sharding(x) -> NamedSharding | None:
  """The NamedSharding `x` lives on: a concrete array's own, or (tracers) its type's."""
  if isinstance(x, jax.Array) and not _is_tracer(x):
    sharding = x.sharding
  elif _is_tracer(x):
    sharding = getattr(jax.typeof(x), "sharding", None)
  else:
    return None
  return sharding if isinstance(sharding, NamedSharding) else None


def spec_of(x) -> PartitionSpec:
  """The PartitionSpec `x` is laid out with (P() when it has none), to hand back outputs alike."""
  sharding = _named_sharding(x)
  return PartitionSpec() if sharding is None else sharding.spec


def _row_sharded(x) -> tuple[AnyMesh, tuple[str, ...]] | None:
  """(mesh, row axes) when the rows of `x` are split over more than one device."""
  sharding = _named_sharding(x)
  if sharding is None or not sharding.spec or sharding.spec[0] is None:
    return None
  first = sharding.spec[0]
  axes = row_axes(sharding.mesh, first if isinstance(first, tuple) else (first,))
  if shard_count(sharding.mesh, axes) == 1:
    return None
  return sharding.mesh, axes


def _explicit_mesh(arrays, mesh):
  """The mesh with `Explicit` axes this call runs under (given, an input's, or the context's)."""
  if _has_explicit_axes(mesh):
    return mesh
  for x in arrays:
    sharding = _named_sharding(x)
    if sharding is not None and _has_explicit_axes(sharding.mesh):
      return sharding.mesh
  context = jax.sharding.get_abstract_mesh()
  return context if _has_explicit_axes(context) else None


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where one kernel call runs.

  Attributes:
    mesh: the mesh the kernel shards rows over (axes `Auto`), or None for an
      unsharded kernel.
    axes: the mesh axes the rows are split over (None when `mesh` is None).
    explicit: a mesh with `Explicit` axes (the caller's, an input's or the
      context's) to view as `Auto` while the kernel runs, or None.
  """
  mesh: AnyMesh | None
  axes: tuple[str, ...] | None
  explicit: AnyMesh | None

  def row_spec(self, n: int) -> PartitionSpec:
    """Output spec of an `[N, ...]` result: row-sharded like the inputs when P divides N."""
    if self.mesh is None or n % shard_count(self.mesh, self.axes):
      return PartitionSpec()
    return row_spec(self.axes)

  def run(self, kernel: Callable, *args, out_specs=PartitionSpec()):
    """`kernel(mesh, *args)` with `mesh` the sharding mesh (or None), under auto axes if needed.

    `out_specs` (a PartitionSpec or a pytree of them) places the outputs when
    the call runs under explicit axes.
    """
    if self.explicit is None:
      return kernel(self.mesh, *args)
    sharded = self.mesh is not None

    def body(*inner):
      return kernel(jax.sharding.get_abstract_mesh() if sharded else None, *inner)

    traced = any(_is_tracer(x) for x in jax.tree.leaves(args))
    if isinstance(self.explicit, Mesh) and not traced:
      context = jax.set_mesh(self.explicit)
    else:
      abstract = self.explicit.abstract_mesh if isinstance(self.explicit, Mesh) else self.explicit
      context = jax.sharding.use_abstract_mesh(abstract)
    with context:
      return jax.sharding.auto_axes(body, out_sharding=out_specs)(*args)


def placement(arrays, mesh: AnyMesh | None = None, axis_name=None, *,
              shard: bool = True) -> Placement:
  """Resolves where a kernel on `arrays` runs.

  With `mesh` the rows are sharded over its `axis_name` axes (default all).
  Without it, inputs whose rows are already split over several devices (a
  `NamedSharding` with the first dimension partitioned, explicit or auto
  axes) are computed where they live, sharded over their own mesh; set
  `shard=False` for kernels with no sharded path. Raises ValueError for a
  `mesh` that is not a mesh or an `axis_name` it lacks, or `axis_name` without `mesh`.
  """
  if mesh is None and axis_name is not None:
    raise ValueError(f"`axis_name` ({axis_name!r}) needs `mesh`; pass the mesh it names.")
  axes = None
  if mesh is not None:
    axes = row_axes(mesh, axis_name)
  elif shard:
    for x in arrays:
      found = _row_sharded(x)
      if found is not None:
        mesh, axes = found
        break
  return Placement(None if mesh is None else _auto(mesh), axes, _explicit_mesh(arrays, mesh))
