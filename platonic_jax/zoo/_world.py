"""The procedurally generated world as a TFDS builder (array_record, no TensorFlow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from platonic_jax.zoo import _world_render


@dataclasses.dataclass
class WorldConfig(tfds.core.BuilderConfig):
  """Size and seed of one world variant; the config name names its directory.

  Attributes:
    num_train: samples in the 'train' split (ids 0 .. num_train - 1).
    num_test: samples in the 'test' split (ids num_train .. num_train + num_test - 1).
    seed: generation seed; train and test draw from independent streams of it.
    image_size: image height and width in pixels.
  """
  num_train: int = 24_000
  num_test: int = 4_000
  seed: int = 0
  image_size: int = 24


WORLD_CONFIGS = (
    WorldConfig(name="default", description="24,000 train + 4,000 test scenes, seed 0."),
    WorldConfig(name="small", num_train=2_000, num_test=500,
                description="2,000 train + 500 test scenes, seed 0 (quick tests)."),
)


class PlatonicWorld(tfds.core.GeneratorBasedBuilder):
  """Latent scenes seen as a small RGB image and as a caption of token ids."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Shapes, colours, sizes, counts and quadrants; 5 caption templates."}
  BUILDER_CONFIGS = list(WORLD_CONFIGS)
  DEFAULT_CONFIG_NAME = "default"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the `importlib_resources` backport for package modules.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    features = {
        "id": tfds.features.Scalar(dtype=np.int64),
        "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
        "caption": tfds.features.Tensor(shape=(_world_render.CAPTION_LENGTH,), dtype=np.int32),
        "latent": tfds.features.Tensor(shape=(_world_render.LATENT_DIM,), dtype=np.float32),
    }
    features.update({key: tfds.features.ClassLabel(names=names)
                     for key, names in _world_render.class_names().items()})
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__ + "\n" + _world_render.__doc__,
        features=tfds.features.FeaturesDict(features),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # offline: nothing to download
    return {"train": self._generate_examples(0), "test": self._generate_examples(1)}

  def _generate_examples(self, split_index: int):
    config = self.builder_config
    num = (config.num_train, config.num_test)[split_index]
    first_id = (0, config.num_train)[split_index]
    data = _world_render.generate_world(num, config.seed, split_index, config.image_size)
    for i in range(num):
      example = {key: value[i] for key, value in data.items()}
      example["id"] = first_id + i
      yield first_id + i, example
