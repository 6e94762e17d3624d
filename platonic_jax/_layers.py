"""Layer search and model zoos in which every layer's kNN is computed once.

The reference (`measure_alignment.compute_score`) scores every pair of layers
(layer i of model A, layer j of model B) and recomputes both neighbour lists
for each pair: 2 La Lb kNN searches per model pair, each ~N^2 D work. The kNN
metrics need only the neighbour lists `[N, k]` of each layer, so here each
layer's list is computed once (La + Lb searches for a grid, sum_m L_m for a
zoo) and every layer pair is then scored from the cached lists in O(N k)
to O(N k^2) work (CKNNA also caches the similarities along each list).

A model is either a stacked array `[L, N, D]` or a list/tuple of `[N, D_l]`
arrays whose widths may differ. Layers of equal width (and dtype) are stacked
into groups so that one compiled kernel, mapped over the group, serves them
all. Work over layers and over layer pairs is `vmap`ped in batches sized to a
fixed working-set budget (`lax.map(..., batch_size=...)`), so a large grid
never holds every pair's temporaries at once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int

from platonic_jax import _knn, _mesh, _registry, _tiles, _validation

# Names without a leading underscore (`Plan`, `make_plan`, `model_cache`,
# `cached_grids`, `generic_grid`, `pair_kernel`, `batched_map`, `num_layers`)
# are the package's internal API: the study's nulls map them over permutations.


def _working_set_budget(what: str = "pairs") -> int:
  """Elements (~4 bytes each) of temporaries one batch of mapped work may hold.

  On CPU a layer's tiled kNN already saturates the cores at the default tile
  (measured: 8 layers at N = 4096 ran no faster vmapped than one after
  another), so its budget is one default-size tile; accelerators batch layers.
  """
  if jax.default_backend() != "cpu":
    return 2 ** 28
  return 2 ** 24 if what == "knn" else 2 ** 26


class LayerGrid(NamedTuple):
  """Scores of every (layer of A, layer of B) pair and the best pair.

  Attributes:
    scores: float32 `[La, Lb]`; `scores[i, j] = metric(a_layers[i], b_layers[j])`.
    best_score: float32 scalar, `scores.max()` (optimistically biased: a max of
      La Lb noisy estimates).
    best_pair: int32 `[2]`, `(i, j)` of the first maximum in row-major order.
  """
  scores: Float[Array, "la lb"]
  best_score: Float[Array, ""]
  best_pair: Int[Array, "2"]


class ZooAlignment(NamedTuple):
  """Best-layer alignment between every pair of models of a zoo.

  Attributes:
    scores: float32 `[M, M]`; `scores[m1, m2]` is the best layer-pair score of
      model m1 (as `a`) against model m2 (as `b`).
    best_layers: int32 `[M, M, 2]`; the layer pair `(l1, l2)` attaining it.
    layer_scores: `layer_scores[m1][m2]` is the float32 `[L_m1, L_m2]` layer grid.
  """
  scores: Float[Array, "m m"]
  best_layers: Int[Array, "m m 2"]
  layer_scores: tuple[tuple[Float[Array, "la lb"], ...], ...]


# --------------------------------------------------------------------------
# The plan: what the registry says about the metric, checked outside jit
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
  """How a grid evaluates one metric (hashable: a static jit argument).

  Attributes:
    metric: the registered metric name.
    hyperparameters: sorted (name, value) pairs, registry defaults overridden.
    neighbours: score layer pairs from cached per-layer `Neighbours`
      (`MetricInfo.from_neighbours`) instead of on features.
  """
  metric: str
  hyperparameters: tuple[tuple[str, Any], ...]
  neighbours: bool

  @property
  def info(self) -> _registry.MetricInfo:
    return _registry.get_metric(self.metric)

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.hyperparameters)

  @property
  def knn_args(self) -> tuple[int, str, int | None]:
    """(k, precision, tile_size) of each layer's single kNN search."""
    kwargs = self.kwargs
    return kwargs["k"], kwargs["precision"], kwargs["tile_size"]

  @property
  def pair_kwargs(self) -> dict[str, Any]:
    """The hyper-parameters `from_neighbours` sees (the kNN search's own removed)."""
    return {key: value for key, value in self.kwargs.items()
            if key not in ("k", "precision", "tile_size", "mesh", "axis_name")}

  @property
  def include_self(self) -> bool:
    return bool(self.info.neighbours_include_self(**self.kwargs))


def make_plan(metric: str, hyperparameters, models, names, n: int) -> Plan:
  """Checks the metric's hyper-parameters before any tracing and picks the evaluation."""
  info = _registry.get_metric(metric)
  kwargs = {**info.hyperparameters, **_registry.resolve_hyperparameters(info, hyperparameters)}
  for key, value in kwargs.items():
    try:
      hash(value)
    except TypeError:
      raise ValueError(
          f"hyper-parameter {key!r} must be a hashable Python value (it is static under "
          f"jit), got {type(value).__name__}.") from None
  neighbours = info.from_neighbours is not None
  if neighbours:
    _validation.neighbour_count(kwargs["k"], n)
    _validation.choice(kwargs["precision"], _knn.PRECISIONS, "precision")
    _validation.tile_size(kwargs["tile_size"])
    if info.rejects_constant:
      for model, name in zip(models, names):
        _validation.reject_constant_layers(model, name)
  return Plan(metric, tuple(sorted(kwargs.items())), neighbours)


# --------------------------------------------------------------------------
# Traced building blocks
# --------------------------------------------------------------------------

def batched_map(f, xs, count: int, per_item_elements: int, what: str = "pairs"):
  """`vmap(f)(xs)` in batches whose temporaries fit the working-set budget."""
  budget = _working_set_budget(what)
  batch = max(1, min(count, budget // max(int(per_item_elements), 1)))
  if batch >= count:
    return jax.vmap(f)(xs)
  batch = -(-count // -(-count // batch))  # balanced: fewer rows left for the remainder
  return lax.map(f, xs, batch_size=batch)


def device_map(f, xs, operands=(), *, mesh=None, axes=None, per_item_elements: int | None = None,
               what: str = "pairs"):
  """`stack([f(x, *operands) for x in xs])`, the items of `xs` split over devices.

  Without `mesh` this is one device's map. With it, the leading axis of `xs`
  (a pytree of `[C, ...]` arrays) is padded with copies of its first item to a
  multiple of the shard count and split over `axes` of `mesh` (`shard_map`);
  `operands` are replicated, so each device maps `f` over its own items and
  no item depends on which device ran it. Each device maps its items in
  batches within the working-set budget (`batched_map`) or, with
  `per_item_elements=None` (items that batch their own work), one at a time.

  Cost: the C calls of `f` split evenly over the P devices; memory: the
  operands on every device plus one batch of temporaries.
  """
  count = jax.tree.leaves(xs)[0].shape[0]

  def local(items, operands):
    size = jax.tree.leaves(items)[0].shape[0]
    if per_item_elements is None:
      return lax.map(lambda x: f(x, *operands), items)
    return batched_map(lambda x: f(x, *operands), items, size, per_item_elements, what)

  if mesh is None:
    return local(xs, operands)
  shards = _mesh.shard_count(mesh, axes)
  padded = _mesh.padded_rows(count, shards)
  xs = jax.tree.map(lambda x: _mesh.pad_rows(x, padded, fill=x[0]), xs)
  spec = _mesh.row_spec(axes)
  out = jax.shard_map(local, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec,
                      check_vma=False)(xs, operands)
  return jax.tree.map(lambda x: x[:count], out)


def num_layers(model) -> int:
  return len(model) if isinstance(model, tuple) else model.shape[0]


def _groups(model):
  """Layers grouped by (width, dtype): [(layer ids, stacked [Lg, N, D])], in first-seen order."""
  if not isinstance(model, tuple):
    return [(tuple(range(model.shape[0])), model)]
  by_shape: dict = {}
  for l, x in enumerate(model):
    by_shape.setdefault((x.shape, x.dtype), []).append(l)
  return [(tuple(ids), jnp.stack([model[l] for l in ids])) for ids in by_shape.values()]


def _in_layer_order(groups, parts):
  """Concatenates per-group results (pytrees stacked over each group's layers) in layer order."""
  if len(parts) == 1:
    return parts[0]
  order = np.argsort(np.concatenate([np.asarray(ids) for ids, _ in groups]))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *parts)


def model_cache(model, plan: Plan, mesh=None, axes=None):
  """Per-layer `Neighbours` of a model, stacked `[L, ...]`; each layer's kNN computed once.

  Layers of one width group are vmapped, in batches sized so that the
  `[tile, tile]` similarity blocks of a batch fit the working-set budget.
  With `mesh` each layer's kNN is the device ring over `axes` (rows split
  over the devices, half the GEMM work each), one layer after another.
  """
  k, precision, tile_size = plan.knn_args
  groups = _groups(model)
  parts = []
  for _, x in groups:
    _, n, d = x.shape

    def one(layer):
      return _knn.neighbours(layer, k, precision, tile_size, mesh, axes,
                             include_self=plan.include_self)

    if mesh is not None:
      parts.append(lax.map(one, x))
      continue
    tile, _ = _tiles.tile_layout(n, tile_size, min_rows=k + 1)
    parts.append(batched_map(one, x, x.shape[0], 4 * tile * tile + n * (d + 4 * k), "knn"))
  return _in_layer_order(groups, parts)


def pair_kernel(plan: Plan):
  """(score of one layer pair from two layer caches, working-set elements of one pair).

  A pair with a non-finite layer scores NaN, whatever the metric makes of it.
  """
  info, kwargs = plan.info, plan.pair_kwargs

  def pair(na, nb):
    score = info.from_neighbours(na, nb, **kwargs).astype(jnp.float32)
    return jnp.where(na.finite & nb.finite, score, jnp.nan)

  return pair, lambda n: info.pair_cost(n, 0, 0, **plan.kwargs)


def cached_grids(caches, model_pairs, plan: Plan, mesh=None, axes=None):
  """Layer grids `{(m1, m2): [L_m1, L_m2]}` from per-model caches, as ONE batched map.

  Every layer pair of every requested model pair is a row of one flat list of
  (global layer, global layer) indices into the concatenated caches; with
  `mesh` the rows are split over the devices of `axes` (`device_map`).
  """
  pair_fn, cost = pair_kernel(plan)
  counts = [jax.tree.leaves(c)[0].shape[0] for c in caches]
  offsets = np.concatenate([[0], np.cumsum(counts)])
  rows = np.concatenate([np.repeat(np.arange(counts[i]), counts[j]) + offsets[i]
                         for i, j in model_pairs]).astype(np.int32)
  cols = np.concatenate([np.tile(np.arange(counts[j]), counts[i]) + offsets[j]
                         for i, j in model_pairs]).astype(np.int32)
  every = jax.tree.map(lambda *xs: jnp.concatenate(xs), *caches)
  n = jax.tree.leaves(every)[0].shape[1]

  def one_pair(ij, every):
    def layer(t):
      return jax.tree.map(lambda leaf: leaf[t], every)
    return pair_fn(layer(ij[0]), layer(ij[1])).astype(jnp.float32)

  values = device_map(one_pair, (jnp.asarray(rows), jnp.asarray(cols)), (every,), mesh=mesh,
                      axes=axes, per_item_elements=cost(n))
  grids, start = {}, 0
  for i, j in model_pairs:
    size = counts[i] * counts[j]
    grids[i, j] = values[start:start + size].reshape(counts[i], counts[j])
    start += size
  return grids


def generic_grid(plan: Plan, a, b, mesh=None, axes=None):
  """Grid of a metric evaluated on features, `fn(a_layer, b_layer, **kwargs)` per layer pair.

  Each (width group of a, width group of b) block is one batched map; with
  `mesh` its layer pairs are split over the devices of `axes` (`device_map`).
  """
  info, kwargs = plan.info, plan.kwargs
  a_groups, b_groups = _groups(a), _groups(b)
  scores = jnp.zeros((num_layers(a), num_layers(b)), jnp.float32)
  for ids_a, xa in a_groups:
    for ids_b, xb in b_groups:
      ii, jj = np.meshgrid(np.arange(len(ids_a)), np.arange(len(ids_b)), indexing="ij")

      def one_pair(ij, xa, xb):
        return info.fn(xa[ij[0]], xb[ij[1]], **kwargs).astype(jnp.float32)

      cost = info.pair_cost(xa.shape[1], xa.shape[2], xb.shape[2], **kwargs)
      values = device_map(one_pair, (jnp.asarray(ii.ravel()), jnp.asarray(jj.ravel())),
                          (xa, xb), mesh=mesh, axes=axes, per_item_elements=cost)
      block = values.reshape(len(ids_a), len(ids_b))
      if len(a_groups) == 1 and len(b_groups) == 1:
        return block
      scores = scores.at[np.ix_(np.asarray(ids_a), np.asarray(ids_b))].set(block)
  return scores


def _best(scores):
  """(best score, int32 [2] first argmax in row-major order)."""
  flat = scores.reshape(-1)
  pos = jnp.argmax(flat)
  pair = jnp.stack([pos // scores.shape[1], pos % scores.shape[1]]).astype(jnp.int32)
  return flat[pos], pair


@functools.partial(jax.jit, static_argnames=("plan", "mesh", "axes"))
def _layer_grid(a, b, plan: Plan, mesh=None, axes=None):
  if plan.neighbours:
    caches = [model_cache(x, plan, mesh, axes) for x in (a, b)]
    scores = cached_grids(caches, [(0, 1)], plan, mesh, axes)[0, 1]
  else:
    scores = generic_grid(plan, a, b, mesh, axes)
  return LayerGrid(scores, *_best(scores))


def layer_grid(
    metric: str,
    a_layers: Float[ArrayLike, "la n da"] | Sequence[Float[ArrayLike, "n da_l"]],
    b_layers: Float[ArrayLike, "lb n db"] | Sequence[Float[ArrayLike, "n db_l"]],
    *,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> LayerGrid:
  """Scores every (layer of A, layer of B) pair with one metric; reports the best pair.

  This is the reference's layer search (`compute_score`). For the kNN metrics
  (mutual_knn, cycle_knn, lcs_knn, edit_distance_knn, cknna) each layer's
  neighbour list is computed once and all La x Lb pairs are scored from the
  cached lists; other metrics (cka, unbiased_cka, svcca, ...) are evaluated per
  pair. The whole grid is one jitted call.

  The best score is optimistically biased: it is the maximum of La Lb noisy
  estimates, so it exceeds the alignment of a pre-chosen layer pair even when
  all pairs are equally aligned. Report it as such (or pick layers on held-out
  samples).

  Args:
    metric: a registered metric name (see `platonic_jax.metric_names`).
    a_layers: model A, a stacked `[La, N, Da]` array or a list of `[N, Da_l]`
      arrays (widths may differ between layers).
    b_layers: model B, likewise `[Lb, N, Db]` or a list of `[N, Db_l]`, with
      the same N samples.
    mesh: split the work over this mesh's devices (auto or explicit axes):
      each layer's kNN runs as the device ring (rows split), and the layer
      pairs are divided between the devices. Without it, layers whose rows
      are already split over several devices run on their own mesh. The
      numbers equal the single-device ones.
    axis_name: mesh axis (or axes) to split over; default all.
    **hyperparameters: the metric's keywords, defaults from
      `get_metric(metric).hyperparameters` (reference spellings such as
      `topk` accepted, as in `measure`). Static: each new value recompiles.

  Returns:
    `LayerGrid(scores [La, Lb] float32, best_score scalar, best_pair int32 [2])`;
    `scores[i, j] = metric(a_layers[i], b_layers[j])` and `best_pair` is the
    first maximum of the flattened grid.

  Raises:
    ValueError: unknown metric or hyper-parameter, a model that is not rank 3
      or a non-empty list of rank-2 arrays, layers with different N, k out of
      range, NaN/Inf in a layer, or (index kNN metrics) a layer constant over
      samples; metric-specific checks (e.g. svcca's `cca_dim`) fire while tracing.

  Cost: kNN metrics do La + Lb kNN searches (~N^2 D / 2 multiply-adds each)
  instead of the 2 La Lb of per-pair evaluation, then La Lb pair kernels of
  O(N k log k) (mutual_knn) or O(N k^2) (the others, CKNNA included) on the
  cached lists; memory O((La + Lb) N k) plus one batch of pair temporaries.
  Other metrics cost La Lb times the metric.
  """
  (a, b), n = _validation.layer_stacks([a_layers, b_layers], ["a_layers", "b_layers"])
  plan = make_plan(metric, hyperparameters, [a, b], ["a_layers", "b_layers"], n)
  place = _mesh.placement(jax.tree.leaves((a, b)), mesh, axis_name)
  return place.run(lambda mesh, a, b: _layer_grid(a, b, plan, mesh, place.axes), a, b)


# --------------------------------------------------------------------------
# Model zoos
# --------------------------------------------------------------------------

_model_cache_jit = jax.jit(model_cache, static_argnames=("plan", "mesh", "axes"))


def _model_pairs(m: int, symmetric: bool) -> list[tuple[int, int]]:
  return [(i, j) for i in range(m) for j in range(m) if not symmetric or i <= j]


@functools.partial(jax.jit, static_argnames=("plan", "symmetric", "mesh", "axes"))
def _zoo_from_caches(caches, plan: Plan, symmetric: bool, mesh=None, axes=None):
  grids = cached_grids(caches, _model_pairs(len(caches), symmetric), plan, mesh, axes)
  return _assemble(grids, len(caches), symmetric)


def _assemble(grids: dict, m: int, symmetric: bool) -> ZooAlignment:
  """ZooAlignment from the computed grids; symmetric metrics mirror (i, j) into (j, i)."""
  best = {pair: _best(grid) for pair, grid in grids.items()}
  rows_scores, rows_best, rows_grids = [], [], []
  for i in range(m):
    s, p, g = [], [], []
    for j in range(m):
      if (i, j) in grids:
        grid, (score, pair) = grids[i, j], best[i, j]
      else:  # symmetric: mirror of (j, i)
        grid, (score, pair) = grids[j, i].T, (best[j, i][0], best[j, i][1][::-1])
      s.append(score)
      p.append(pair)
      g.append(grid)
    rows_scores.append(jnp.stack(s))
    rows_best.append(jnp.stack(p))
    rows_grids.append(tuple(g))
  return ZooAlignment(jnp.stack(rows_scores), jnp.stack(rows_best), tuple(rows_grids))


_assemble_jit = jax.jit(_assemble, static_argnames=("m", "symmetric"))


def zoo_alignment(
    models: Sequence[Float[ArrayLike, "l n d"] | Sequence[Float[ArrayLike, "n d_l"]]],
    metric: str = "mutual_knn",
    *,
    mesh: Mesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    **hyperparameters,
) -> ZooAlignment:
  """Best-layer alignment between every pair of M models, each layer's kNN computed once.

  For each model pair (m1, m2) this is `layer_grid(metric, models[m1],
  models[m2])`. For the kNN metrics each (model, layer) neighbour list is
  computed exactly once (one jitted call per model, vmapped over its layers)
  and every layer pair of every model pair is then scored from the cached
  lists in one more jitted call, batched over all layer pairs. Other metrics
  fall back to `layer_grid` per model pair. For
  symmetric metrics (`get_metric(metric).symmetric`) only m1 <= m2 is
  computed; (m2, m1) is the mirror (transposed grid, swapped layer pair).

  Best-layer scores are maxima over L_m1 L_m2 noisy estimates and so are
  optimistically biased (see `layer_grid`); the bias grows with layer counts,
  so it differs between model pairs with different depths.

  Args:
    models: M >= 1 models, each a stacked `[L, N, D]` array or a list of
      `[N, D_l]` arrays; layer counts and widths may differ between models,
      N must be the same.
    metric: a registered metric name (default 'mutual_knn').
    mesh: split the work over this mesh's devices, as for `layer_grid`
      (same numbers as one device).
    axis_name: mesh axis (or axes) to split over; default all.
    **hyperparameters: the metric's keywords, as for `layer_grid`.

  Returns:
    `ZooAlignment(scores [M, M] float32, best_layers [M, M, 2] int32,
    layer_scores)` with `layer_scores[m1][m2]` the `[L_m1, L_m2]` grid.

  Raises:
    ValueError: empty `models`, and everything `layer_grid` raises.

  Cost: kNN metrics: sum_m L_m kNN searches (~N^2 D / 2 multiply-adds each)
  instead of 2 (sum_m L_m)^2 for per-pair evaluation, then one O(N k log k)
  to O(N k^2) pair kernel per layer pair (about half of the (sum_m L_m)^2 pairs
  for symmetric metrics); memory O(N k sum_m L_m) for the cached lists plus one
  batch of pair temporaries. Other metrics: the per-pair metric cost for every
  layer pair of every needed model pair.
  """
  if isinstance(models, (jax.Array, np.ndarray)):
    if models.ndim != 4:
      raise ValueError(
          f"`models` must be a sequence of models (or a stacked [M, L, N, D] array), got an "
          f"array of shape {tuple(models.shape)}.")
    models = list(models)
  if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
    raise ValueError(f"`models` must be a sequence of models, got {type(models).__name__}.")
  if len(models) == 0:
    raise ValueError("`models` is empty; need at least one model.")
  names = [f"models[{m}]" for m in range(len(models))]
  checked, n = _validation.layer_stacks(models, names)
  plan = make_plan(metric, hyperparameters, checked, names, n)
  symmetric = plan.info.symmetric
  place = _mesh.placement(jax.tree.leaves(checked), mesh, axis_name)

  def zoo(mesh, checked):
    axes = place.axes
    if plan.neighbours:
      caches = tuple(_model_cache_jit(model, plan, mesh, axes) for model in checked)
      return _zoo_from_caches(caches, plan, symmetric, mesh, axes)
    grids = {(i, j): _layer_grid(checked[i], checked[j], plan, mesh, axes).scores
             for i, j in _model_pairs(len(checked), symmetric)}
    return _assemble_jit(grids, len(checked), symmetric)

  return place.run(zoo, checked)
