"""Zoo specs: which members to train, how long, and named presets.

A `MemberSpec` fixes everything that determines one trained model (family,
size, seed, data, objective, schedule); its `name` is stable and names the
member's directory. A `ZooSpec` is a tuple of members. Presets are functions
registered by name; each docstring says the command that trains it and what to
expect. `override_zoo` applies command-line changes (steps, batch size,
learning rate, filters) to a preset.
"""

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable, Sequence

MODALITIES = ("image", "caption")
OBJECTIVES = ("supervised", "multitask", "contrastive")


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One zoo member: an encoder family at one size and seed, trained one way.

  Attributes:
    family: encoder family passed to `make_encoder` (e.g. 'mlp', 'cnn').
    width: the family's width knob (channels, hidden units or model dim).
    depth: the family's depth knob (layers or blocks).
    seed: initialisation, data-order and augmentation seed.
    dataset: dataset name for `load_dataset` ('digits', 'world', ...).
    modality: 'image' (uint8 images) or 'caption' (int32 token ids, 0 = padding).
    objective: 'supervised' (one target), 'multitask' (one head per target) or
      'contrastive' (SimCLR-style NT-Xent on two augmented views; `targets` are
      then only used for the held-out kNN-probe accuracy).
    targets: dataset target keys ('label', 'target_shape', ...).
    steps: optimiser steps in total.
    checkpoint_steps: steps at which a checkpoint is written and evaluated;
      always includes 0 (the random init) and `steps`.
    batch_size: global batch size (sharded over the devices).
    learning_rate: peak AdamW learning rate (cosine decay to 0 over `steps`).
  """
  family: str
  width: int
  depth: int
  seed: int
  dataset: str
  modality: str
  objective: str
  targets: tuple[str, ...]
  steps: int
  checkpoint_steps: tuple[int, ...]
  batch_size: int = 64
  learning_rate: float = 3e-3

  def __post_init__(self):
    object.__setattr__(self, "targets", tuple(self.targets))
    object.__setattr__(self, "checkpoint_steps",
                       tuple(sorted({0, int(self.steps), *map(int, self.checkpoint_steps)})))
    if self.modality not in MODALITIES:
      raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
    if not self.targets:
      raise ValueError("targets must name at least one dataset target, got ()")
    if self.objective == "supervised" and len(self.targets) != 1:
      raise ValueError(f"objective 'supervised' takes exactly one target, got {self.targets}")
    if min(self.width, self.depth) < 1 or self.steps < 1 or self.batch_size < 1:
      raise ValueError("width, depth, steps and batch_size must be >= 1, got "
                       f"{self.width}, {self.depth}, {self.steps}, {self.batch_size}")
    if self.checkpoint_steps[-1] != self.steps:
      raise ValueError(f"checkpoint_steps must lie in [0, steps={self.steps}], "
                       f"got {self.checkpoint_steps}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

  @property
  def name(self) -> str:
    """Stable directory name, e.g. 'world-image-cnn-w32-d2-multitask-s0'.

    Supervised members add their target ('...-supervised-shape-s0'). The
    schedule (steps, batch size, learning rate) is not part of the name: the
    trainer refuses a member directory whose manifest holds another schedule.
    """
    objective = self.objective
    if objective == "supervised":
      objective += "-" + self.targets[0].removeprefix("target_")
    return (f"{self.dataset}-{self.modality}-{self.family}-w{self.width}-d{self.depth}-"
            f"{objective}-s{self.seed}")

  def to_json(self) -> dict:
    """A JSON-ready dict of every field (tuples as lists)."""
    out = dataclasses.asdict(self)
    out["targets"] = list(self.targets)
    out["checkpoint_steps"] = list(self.checkpoint_steps)
    return out

  @classmethod
  def from_json(cls, data: dict) -> "MemberSpec":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in fields})

  def same_but_seed(self) -> "MemberSpec":
    """This spec with seed 0: members equal here may be trained together under vmap."""
    return dataclasses.replace(self, seed=0)


@dataclasses.dataclass(frozen=True)
class ZooSpec:
  """A named tuple of distinct members."""
  name: str
  members: tuple[MemberSpec, ...]
  description: str = ""

  def __post_init__(self):
    object.__setattr__(self, "members", tuple(self.members))
    names = [m.name for m in self.members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ValueError(f"members must have distinct names; repeated: {duplicates}")

  def __len__(self):
    return len(self.members)


_PRESETS: dict[str, Callable[[], ZooSpec]] = {}


def _preset(fn: Callable[[], ZooSpec]) -> Callable[[], ZooSpec]:
  _PRESETS[fn.__name__] = fn
  return fn


def zoo_names() -> list[str]:
  """Registered zoo presets."""
  return sorted(_PRESETS)


def zoo_spec(name: str) -> ZooSpec:
  """The registered preset `name` (see `zoo_names()`; each preset's docstring says how to run it)."""
  if name not in _PRESETS:
    raise ValueError(f"zoo must be one of {zoo_names()}, got {name!r}")
  return _PRESETS[name]()


def _grid(*, families: Sequence[str], dataset: str, modality: str, objectives: dict[str, tuple],
          sizes: Iterable[tuple[int, int]], seeds: Iterable[int], steps: int,
          checkpoint_steps: Sequence[int], **schedule) -> list[MemberSpec]:
  return [MemberSpec(family=f, width=w, depth=d, seed=s, dataset=dataset, modality=modality,
                     objective=objective, targets=targets, steps=steps,
                     checkpoint_steps=tuple(checkpoint_steps), **schedule)
          for f in families for objective, targets in objectives.items()
          for w, d in sizes for s in seeds]


def _sizes(widths: Sequence[int], depths: Sequence[int], base_width: int, base_depth: int):
  """Width sweep at the base depth plus depth sweep at the base width (not the full grid)."""
  return [(w, base_depth) for w in widths] + [(base_width, d) for d in depths if d != base_depth]


# Targets of the world dataset the default zoo trains on (its richest attributes).
WORLD_TARGETS = ("target_shape", "target_colour", "target_size", "target_position")


@_preset
def default() -> ZooSpec:
  """The CI-sized zoo: 48 small members, 2 CPUs, a few minutes.

    python scripts/train_zoo.py --zoo=default --zoo_dir=runs/zoo

  Members (each with checkpoints at steps 0, 40, 120 and 300, so competence
  varies within a member):
    - digits images: MLP and CNN, widths 16/32/64 at depth 2 plus depths 1 and
      3 at width 32, supervised on the digit label, seeds 0 and 1 at the base
      size (12 members);
    - world images: MLP (widths 32/64/128, base 64) and CNN (the same sizes as
      digits), multi-task on four attributes, plus a contrastive (NT-Xent)
      member per family at the base size, seeds 0 and 1 (16 members);
    - world captions: bag-of-tokens MLP and Transformer, the same sizes,
      multi-task, supervised on shape only, and contrastive (20 members).

  Expected (measured): 290 s of CPU time in all (17 minutes of wall time
  with the 2 cores shared by about six other jobs); on 2 quiet cores about 5
  minutes, plus ~30 s the first time to prepare the world dataset. Progress
  is printed per member and checkpoint. Heads are near chance at step 0
  (within 0.14 of the majority-class rate) and, averaged over a member's
  targets, 0.23-0.87 above it at step 300, except two hard cases: the world
  images' shape (0.01-0.08 above chance: not learnt in 300 steps) and
  position for CNNs of depth <= 2 (global average pooling). Contrastive
  members report a kNN-probe accuracy, already above chance at step 0
  (random features keep the input's neighbourhoods); it rises for images and
  stays flat or falls for captions.
  """
  schedule = dict(steps=300, checkpoint_steps=(0, 40, 120, 300), batch_size=64,
                  learning_rate=3e-3)
  sizes = _sizes((16, 32, 64), (1, 3), base_width=32, base_depth=2)
  base = [(32, 2)]
  members = []
  members += _grid(families=("mlp", "cnn"), dataset="digits", modality="image",
                   objectives={"supervised": ("label",)}, sizes=sizes, seeds=(0,), **schedule)
  members += _grid(families=("mlp", "cnn"), dataset="digits", modality="image",
                   objectives={"supervised": ("label",)}, sizes=base, seeds=(1,), **schedule)
  # A 16-unit MLP on the world's 1728 raw pixels stalls at chance; its sweep starts at 32.
  mlp_sizes = _sizes((32, 64, 128), (1, 3), base_width=64, base_depth=2)
  for family, modality, family_sizes, family_base in (
      ("mlp", "image", mlp_sizes, [(64, 2)]), ("cnn", "image", sizes, base),
      ("bow", "caption", sizes, base), ("transformer", "caption", sizes, base)):
    members += _grid(families=(family,), dataset="world", modality=modality,
                     objectives={"multitask": WORLD_TARGETS}, sizes=family_sizes, seeds=(0,),
                     **schedule)
    members += _grid(families=(family,), dataset="world", modality=modality,
                     objectives={"multitask": WORLD_TARGETS, "contrastive": WORLD_TARGETS},
                     sizes=family_base, seeds=(1,), **schedule)
    members += _grid(families=(family,), dataset="world", modality=modality,
                     objectives={"contrastive": WORLD_TARGETS}, sizes=family_base, seeds=(0,),
                     **schedule)
  members += _grid(families=("bow", "transformer"), dataset="world", modality="caption",
                   objectives={"supervised": ("target_shape",)}, sizes=base, seeds=(0, 1),
                   **schedule)
  return ZooSpec("default", tuple(members), description=default.__doc__)


@_preset
def gpu() -> ZooSpec:
  """A larger zoo for one accelerator: wider, deeper, longer, more seeds.

    python scripts/train_zoo.py --zoo=gpu --zoo_dir=runs/zoo-gpu

  Every image family (MLP, CNN, ResNet, ViT) and caption family (bag-of-tokens,
  Transformer) at widths 64/128/256 and depths 2/4/6 (width sweep at depth 4,
  depth sweep at width 128), seeds 0-2 at the base size, multi-task,
  supervised and contrastive objectives, 3000 steps of batch 256 with
  checkpoints at 0, 100, 300, 1000 and 3000 steps. Also digits (MLP, CNN).

  Expected: not yet timed on an accelerator (no GPU was available when it was
  written). Each member runs 10x the steps of `default` at 4x the batch and
  up to 4x the width; do not run it on 2 CPUs. Held-out accuracies should
  exceed the default zoo's at the last checkpoint.
  """
  schedule = dict(steps=3000, checkpoint_steps=(0, 100, 300, 1000, 3000), batch_size=256,
                  learning_rate=1e-3)
  sizes = _sizes((64, 128, 256), (2, 6), base_width=128, base_depth=4)
  base = [(128, 4)]
  members = []
  members += _grid(families=("mlp", "cnn"), dataset="digits", modality="image",
                   objectives={"supervised": ("label",)}, sizes=sizes, seeds=(0,), **schedule)
  for families, modality in ((("mlp", "cnn", "resnet", "vit"), "image"),
                             (("bow", "transformer"), "caption")):
    members += _grid(families=families, dataset="world", modality=modality,
                     objectives={"multitask": WORLD_TARGETS}, sizes=sizes, seeds=(0,), **schedule)
    members += _grid(families=families, dataset="world", modality=modality,
                     objectives={"multitask": WORLD_TARGETS}, sizes=base, seeds=(1, 2), **schedule)
    members += _grid(families=families, dataset="world", modality=modality,
                     objectives={"contrastive": WORLD_TARGETS,
                                 "supervised": ("target_shape",)},
                     sizes=base, seeds=(0, 1, 2), **schedule)
  return ZooSpec("gpu", tuple(members), description=gpu.__doc__)


@_preset
def tiny() -> ZooSpec:
  """Three members, a handful of steps: the end-to-end test of the script.

    python scripts/train_zoo.py --zoo=tiny --zoo_dir=/tmp/zoo-tiny

  Expected: seconds on one CPU; accuracies are not meaningful.
  """
  schedule = dict(steps=6, checkpoint_steps=(0, 2, 6), batch_size=16, learning_rate=3e-3)
  members = [
      MemberSpec("mlp", 8, 1, 0, "digits", "image", "supervised", ("label",), **schedule),
      MemberSpec("mlp", 8, 1, 1, "digits", "image", "supervised", ("label",), **schedule),
      MemberSpec("mlp", 8, 1, 0, "digits", "image", "contrastive", ("label",), **schedule),
  ]
  return ZooSpec("tiny", tuple(members), description=tiny.__doc__)


def override_zoo(zoo: ZooSpec, *, member_filter: str | None = None,
                 families: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                 widths: Sequence[int] | None = None, steps: int | None = None,
                 batch_size: int | None = None, learning_rate: float | None = None) -> ZooSpec:
  """`zoo` restricted to some members and with another schedule.

  Args:
    zoo: the preset to change.
    member_filter: comma-separated globs over member names ('digits-*,*-s0').
    families, seeds, widths: keep only members with these values.
    steps: new training length; checkpoint steps are rescaled in proportion.
    batch_size, learning_rate: new values for every member.

  Returns:
    A ZooSpec named like `zoo`. Raises ValueError when nothing is left.
  """
  members = list(zoo.members)
  if member_filter:
    globs = [g.strip() for g in member_filter.split(",") if g.strip()]
    members = [m for m in members if any(fnmatch.fnmatchcase(m.name, g) for g in globs)]
  if families:
    members = [m for m in members if m.family in families]
  if seeds:
    members = [m for m in members if m.seed in seeds]
  if widths:
    members = [m for m in members if m.width in widths]
  if not members:
    raise ValueError(f"no member of zoo {zoo.name!r} is left after the filters")
  if steps is not None and steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  changed = []
  for m in members:
    fields = {}
    if steps is not None:
      fields["steps"] = steps
      fields["checkpoint_steps"] = tuple(round(c * steps / m.steps) for c in m.checkpoint_steps)
    if batch_size is not None:
      fields["batch_size"] = batch_size
    if learning_rate is not None:
      fields["learning_rate"] = learning_rate
    changed.append(dataclasses.replace(m, **fields))
  return ZooSpec(zoo.name, tuple(changed), description=zoo.description)
