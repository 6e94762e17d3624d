"""The zoo's datasets: specs, preparation and loading through `tfds.data_source`.

Our own datasets ('digits', 'world', 'world/small') are TFDS builders prepared
offline to array_record on first use. Standard TFDS datasets ('mnist',
'fashion_mnist', 'cifar10') are read when already prepared as array_record;
otherwise the error says how to prepare them (once, with network access).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import shutil
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from platonic_jax.zoo import _digits
from platonic_jax.zoo import _world
from platonic_jax.zoo import _world_render


class DatasetNotPreparedError(FileNotFoundError):
  """A standard TFDS dataset is not prepared (as array_record) under the data dir."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What `load_dataset(name, ...)` returns, known without reading any data.

  Attributes:
    name: the dataset's name in `load_dataset`.
    image_shape: `(H, W, C)` of the uint8 images.
    targets: target key (e.g. 'label', 'target_shape') -> number of classes.
    vocab_size: caption token ids are in `[0, vocab_size)`, 0 = padding; None
      for image-only datasets.
    caption_length: T of the captions `[N, T]`; None if none.
    latent_dim: L of the latents `[N, L]`; None if none.
    splits: split name -> number of samples.
    tfds_name: the TFDS name (with config) under the data dir.
    class_names: target key -> class names, index = class id.
    latent_names: what each latent column is; None if no latent.
    vocabulary: word of each token id (`vocabulary[0]` is '<pad>'); None if no captions.
    offline: True if prepared from bundled or generated data on first use;
      False if it must be prepared once with network access.
  """
  name: str
  image_shape: tuple[int, int, int]
  targets: dict[str, int]
  vocab_size: int | None
  caption_length: int | None
  latent_dim: int | None
  splits: dict[str, int]
  tfds_name: str
  class_names: dict[str, tuple[str, ...]]
  latent_names: tuple[str, ...] | None = None
  vocabulary: tuple[str, ...] | None = None
  offline: bool = True


_DIGIT_NAMES = tuple(str(d) for d in range(10))
_STANDARD = {
    "mnist": ((28, 28, 1), {"train": 60_000, "test": 10_000}, _DIGIT_NAMES),
    "fashion_mnist": ((28, 28, 1), {"train": 60_000, "test": 10_000},
                      ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot")),
    "cifar10": ((32, 32, 3), {"train": 50_000, "test": 10_000},
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")),
}
_WORLD_NAMES = {"world": "default", "world/small": "small"}


def dataset_names() -> tuple[str, ...]:
  """Every name `load_dataset` and `dataset_spec` accept."""
  return ("digits", *_WORLD_NAMES, *_STANDARD)


def dataset_spec(name: str) -> DatasetSpec:
  """The shapes, targets and split sizes of dataset `name` (reads no data).

  Raises:
    ValueError: unknown `name`.
  """
  if name == "digits":
    return DatasetSpec(
        name=name, image_shape=(8, 8, 1), targets={"label": 10}, vocab_size=None,
        caption_length=None, latent_dim=None,
        splits={"train": _digits.NUM_TRAIN, "test": _digits.NUM_TEST},
        tfds_name=_digits.PlatonicDigits.name, class_names={"label": _DIGIT_NAMES})
  if name in _WORLD_NAMES:
    config = _world_config(name)
    size = config.image_size
    return DatasetSpec(
        name=name, image_shape=(size, size, 3), targets=dict(_world_render.TARGETS),
        vocab_size=_world_render.VOCAB_SIZE, caption_length=_world_render.CAPTION_LENGTH,
        latent_dim=_world_render.LATENT_DIM,
        splits={"train": config.num_train, "test": config.num_test},
        tfds_name=f"{_world.PlatonicWorld.name}/{config.name}",
        class_names=_world_render.class_names(),
        latent_names=_world_render.LATENT_NAMES,
        vocabulary=("<pad>",) + _world_render.VOCABULARY)
  if name in _STANDARD:
    image_shape, splits, names = _STANDARD[name]
    return DatasetSpec(
        name=name, image_shape=image_shape, targets={"label": len(names)}, vocab_size=None,
        caption_length=None, latent_dim=None, splits=dict(splits), tfds_name=name,
        class_names={"label": names}, offline=False)
  raise ValueError(f"`name` must be one of {dataset_names()}, got {name!r}.")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """`data_dir` if given, else `$TFDS_DATA_DIR` if set, else `~/tensorflow_datasets`.

  Read at every call, so setting `TFDS_DATA_DIR` after import takes effect.
  """
  if data_dir is None:
    data_dir = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return pathlib.Path(data_dir).expanduser()


def load_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_examples: int | None = None,
) -> dict[str, np.ndarray]:
  """Loads one split of a dataset into NumPy arrays, preparing our own on first use.

  Args:
    name: one of `dataset_names()`: 'digits', 'world', 'world/small', 'mnist',
      'fashion_mnist', 'cifar10'.
    split: 'train' or 'test'.
    data_dir: TFDS data directory; default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`.
    num_examples: read only the first N samples of the split (all if None).

  Returns:
    'image' uint8 `[N, H, W, C]`, 'id' int64 `[N]` (stable; disjoint between
    the splits: test ids follow the train ids), and either 'label' int64 `[N]`
    (single-label datasets) or, for the world, 'caption' int32 `[N, T]`
    (0 = padding), 'latent' float32 `[N, L]` and one int64 `[N]` entry per
    attribute, `target_<attribute>`.

  Raises:
    ValueError: unknown `name` or `split`, or `num_examples` outside [1, split size].
    DatasetNotPreparedError: a standard dataset is not prepared under the data dir.

  Cost: O(N) record reads and decodes (about 0.4 ms per world sample on a
  busy 2-core machine); the first use of 'world' generates and writes it
  (~30 s there for the default 28,000 samples).
  """
  spec = dataset_spec(name)
  if split not in spec.splits:
    raise ValueError(f"`split` must be one of {tuple(spec.splits)}, got {split!r}.")
  size = spec.splits[split]
  if num_examples is not None and not 1 <= num_examples <= size:
    raise ValueError(f"`num_examples` must be in [1, {size}] for {name!r} {split!r}, "
                     f"got {num_examples}.")
  root = resolve_data_dir(data_dir)
  if spec.offline:
    _prepare_offline(spec, root)
  source = _open_source(spec, split, root)
  count = len(source) if num_examples is None else min(num_examples, len(source))
  records = _read_records(source, count)
  return _to_arrays(spec, split, records)


def prepare_datasets(
    names: Sequence[str] = ("digits", "world"),
    data_dir: str | os.PathLike | None = None,
) -> dict[str, pathlib.Path]:
  """Prepares our offline datasets and checks that the standard ones are prepared.

  Safe to run concurrently and to interrupt: TFDS writes each dataset into a
  temporary directory and renames it when complete, and a file lock lets one
  process prepare a dataset while the others wait for it.

  Args:
    names: dataset names (see `dataset_names()`).
    data_dir: as in `load_dataset`.

  Returns:
    name -> the directory holding its prepared version.

  Raises:
    ValueError: an unknown name.
    DatasetNotPreparedError: a standard dataset is not prepared (the message says how).
  """
  specs = [dataset_spec(name) for name in names]
  root = resolve_data_dir(data_dir)
  paths = {}
  for spec in specs:
    if spec.offline:
      paths[spec.name] = _prepare_offline(spec, root)
    else:
      _open_source(spec, "test", root)
      paths[spec.name] = pathlib.Path(tfds.builder(spec.tfds_name, data_dir=root).data_dir)
  return paths


def _world_config(name: str) -> _world.WorldConfig:
  config_name = _WORLD_NAMES[name]
  return next(c for c in _world.WORLD_CONFIGS if c.name == config_name)


def _offline_builder(spec: DatasetSpec, root: pathlib.Path) -> tfds.core.DatasetBuilder:
  if spec.name == "digits":
    return _digits.PlatonicDigits(data_dir=root)
  return _world.PlatonicWorld(data_dir=root, config=_world_config(spec.name))


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path):
  """Holds an exclusive advisory lock on `lock_path` (created if missing)."""
  lock_path.parent.mkdir(parents=True, exist_ok=True)
  with open(lock_path, "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_offline(spec: DatasetSpec, root: pathlib.Path) -> pathlib.Path:
  """Prepares one of our builders under `root` unless a complete copy exists."""
  builder = _offline_builder(spec, root)
  if not builder.is_prepared():
    lock = root / f".{spec.tfds_name.replace('/', '-')}.prepare.lock"
    with _exclusive(lock):
      builder = _offline_builder(spec, root)  # another process may have finished meanwhile
      if not builder.is_prepared():
        _remove_incomplete(pathlib.Path(builder.data_dir))
        builder.download_and_prepare(file_format="array_record")
  return pathlib.Path(builder.data_dir)


def _remove_incomplete(version_dir: pathlib.Path) -> None:
  """Deletes temporary directories that killed preparations left beside `version_dir`.

  Called under the preparation lock, so no live preparation of ours writes there.
  """
  for stale in version_dir.parent.glob(f"incomplete.*_{version_dir.name}"):
    shutil.rmtree(stale, ignore_errors=True)


def _not_prepared_message(spec: DatasetSpec, root: pathlib.Path) -> str:
  return (
      f"Dataset {spec.name!r} is not prepared as array_record under data_dir={str(root)!r} "
      f"(set by data_dir=, else $TFDS_DATA_DIR, else ~/tensorflow_datasets). Prepare it once on a "
      f"machine with network access and TensorFlow (TFDS needs it to encode the images): "
      f"`pip install tensorflow tensorflow-datasets && tfds build {spec.tfds_name} "
      f"--data_dir={root} --file_format=array_record`, or in Python "
      f"`tfds.builder({spec.tfds_name!r}, data_dir={str(root)!r})"
      f".download_and_prepare(file_format='array_record')`; then copy "
      f"{root / spec.tfds_name} here or point data_dir / TFDS_DATA_DIR at its parent.")


def _open_source(spec: DatasetSpec, split: str, root: pathlib.Path):
  """The TFDS random-access source of one split."""
  try:
    return tfds.data_source(spec.tfds_name, split=split, data_dir=root, download=False)
  except (NotImplementedError, FileNotFoundError, AssertionError) as error:
    # TFDS reports a missing dataset as a missing array_record variant (NotImplementedError).
    if spec.offline:
      raise
    raise DatasetNotPreparedError(_not_prepared_message(spec, root)) from error


def _read_records(source, count: int) -> list[dict]:
  """The first `count` decoded records.

  One `source[i]` at a time: decoding dominates the cost (batched
  `__getitems__` saves ~30%), and `tfds.testing.mock_data`'s source breaks on
  `__getitems__`.
  """
  return [source[i] for i in range(count)]


def _to_arrays(spec: DatasetSpec, split: str, records: list[dict]) -> dict[str, np.ndarray]:
  """Stacks records into the contract's arrays and dtypes."""
  out = {"image": np.stack([r["image"] for r in records]).astype(np.uint8, copy=False)}
  if spec.offline:
    out["id"] = np.array([r["id"] for r in records], np.int64)
  else:
    # Standard datasets carry no integer id: the record index, test after train.
    offset = 0 if split == "train" else spec.splits["train"]
    out["id"] = offset + np.arange(len(records), dtype=np.int64)
  for key in spec.targets:
    out[key] = np.array([r[key] for r in records], np.int64)
  if spec.vocab_size is not None:
    out["caption"] = np.stack([r["caption"] for r in records]).astype(np.int32, copy=False)
  if spec.latent_dim is not None:
    out["latent"] = np.stack([r["latent"] for r in records]).astype(np.float32, copy=False)
  if out["image"].shape[1:] != spec.image_shape:
    raise ValueError(f"{spec.name!r} images are {out['image'].shape[1:]}, "
                     f"expected {spec.image_shape}; was it prepared with another version?")
  return out
