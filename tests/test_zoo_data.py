"""Zoo datasets: builders, schema, determinism, learnability, standard TFDS readers, preparation."""

import dataclasses
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets
from sklearn import linear_model
from sklearn import preprocessing

from platonic_jax import zoo
from platonic_jax.zoo import _data
from platonic_jax.zoo import _world
from platonic_jax.zoo import _world_render

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_WORLD = _world.WorldConfig(name="tiny", num_train=96, num_test=32, seed=5)


@pytest.fixture
def tiny_world(monkeypatch):
  """'world' resolves to a 96 + 32 sample config, so preparation takes a fraction of a second."""
  monkeypatch.setattr(_data, "_world_config", lambda name: TINY_WORLD)
  return TINY_WORLD


def assert_world_schema(data, num, image_size=24):
  spec = zoo.dataset_spec("world")
  assert set(data) == {"image", "caption", "latent", "id", *spec.targets}
  assert data["image"].dtype == np.uint8 and data["image"].shape == (num, image_size, image_size, 3)
  assert data["caption"].dtype == np.int32 and data["caption"].shape == (num, spec.caption_length)
  assert data["latent"].dtype == np.float32 and data["latent"].shape == (num, spec.latent_dim)
  assert data["id"].dtype == np.int64 and data["id"].shape == (num,)
  for key, classes in spec.targets.items():
    assert data[key].dtype == np.int64 and data[key].shape == (num,)
    assert 0 <= data[key].min() and data[key].max() < classes, key
  caption = data["caption"]
  assert 0 <= caption.min() and caption.max() < spec.vocab_size
  lengths = (caption > 0).sum(1)
  assert lengths.min() >= 5
  # Padding only at the end: every token after the first 0 is 0.
  assert not np.any((np.cumsum(caption == 0, axis=1) > 0) & (caption > 0))


def test_world_is_deterministic_in_its_seed_and_split():
  first = zoo.generate_world(200, seed=0, split_index=0)
  again = zoo.generate_world(200, seed=0, split_index=0)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key], err_msg=key)
  for other in (zoo.generate_world(200, seed=1, split_index=0),
                zoo.generate_world(200, seed=0, split_index=1)):
    for key in ("image", "caption", "latent"):
      assert not np.array_equal(first[key], other[key]), key


def test_world_latent_targets_and_captions_agree():
  data = zoo.generate_world(400, seed=3, split_index=0)
  assert_world_schema({**data, "id": np.arange(400, dtype=np.int64)}, 400)
  latent, names = data["latent"], zoo.dataset_spec("world").latent_names
  column = {name: i for i, name in enumerate(names)}
  np.testing.assert_array_equal(latent[:, 0:4].argmax(1), data["target_shape"])
  np.testing.assert_array_equal(latent[:, 4:10].argmax(1), data["target_colour"])
  np.testing.assert_array_equal(np.rint(latent[:, column["count"]] * 4) - 1, data["target_count"])
  x, y = latent[:, column["centre_x"]], latent[:, column["centre_y"]]
  np.testing.assert_array_equal((x > 0.5) + 2 * (y > 0.5), data["target_position"])
  radius = latent[:, column["radius"]]
  assert np.all(np.diff([radius[data["target_size"] == s].max() for s in range(3)]) > 0)
  # Every caption names its colour and count in one of their wordings.
  spec = zoo.dataset_spec("world")
  for i in range(40):
    text = zoo.caption_text(data["caption"][i])
    assert text.split() == [spec.vocabulary[t] for t in data["caption"][i] if t]
    colour_words = _world_render._COLOUR_WORDS[data["target_colour"][i]]
    assert any(word in text.split() for word in colour_words), text
    count_words = _world_render._COUNT_WORDS[data["target_count"][i]]
    assert any(f" {word} " in f" {text} " for word in count_words), text
  # Wording varies for one latent: many distinct captions of the same attributes.
  scenes = _world_render.sample_scenes(np.random.default_rng(0), 30)
  zeros = np.zeros(30, np.int64)
  scenes = dataclasses.replace(scenes, shape=zeros, colour=zeros, size=zeros, count=zeros,
                               position=zeros)
  captions = _world_render.caption_tokens(scenes, np.random.default_rng(1))
  assert len({tuple(c) for c in captions}) >= 10


def image_features(images):
  """Translation-invariant hand features: chroma spectrum, mean object colour, coarse chroma map."""
  x = images.astype(np.float32) / 255.0
  chroma = x.max(-1) - x.min(-1)  # clutter and background are grey: chroma sees the objects
  spectrum = np.log1p(np.abs(np.fft.rfft2(chroma))).reshape(len(x), -1)
  colour = (x * chroma[..., None]).sum((1, 2)) / (chroma.sum((1, 2))[:, None] + 1e-6)
  s = x.shape[1] // 4
  coarse = chroma.reshape(len(x), 4, s, 4, s).mean((2, 4)).reshape(len(x), -1)
  return np.concatenate([spectrum, colour, coarse], 1)


def bag_of_words(captions, vocab_size):
  counts = np.zeros((len(captions), vocab_size), np.float32)
  np.add.at(counts, (np.repeat(np.arange(len(captions)), captions.shape[1]), captions.ravel()), 1)
  return counts[:, 1:]


def probe_accuracy(train_x, train_y, test_x, test_y):
  scaler = preprocessing.StandardScaler().fit(train_x)
  model = linear_model.RidgeClassifier(alpha=10.0).fit(scaler.transform(train_x), train_y)
  return model.score(scaler.transform(test_x), test_y)


def test_every_world_attribute_is_learnable_from_each_modality():
  train = zoo.generate_world(2000, seed=0, split_index=0)
  test = zoo.generate_world(500, seed=0, split_index=1)
  spec = zoo.dataset_spec("world")
  views = {"image": (image_features(train["image"]), image_features(test["image"])),
           "caption": (bag_of_words(train["caption"], spec.vocab_size),
                       bag_of_words(test["caption"], spec.vocab_size))}
  for modality, (train_x, test_x) in views.items():
    for key, classes in spec.targets.items():
      accuracy = probe_accuracy(train_x, train[key], test_x, test[key])
      assert accuracy > 0.5 + 0.5 / classes, (modality, key, accuracy)


def test_world_builder_writes_what_the_generator_gives(tmp_path):
  builder = _world.PlatonicWorld(data_dir=tmp_path, config=TINY_WORLD)
  builder.download_and_prepare(file_format="array_record")
  ids = {}
  for split_index, (split, size) in enumerate((("train", 96), ("test", 32))):
    source = tfds.data_source("platonic_world/tiny", split=split, data_dir=tmp_path)
    assert len(source) == size
    records = [source[i] for i in range(size)]
    expected = zoo.generate_world(size, seed=5, split_index=split_index)
    for key, value in expected.items():
      np.testing.assert_array_equal(np.stack([r[key] for r in records]), value, err_msg=key)
    ids[split] = np.array([r["id"] for r in records])
  np.testing.assert_array_equal(ids["train"], np.arange(96))
  np.testing.assert_array_equal(ids["test"], np.arange(96, 128))
  assert "tensorflow" not in sys.modules


def test_load_world_schema_splits_and_num_examples(tmp_path, tiny_world):
  train = zoo.load_dataset("world", "train", data_dir=tmp_path)
  test = zoo.load_dataset("world", "test", data_dir=tmp_path, num_examples=10)
  assert_world_schema(train, 96)
  assert_world_schema(test, 10)
  assert not set(train["id"]) & set(test["id"])
  assert zoo.dataset_spec("world").splits == {"train": 96, "test": 32}
  np.testing.assert_array_equal(test["image"], zoo.generate_world(32, 5, 1)["image"][:10])


def test_digits_split_values_and_learnability(tmp_path):
  train = zoo.load_dataset("digits", "train", data_dir=tmp_path)
  test = zoo.load_dataset("digits", "test", data_dir=tmp_path)
  spec = zoo.dataset_spec("digits")
  assert spec.splits == {"train": len(train["id"]), "test": len(test["id"])} == {
      "train": 1437, "test": 360}
  reference = sk_datasets.load_digits()
  for data in (train, test):
    assert set(data) == {"image", "label", "id"}
    assert data["image"].dtype == np.uint8 and data["image"].shape[1:] == (8, 8, 1)
    assert data["label"].dtype == np.int64 and data["id"].dtype == np.int64
    expected = np.rint(reference.images[data["id"]] * 255 / 16)[..., None]
    np.testing.assert_array_equal(data["image"], expected)
    np.testing.assert_array_equal(data["label"], reference.target[data["id"]])
  assert train["image"].max() == 255 and train["image"].min() == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([train["id"], test["id"]])), np.arange(1797))
  # Stratified: every digit has 20% +- 1 sample of its images in the test split.
  per_class = np.bincount(reference.target)
  np.testing.assert_allclose(np.bincount(test["label"]), 0.2 * per_class, atol=1)
  accuracy = probe_accuracy(train["image"].reshape(1437, -1), train["label"],
                            test["image"].reshape(360, -1), test["label"])
  assert accuracy > 0.85, accuracy


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_standard_datasets_read_through_mock_data(tmp_path, name):
  spec = zoo.dataset_spec(name)
  builder_info = tfds.builder(name, data_dir=tmp_path).info.features
  assert builder_info["image"].shape == spec.image_shape
  assert builder_info["label"].num_classes == spec.targets["label"]
  if name != "cifar10":  # cifar10's class names come with its downloaded files
    assert tuple(builder_info["label"].names) == spec.class_names["label"]
  with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
    test = zoo.load_dataset(name, "test", data_dir=tmp_path)
    train = zoo.load_dataset(name, "train", data_dir=tmp_path, num_examples=3)
  assert set(test) == {"image", "label", "id"}
  assert test["image"].dtype == np.uint8 and test["image"].shape == (7, *spec.image_shape)
  assert test["label"].dtype == np.int64 and test["label"].max() < 10
  np.testing.assert_array_equal(train["id"], np.arange(3))
  np.testing.assert_array_equal(test["id"], spec.splits["train"] + np.arange(7))
  assert "tensorflow" not in sys.modules


def test_unprepared_standard_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(zoo.DatasetNotPreparedError) as raised:
    zoo.load_dataset("fashion_mnist", "train", data_dir=tmp_path)
  message = str(raised.value)
  assert f"tfds build fashion_mnist --data_dir={tmp_path} --file_format=array_record" in message
  assert "network" in message and "TFDS_DATA_DIR" in message
  assert isinstance(raised.value, FileNotFoundError)


def test_bad_arguments_name_the_argument(tmp_path):
  for kwargs, argument in ((dict(name="imagenet", split="train"), "`name`"),
                           (dict(name="digits", split="validation"), "`split`"),
                           (dict(name="digits", split="test", num_examples=361), "`num_examples`"),
                           (dict(name="digits", split="test", num_examples=0), "`num_examples`")):
    with pytest.raises(ValueError, match=argument):
      zoo.load_dataset(**kwargs, data_dir=tmp_path)
  assert not list(tmp_path.iterdir())  # rejected before anything is prepared


def test_data_dir_argument_then_environment_then_home(tmp_path, monkeypatch, tiny_world):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert zoo.resolve_data_dir() == tmp_path / "env"
  assert zoo.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
  zoo.load_dataset("world", "test", num_examples=2)
  assert (tmp_path / "env" / "platonic_world" / "tiny" / "1.0.0" / "dataset_info.json").exists()
  zoo.load_dataset("world", "test", data_dir=tmp_path / "arg", num_examples=2)
  assert (tmp_path / "arg" / "platonic_world" / "tiny" / "1.0.0").exists()
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert zoo.resolve_data_dir() == tmp_path / "home" / "tensorflow_datasets"


def test_interrupted_preparation_leaves_nothing_that_looks_prepared(tmp_path, tiny_world,
                                                                  monkeypatch):
  original = _world.PlatonicWorld._generate_examples

  def interrupted(self, split_index):
    for i, example in enumerate(original(self, split_index)):
      if split_index == 1 and i == 5:
        raise KeyboardInterrupt
      yield example

  monkeypatch.setattr(_world.PlatonicWorld, "_generate_examples", interrupted)
  with pytest.raises(KeyboardInterrupt):
    zoo.prepare_datasets(["world"], tmp_path)
  assert not _world.PlatonicWorld(data_dir=tmp_path, config=TINY_WORLD).is_prepared()
  assert not (tmp_path / "platonic_world" / "tiny" / "1.0.0").exists()
  # A killed (not interrupted) run leaves its temporary directory; the next preparation removes it.
  stale = tmp_path / "platonic_world" / "tiny" / "incomplete.KILLED_1.0.0"
  stale.mkdir(parents=True)
  (stale / "platonic_world-train.array_record-00000-of-00001").write_bytes(b"partial")
  monkeypatch.setattr(_world.PlatonicWorld, "_generate_examples", original)
  assert len(zoo.load_dataset("world", "test", data_dir=tmp_path)["id"]) == 32
  assert [p.name for p in (tmp_path / "platonic_world" / "tiny").iterdir()] == ["1.0.0"]


def test_concurrent_preparation_prepares_once_and_both_read_it(tmp_path, tiny_world):
  results, errors = [None, None], []

  def load(slot):
    try:
      results[slot] = zoo.load_dataset("world", "train", data_dir=tmp_path)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  threads = [threading.Thread(target=load, args=(slot,)) for slot in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert not errors, errors
  for key in results[0]:
    np.testing.assert_array_equal(results[0][key], results[1][key])


def test_prepare_script_end_to_end(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  command = [sys.executable, str(ROOT / "scripts" / "prepare_data.py")]
  done = subprocess.run([*command, "--datasets=digits,cifar10", f"--data_dir={tmp_path}"],
                        env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert f"digits: {tmp_path}/platonic_digits/1.0.0 (train 1437, test 360)" in done.stdout
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "tfds build cifar10" in errors[0] and "Traceback" not in done.stderr
  done = subprocess.run([*command, "--help"], env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and "--datasets" in done.stdout
