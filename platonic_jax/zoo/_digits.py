"""scikit-learn's bundled handwritten digits as a TFDS builder (array_record, offline)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from sklearn import datasets as sk_datasets
from sklearn import model_selection

# Fixed split: stratified by digit, 20% test, shuffled with this seed.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
NUM_TRAIN, NUM_TEST = 1437, 360


def digits_split() -> dict[str, np.ndarray]:
  """Indices into `sklearn.datasets.load_digits()` of each split, int64, ascending."""
  labels = sk_datasets.load_digits().target
  train, test = model_selection.train_test_split(
      np.arange(labels.shape[0]), test_size=TEST_FRACTION, stratify=labels,
      random_state=SPLIT_SEED)
  return {"train": np.sort(train).astype(np.int64), "test": np.sort(test).astype(np.int64)}


class PlatonicDigits(tfds.core.GeneratorBasedBuilder):
  """1,797 8x8 grey handwritten digits (UCI, shipped with scikit-learn), uint8 0..255.

  The original 0..16 intensities are scaled by 255/16 and rounded. `id` is the
  sample's index in `sklearn.datasets.load_digits()`.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Stratified 80/20 split, seed 0."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the `importlib_resources` backport for package modules.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Scalar(dtype=np.int64),
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # offline: the data ship with scikit-learn
    return {split: self._generate_examples(index) for split, index in digits_split().items()}

  def _generate_examples(self, index: np.ndarray):
    digits = sk_datasets.load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in index:
      yield int(i), {"id": int(i), "image": images[i], "label": int(digits.target[i])}
