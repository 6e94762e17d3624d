"""Member directories: orbax checkpoints, the JSON manifest, restoring encoders.

Layout of one member (`<zoo_dir>/<member name>/`):

  manifest.json              spec, parameter count, per-checkpoint evaluation,
                             training time, `complete`; rewritten atomically
                             (temp file, fsync, rename) after every checkpoint
  checkpoints/<step>/        orbax CheckpointManager steps, two items:
      encoder/               the encoder's nnx state (what `restore_member` reads)
      train/                 the whole training state: trainee parameters and
                             other variables, optimiser state, step

The data order is a function of the member's seed and the step, so the step
restores the position in the data stream.
"""

import json
import os
import pathlib
from collections.abc import Callable

import jax
import orbax.checkpoint as ocp
from flax import nnx

from platonic_jax.zoo import _data
from platonic_jax.zoo import _families
from platonic_jax.zoo._spec import MemberSpec

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
MANIFEST_VERSION = 1


def load_manifest(member_dir: str | os.PathLike) -> dict:
  """The manifest of a member: a member directory or its manifest.json path.

  Returns:
    {"member", "spec", "num_params", "checkpoints": [{"step", "path", "eval":
    {"loss", "accuracy": {target: float}}, "train_seconds"}], "train_seconds",
    "complete", "eval_kind", "chance_accuracy", "version"}. Checkpoint paths are
    relative to the member directory.
  """
  path = pathlib.Path(member_dir)
  if path.is_dir():
    path = path / MANIFEST
  if not path.is_file():
    raise FileNotFoundError(f"member_dir: no {MANIFEST} at {path}")
  with open(path) as f:
    return json.load(f)


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_saveable(tree):
  """PRNG key leaves as their raw uint32 data (orbax stores plain arrays)."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saveable(tree, like):
  """Inverse of `to_saveable`, with `like` (arrays or ShapeDtypeStructs) giving the key leaves."""
  return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x, tree, like)


def abstract_saveable(tree, sharding: jax.sharding.Sharding):
  """ShapeDtypeStructs of `to_saveable(tree)` placed on `sharding` (the restore target)."""
  shapes = jax.eval_shape(to_saveable, tree)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def checkpoint_manager(member_dir: pathlib.Path) -> ocp.CheckpointManager:
  """The member's CheckpointManager (keeps every step; interrupted saves cleaned up)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                         enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(pathlib.Path(member_dir).absolute() / CHECKPOINTS,
                               item_names=("encoder", "train"), options=options)


def save_checkpoint(manager: ocp.CheckpointManager, step: int, encoder_state, train_state) -> str:
  """Saves one step (both items) and returns its path relative to the member directory."""
  manager.save(step, args=ocp.args.Composite(
      encoder=ocp.args.StandardSave(to_saveable(encoder_state)),
      train=ocp.args.StandardSave(to_saveable(train_state))))
  manager.wait_until_finished()
  return f"{CHECKPOINTS}/{step}"


def restore_item(manager: ocp.CheckpointManager, step: int, item: str, like,
                 sharding: jax.sharding.Sharding):
  """Restores `item` ('encoder' or 'train') of `step` into the structure of `like`."""
  target = abstract_saveable(like, sharding)
  restored = manager.restore(step, args=ocp.args.Composite(
      **{item: ocp.args.StandardRestore(target)}))[item]
  return from_saveable(restored, like)


def restore_member(member_dir_or_manifest: str | os.PathLike, step: int | None = None, *,
                   make_encoder: Callable[..., nnx.Module] | None = None,
                   dataset_spec: Callable | None = None) -> nnx.Module:
  """The trained encoder of a zoo member at one checkpoint, for feature extraction.

  Args:
    member_dir_or_manifest: the member directory or its manifest.json.
    step: a checkpoint step listed in the manifest (default: the last one).
    make_encoder, dataset_spec: the zoo's `make_encoder` and `dataset_spec`
      (defaults); other factories with the same signatures for encoders built
      elsewhere.

  Returns:
    The encoder (`__call__(x) -> [B, D]`) with the checkpoint's variables, on
    the default device.
  """
  make_encoder = make_encoder or _families.make_encoder
  dataset_spec = dataset_spec or _data.dataset_spec
  path = pathlib.Path(member_dir_or_manifest)
  member_dir = path if path.is_dir() else path.parent
  manifest = load_manifest(member_dir)
  steps = [c["step"] for c in manifest["checkpoints"]]
  if not steps:
    raise ValueError(f"member_dir_or_manifest: {member_dir} has no checkpoint yet")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise ValueError(f"step must be one of the member's checkpoints {steps}, got {step}")
  spec = MemberSpec.from_json(manifest["spec"])
  abstract = nnx.eval_shape(lambda: build_encoder(spec, make_encoder, dataset_spec))
  graphdef, like = nnx.split(abstract)
  manager = checkpoint_manager(member_dir)
  try:
    state = restore_item(manager, step, "encoder", like,
                         jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  finally:
    manager.close()
  return nnx.merge(graphdef, state)


def build_encoder(spec: MemberSpec, make_encoder: Callable, dataset_spec: Callable,
                  rngs: nnx.Rngs | None = None) -> nnx.Module:
  """The member's encoder, freshly initialised from its seed."""
  return make_encoder(spec.family, width=spec.width, depth=spec.depth,
                      dataset_spec=dataset_spec(spec.dataset), modality=spec.modality,
                      rngs=rngs if rngs is not None else nnx.Rngs(spec.seed))




def count_params(module: nnx.Module) -> int:
  """Number of scalars in the module's nnx.Param variables."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
