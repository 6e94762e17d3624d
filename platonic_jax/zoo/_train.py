"""Training a zoo: data-parallel, seed-vmapped, checkpointed, resumable.

One call of the jitted `_train_step` runs one optimiser step for a group of
S members that differ only in seed (`vmap` over stacked states):
parameters are replicated over a 1-D `('data',)` mesh and every batch is
sharded along it, so the same code runs on one device or many (results equal
up to float reduction order). Checkpoints (orbax) and the member manifest are
written at each of the spec's checkpoint steps; a rerun skips complete members
and resumes partial ones from their last checkpoint.
"""

import dataclasses
import functools
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from platonic_jax import _files
from platonic_jax.zoo import _checkpoint
from platonic_jax.zoo import _data
from platonic_jax.zoo import _families
from platonic_jax.zoo._objectives import Trainee, objective_loss
from platonic_jax.zoo._spec import MemberSpec, ZooSpec

# Held-out evaluation sizes: enough for accuracies to +-2 %, cheap at every checkpoint.
EVAL_EXAMPLES = 1024
PROBE_EXAMPLES = 2048
PROBE_K = 10
EVAL_BATCH = 512
# Steps whose batches are gathered on the host at once.
HOST_STEPS = 50
# fold_in constant of the held-out augmentation key (training steps never reach it).
EVAL_KEY = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class ZooApi:
  """The functions training needs from the rest of the zoo (the zoo's own by default)."""
  load_dataset: Callable[..., dict]
  dataset_spec: Callable
  make_encoder: Callable[..., nnx.Module]

  @classmethod
  def default(cls) -> "ZooApi":
    return cls(_data.load_dataset, _data.dataset_spec, _families.make_encoder)


class TrainingInterrupted(Exception):
  """Raised by the `stop_after_steps` test hook, as if the process had been killed."""


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all).

  The axis is `Auto`, not jax's default `Explicit`: with explicit axes every
  gather in model code (e.g. `nnx.Embed`'s `jnp.take` on batch-sharded token
  ids) must name its output sharding, while `Auto` lets the compiler
  propagate the batch sharding through any encoder.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def batch_indices(seed: int, num_examples: int, batch_size: int, start: int,
                  stop: int) -> np.ndarray:
  """Example indices of steps [start, stop): int64 [stop - start, batch_size].

  The stream is a fresh permutation of the training set per epoch, seeded by
  (seed, epoch), so any step's batch is known from the step alone (this is
  how a resumed run continues the data order).
  """
  position = np.arange(start * batch_size, stop * batch_size, dtype=np.int64)
  epoch, offset = np.divmod(position, num_examples)
  out = np.empty_like(position)
  for e in np.unique(epoch):
    perm = np.random.default_rng([seed, int(e)]).permutation(num_examples)
    out[epoch == e] = perm[offset[epoch == e]]
  return out.reshape(stop - start, batch_size)


@functools.lru_cache(maxsize=None)
def optimizer(steps: int, learning_rate: float) -> optax.GradientTransformation:
  """AdamW, linear warm-up over 5 % of the steps then cosine decay, clipped gradients.

  Cached so that groups with the same schedule share one compiled train step.
  """
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps=max(1, steps // 20), decay_steps=steps)
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, weight_decay=1e-4))


def _member_step(params, rest, opt_state, inputs, labels, key, *, graphdef, tx, modality):
  """One optimiser step of one member; `inputs` [B, ...] sharded over 'data'."""

  def loss_fn(params):
    model = nnx.merge(graphdef, params, rest)
    loss, _ = objective_loss(model, inputs, labels, key, modality=modality)
    return loss, nnx.split(model, nnx.Param, ...)[2]

  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), rest, opt_state, loss


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "modality"),
                   donate_argnums=(0, 1, 2))
def _train_step(params, rest, opt_state, inputs, labels, seeds, step, *, graphdef, tx, modality):
  """One optimiser step of S stacked members.

  One step per call, not a `lax.scan` over steps: XLA:CPU runs convolutions
  inside a loop ~20x slower than at top level, and dispatch costs far less.

  Args:
    params, rest, opt_state: stacked states, leading axis S.
    inputs: [S, B, ...] raw batches, B sharded over 'data'.
    labels: {target: int [S, B]}.
    seeds: int [S]; step: int scalar (augmentation keys are fold_in(key(seed), step)).

  Returns:
    (params, rest, opt_state, losses [S]).
  """
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), step))(seeds)
  step_fn = functools.partial(_member_step, graphdef=graphdef, tx=tx, modality=modality)
  return jax.vmap(step_fn)(params, rest, opt_state, inputs, labels, keys)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _forward(params, rest, inputs, *, graphdef):
  """Encoder features [S, N, D] and head outputs of S stacked members on one batch."""

  def one(params, rest):
    model = nnx.merge(graphdef, params, rest)
    features = model.encoder(inputs)
    if model.objective == "contrastive":
      return features, model.projector(features)
    return features, {t: head(features) for t, head in model.heads.items()}

  return jax.vmap(one)(params, rest)


@functools.partial(jax.jit, static_argnames=("graphdef", "modality"))
def _eval_loss(params, rest, inputs, seeds, index, *, graphdef, modality):
  """The contrastive loss of S stacked members on one held-out batch [B, ...]: [S].

  Augmentation keys are fixed by (seed, batch index), so the loss is
  comparable across checkpoints.
  """

  def one(params, rest, seed):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), EVAL_KEY), index)
    model = nnx.merge(graphdef, params, rest)
    return objective_loss(model, inputs, {}, key, modality=modality)[0]

  return jax.vmap(one)(params, rest, seeds)


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray, k: int = PROBE_K) -> float:
  """Held-out accuracy of a cosine k-nearest-neighbour majority vote (ties: lower class).

  Args: train_features [N, D], train_labels int [N], test_features [M, D], test_labels int [M].
  Cost O(N M D).
  """
  a = train_features / np.maximum(np.linalg.norm(train_features, axis=1, keepdims=True), 1e-12)
  b = test_features / np.maximum(np.linalg.norm(test_features, axis=1, keepdims=True), 1e-12)
  neighbours = np.argpartition(-(b @ a.T), k, axis=1)[:, :k]
  votes = train_labels[neighbours]
  counts = np.stack([(votes == c).sum(1) for c in range(int(train_labels.max()) + 1)], 1)
  return float((counts.argmax(1) == test_labels).mean())


@dataclasses.dataclass(frozen=True)
class _Data:
  train: dict
  test: dict
  spec: object


def _input_key(modality: str) -> str:
  return "image" if modality == "image" else "caption"


def _feature_dim(encoder: nnx.Module, dataset_spec, modality: str) -> int:
  if modality == "image":
    x = jax.ShapeDtypeStruct((2, *dataset_spec.image_shape), jnp.uint8)
  else:
    x = jax.ShapeDtypeStruct((2, dataset_spec.caption_length), jnp.int32)
  graphdef, state = nnx.split(encoder)
  return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape[-1]


def new_trainee(spec: MemberSpec, api: ZooApi, key: jax.Array | None = None) -> Trainee:
  """The member's encoder and objective heads, initialised from `key` (default: its seed)."""
  dataset_spec = api.dataset_spec(spec.dataset)
  missing = [t for t in spec.targets if t not in dataset_spec.targets]
  if missing:
    raise ValueError(f"targets {missing} of member {spec.name} are not targets of dataset "
                     f"{spec.dataset!r}: {sorted(dataset_spec.targets)}")
  key = jax.random.key(spec.seed) if key is None else key
  encoder = _checkpoint.build_encoder(spec, api.make_encoder, api.dataset_spec,
                                      rngs=nnx.Rngs(key))
  return Trainee(encoder, _feature_dim(encoder, dataset_spec, spec.modality), spec.objective,
                 {t: dataset_spec.targets[t] for t in spec.targets},
                 rngs=nnx.Rngs(jax.random.fold_in(key, 1)))


def initial_state(spec: MemberSpec, api: ZooApi) -> tuple[nnx.GraphDef, dict]:
  """The trainee's graphdef and its step-0 training state as host arrays.

  Built in one compiled call with the seed as an argument (eager init would
  compile every initialiser separately, and per seed).

  Returns:
    (graphdef, {"params", "rest", "opt_state", "step"}).
  """
  graphdef = nnx.split(nnx.eval_shape(lambda: new_trainee(spec, api)), nnx.Param, ...)[0]
  state = jax.device_get(_init_fn(spec.same_but_seed(), api)(jax.random.key(spec.seed)))
  return graphdef, {**state, "step": np.asarray(0)}


@functools.lru_cache(maxsize=None)
def _init_fn(spec: MemberSpec, api: ZooApi) -> Callable:
  """Compiled `key -> initial state`, shared by members that differ only in seed."""
  tx = optimizer(spec.steps, spec.learning_rate)

  def init(key):
    _, params, rest = nnx.split(new_trainee(spec, api, key), nnx.Param, ...)
    return {"params": params, "rest": rest, "opt_state": tx.init(params)}

  return jax.jit(init)


def group_members(members: Sequence[MemberSpec], vmap_seeds: bool) -> list[list[MemberSpec]]:
  """Members that differ only in seed, together (in first-appearance order) when `vmap_seeds`."""
  if not vmap_seeds:
    return [[m] for m in members]
  groups: dict[MemberSpec, list[MemberSpec]] = {}
  for m in members:
    groups.setdefault(m.same_but_seed(), []).append(m)
  return list(groups.values())


def _stack(trees):
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _unstack(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _padded_batches(x: np.ndarray, batch: int) -> np.ndarray:
  """[N, ...] -> [ceil(N / batch), batch, ...], the last batch padded by repeating rows."""
  x = x[np.arange(len(x) + (-len(x) % batch)) % len(x)]
  return x.reshape(-1, batch, *x.shape[1:])


def _features_and_logits(params, rest, graphdef, x, mesh):
  """Encoder features [S, N, D] and logits {t: [S, N, C]} (or projections) as NumPy."""
  batch = -(-EVAL_BATCH // mesh.size) * mesh.size
  sharding = NamedSharding(mesh, P("data"))
  outputs = [jax.device_get(_forward(params, rest, jax.device_put(b, sharding),
                                     graphdef=graphdef))
             for b in _padded_batches(x, batch)]
  return jax.tree.map(lambda *o: np.concatenate(o, axis=1)[:, :len(x)], *outputs)


def _majority_rate(labels: np.ndarray) -> float:
  return float(np.bincount(labels).max() / len(labels))


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
  z = logits - logits.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return float(-np.take_along_axis(log_p, labels[:, None], -1).mean())


def _evaluate(specs, params, rest, graphdef, data: _Data, mesh) -> list[dict]:
  """Held-out loss and accuracies of S stacked members (see `train_zoo` for the fields)."""
  spec = specs[0]
  key = _input_key(spec.modality)
  n_eval = min(EVAL_EXAMPLES, len(data.test[key]))
  n_probe = min(PROBE_EXAMPLES, len(data.train[key]))
  test_x = data.test[key][:n_eval]
  test_y = {t: data.test[t][:n_eval] for t in spec.targets}
  probe_y = {t: data.train[t][:n_probe] for t in spec.targets}
  test_features, heads = _features_and_logits(params, rest, graphdef, test_x, mesh)
  probe_features, _ = _features_and_logits(params, rest, graphdef, data.train[key][:n_probe],
                                           mesh)
  if spec.objective == "contrastive":
    sharding = NamedSharding(mesh, P("data"))
    seeds = jnp.asarray([s.seed for s in specs])
    losses = np.mean([np.asarray(_eval_loss(params, rest, jax.device_put(x, sharding), seeds, i,
                                            graphdef=graphdef, modality=spec.modality))
                      for i, x in enumerate(_padded_batches(test_x, spec.batch_size))
                      if (i + 1) * spec.batch_size <= n_eval], axis=0)
  out = []
  for i in range(len(specs)):
    knn = {t: knn_accuracy(probe_features[i], probe_y[t], test_features[i], test_y[t])
           for t in spec.targets}
    if spec.objective == "contrastive":
      out.append({"loss": float(losses[i]), "accuracy": knn, "knn_accuracy": knn})
    else:
      accuracy = {t: float((heads[t][i].argmax(-1) == test_y[t]).mean()) for t in spec.targets}
      loss = float(np.mean([_softmax_cross_entropy(heads[t][i], test_y[t])
                            for t in spec.targets]))
      out.append({"loss": loss, "accuracy": accuracy, "knn_accuracy": knn})
  return out


def _new_manifest(spec: MemberSpec, num_params: int, data: _Data, devices: int) -> dict:
  n_eval = min(EVAL_EXAMPLES, len(data.test[_input_key(spec.modality)]))
  return {
      "version": _checkpoint.MANIFEST_VERSION, "member": spec.name, "spec": spec.to_json(),
      "num_params": num_params,
      "eval_kind": "knn_probe" if spec.objective == "contrastive" else "heads",
      "eval_examples": n_eval,
      "chance_accuracy": {t: _majority_rate(data.test[t][:n_eval]) for t in spec.targets},
      "checkpoints": [], "train_seconds": 0.0, "complete": False, "devices": devices,
      "trained_with": [spec.name]}


def _resumable_step(manifest: dict, manager) -> int | None:
  """Last step that is both in the manifest and on disk (None: start from scratch)."""
  steps = set(manager.all_steps()) & {c["step"] for c in manifest["checkpoints"]}
  return max(steps) if steps else None


def _existing_manifest(member_dir: pathlib.Path, spec: MemberSpec) -> dict | None:
  if not (member_dir / _checkpoint.MANIFEST).is_file():
    return None
  manifest = _checkpoint.load_manifest(member_dir)
  if MemberSpec.from_json(manifest["spec"]) != spec:
    raise ValueError(
        f"zoo_dir: {member_dir} holds member {spec.name} with another spec "
        f"({manifest['spec']}); use another zoo_dir or remove that directory")
  return manifest


def _train_group(specs: list[MemberSpec], zoo_dir: pathlib.Path, data: _Data, api: ZooApi,
                 mesh, log: Callable[[str], None], step_budget: int | None) -> int:
  """Trains members that differ only in seed together; returns the steps run."""
  spec = specs[0]
  if spec.batch_size % mesh.size:
    raise ValueError(f"batch_size {spec.batch_size} of {spec.name} must be a multiple of the "
                     f"number of devices ({mesh.size})")
  dirs = [zoo_dir / s.name for s in specs]
  for d in dirs:
    d.mkdir(parents=True, exist_ok=True)
  graphdef = nnx.split(nnx.eval_shape(lambda: new_trainee(spec, api)), nnx.Param, ...)[0]
  num_params = _checkpoint.count_params(nnx.eval_shape(lambda: new_trainee(spec, api)).encoder)
  tx = optimizer(spec.steps, spec.learning_rate)
  managers = [_checkpoint.checkpoint_manager(d) for d in dirs]
  manifests = [_existing_manifest(d, s) or _new_manifest(s, num_params, data, mesh.size)
               for d, s in zip(dirs, specs)]
  starts = [_resumable_step(m, mgr) for m, mgr in zip(manifests, managers)]
  start = None if None in starts else min(starts)
  replicated = NamedSharding(mesh, P())
  host = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  states = []
  for spec_i, manifest, manager in zip(specs, manifests, managers):
    manifest["trained_with"] = [s.name for s in specs]
    manifest["checkpoints"] = [c for c in manifest["checkpoints"]
                               if start is not None and c["step"] <= start]
    for step in manager.all_steps():
      if start is None or step > start:
        manager.delete(step)  # redone identically from `start`
    graphdef_i, fresh = initial_state(spec_i, api)
    if graphdef_i != graphdef:
      raise ValueError(f"members {specs[0].name} and {spec_i.name} differ in structure")
    states.append(fresh if start is None else jax.device_get(
        _checkpoint.restore_item(manager, start, "train", fresh, host)))
  train_seconds = (0.0 if start is None else
                   manifests[0]["checkpoints"][-1].get("train_seconds", 0.0))
  state = jax.device_put(_stack(states), replicated)
  step = int(np.asarray(states[0]["step"])) if start is not None else 0
  names = ", ".join(s.name for s in specs)
  log(f"training {names} from step {step} to {spec.steps} on {mesh.size} device(s)")

  def checkpoint(step, train_loss):
    evals = _evaluate(specs, state["params"], state["rest"], graphdef, data, mesh)
    stacked = jax.device_get(_checkpoint.to_saveable(state))
    for i in range(len(specs)):
      member_state = dict(_unstack(stacked, i), step=np.asarray(step))
      encoder_state = nnx.split(nnx.merge(graphdef, member_state["params"],
                                          member_state["rest"]).encoder)[1]
      path = _checkpoint.save_checkpoint(managers[i], step, encoder_state, member_state)
      manifests[i]["checkpoints"].append({
          "step": step, "path": path, "eval": evals[i], "train_seconds": train_seconds,
          "train_loss": None if train_loss is None else float(train_loss[i])})
      manifests[i]["train_seconds"] = train_seconds
      manifests[i]["complete"] = step == spec.steps
      _files.write_json_atomic(dirs[i] / _checkpoint.MANIFEST, manifests[i], allow_nan=True)
      accuracy = " ".join(f"{t.removeprefix('target_')} {a:.2f}"
                          for t, a in evals[i]["accuracy"].items())
      log(f"  {specs[i].name} step {step}/{spec.steps}: loss {evals[i]['loss']:.3f}, "
          f"accuracy {accuracy} ({train_seconds:.1f} s)")

  if start is None:
    checkpoint(0, None)
  key = _input_key(spec.modality)
  n_train = len(data.train[key])
  batch_sharding = NamedSharding(mesh, P(None, "data"))
  seeds = jnp.asarray([s.seed for s in specs])
  targets = () if spec.objective == "contrastive" else spec.targets
  run = 0
  try:
    while step < spec.steps:
      t0 = time.perf_counter()
      stop = min(step + HOST_STEPS, min(c for c in spec.checkpoint_steps if c > step))
      idx = np.stack([batch_indices(s.seed, n_train, spec.batch_size, step, stop)
                      for s in specs], axis=1)  # [K, S, B]
      inputs, labels = data.train[key][idx], {t: data.train[t][idx] for t in targets}
      losses = []
      for k in range(stop - step):
        *carry, loss = _train_step(
            state["params"], state["rest"], state["opt_state"],
            jax.device_put(inputs[k], batch_sharding),
            {t: jax.device_put(y[k], batch_sharding) for t, y in labels.items()},
            seeds, step + k, graphdef=graphdef, tx=tx, modality=spec.modality)
        state = dict(zip(("params", "rest", "opt_state"), carry), step=state["step"])
        losses.append(loss)
      losses = np.asarray(losses)  # [K, S]; also waits for the steps to finish
      train_seconds += time.perf_counter() - t0
      run += stop - step
      step = stop
      if step_budget is not None and run >= step_budget:
        raise TrainingInterrupted(f"stopped after {run} steps at step {step} (test hook)")
      if step in spec.checkpoint_steps:
        checkpoint(step, losses[-min(len(losses), 10):].mean(0))
  finally:
    for manager in managers:
      manager.close()
  return run


def train_zoo(zoo: ZooSpec | Sequence[MemberSpec], zoo_dir: str | os.PathLike, *,
              devices: Sequence[jax.Device] | None = None, vmap_seeds: bool = False,
              data_dir: str | None = None, log: Callable[[str], None] = print,
              stop_after_steps: int | None = None, api: ZooApi | None = None) -> list[dict]:
  """Trains every member of a zoo into `<zoo_dir>/<member name>/`.

  Complete members are skipped; partial ones resume from their last
  checkpoint (model, optimiser state and data position), so a killed run
  continues where it stopped and gives the same result. At each checkpoint
  step the member's held-out `eval` is recorded in its manifest:
  `loss` (the objective on test data: mean cross-entropy over targets, or
  NT-Xent with fixed augmentations), `accuracy` per target (the heads'; for
  contrastive members the kNN probe's) and `knn_accuracy` (a cosine
  10-nearest-neighbour vote from 2048 training examples' features, for every
  objective, so competence is comparable). `chance_accuracy` is the majority
  class rate of the evaluated test examples.

  Args:
    zoo: a ZooSpec (see `zoo_spec`) or members.
    zoo_dir: output directory.
    devices: data-parallel devices (default: all); batch sizes must divide by their number.
    vmap_seeds: train members that differ only in seed together under `vmap`.
      Off by default: on XLA:CPU a vmapped convolution (batched weights) runs
      ~2.5x slower than two separate ones, and for the other families the
      saving is under 1 ms a step, while members that differ only in seed
      already share one compiled step (the jit cache keys on structure).
    data_dir: where datasets are prepared (see `load_dataset`).
    log: progress sink (one line per group start and member checkpoint).
    stop_after_steps: test hook: raise `TrainingInterrupted` (no save) once this many
      steps have run in this call, as a kill would.
    api: dataset and encoder functions (default: the zoo's own).

  Returns:
    The manifests of the zoo's members, in order.
  """
  members = tuple(zoo.members if isinstance(zoo, ZooSpec) else zoo)
  api = api or ZooApi.default()
  zoo_dir = pathlib.Path(zoo_dir)
  zoo_dir.mkdir(parents=True, exist_ok=True)
  mesh = data_mesh(devices)
  data: dict[str, _Data] = {}
  run = 0
  with jax.set_mesh(mesh):
    for group in group_members(members, vmap_seeds):
      todo = []
      for spec in group:
        manifest = _existing_manifest(zoo_dir / spec.name, spec)
        if manifest is not None and manifest["complete"]:
          log(f"skipping {spec.name} (complete)")
        else:
          todo.append(spec)
      if not todo:
        continue
      name = todo[0].dataset
      if name not in data:
        data[name] = _Data(api.load_dataset(name, "train", data_dir=data_dir),
                           api.load_dataset(name, "test", data_dir=data_dir),
                           api.dataset_spec(name))
      budget = None if stop_after_steps is None else stop_after_steps - run
      run += _train_group(todo, zoo_dir, data[name], api, mesh, log, budget)
  return [_checkpoint.load_manifest(zoo_dir / m.name) for m in members]
