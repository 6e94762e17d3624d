"""Feature store, streaming extraction, raw-input baseline and zoo-wide extraction.

Datasets and checkpoints are stood in for by synthetic arrays of the
contract's shapes and by encoders built in the test (injected through
`extract_zoo_features`'s `load_dataset`, `dataset_spec` and `restore`).
"""

import dataclasses
import json
import os
import pathlib
import pickle
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

import platonic_jax as pj
from platonic_jax import zoo


@dataclasses.dataclass(frozen=True)
class Spec:
  name: str = "synthetic"
  image_shape: tuple = (8, 8, 1)
  vocab_size: int = 20
  caption_length: int = 10


SPEC = Spec()
N = 23  # not a multiple of any batch size used below


def synthetic_dataset(n=N, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, SPEC.vocab_size, (n, SPEC.caption_length)).astype(np.int32)
  tokens[np.arange(SPEC.caption_length)[None, :] >= rng.integers(3, 11, n)[:, None]] = 0
  return {"image": rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), "caption": tokens,
          "id": np.arange(100, 100 + n, dtype=np.int64)}


DATA = synthetic_dataset()


def encoder(family, seed=0, width=8, depth=2):
  modality = zoo.encoder_families()[family].modality
  return zoo.make_encoder(family, width=width, depth=depth, dataset_spec=SPEC, modality=modality,
                          rngs=nnx.Rngs(seed))


def layers_fixture(rng, widths=(3, 5), n=7):
  return [rng.standard_normal((n, d)).astype(np.float32) for d in widths]


# -- store ----------------------------------------------------------------------


def test_store_round_trip_is_bitwise_and_keeps_metadata(tmp_path, rng):
  layers = layers_fixture(rng)
  ids = np.array([9, 3, 7, 1, 0, 4, 2], np.int64)
  meta = {"model": "m", "step": 40, "layer_names": ["a", "b"], "pooling": "mean",
          "dataset": "digits", "split": "test", "sample_ids": ids, "eval": {"loss": 0.5}}
  path = zoo.save_layer_features(tmp_path / "store", "m-step40", layers, meta)
  assert path == tmp_path / "store" / "m-step40.safetensors"
  assert (tmp_path / "store" / "m-step40.json").is_file()
  assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [
      "m-step40.json", "m-step40.safetensors"]  # no temp files left behind
  for where in (path, path.with_suffix(""), path.with_suffix(".json"), str(path)):
    loaded, got = zoo.load_layer_features(where)
    assert len(loaded) == 2
    for a, b in zip(layers, loaded):
      assert b.dtype == np.float32 and a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(got["sample_ids"], ids)
    assert got["sample_ids"].dtype == np.int64
    assert {k: got[k] for k in ("model", "step", "layer_names", "pooling", "dataset", "split",
                                "eval")} == {k: meta[k] for k in meta if k != "sample_ids"}
    assert got["num_examples"] == 7 and got["layer_dims"] == [3, 5]
  assert "sample_ids" in meta  # the caller's dict is not modified


def test_store_defaults_layer_names_and_positional_ids(tmp_path, rng):
  _, meta = zoo.load_layer_features(
      zoo.save_layer_features(tmp_path, "x", layers_fixture(rng), {}))
  assert meta["layer_names"] == ["layer_000", "layer_001"]
  np.testing.assert_array_equal(meta["sample_ids"], np.arange(7))


def test_store_rejects_bad_input_on_save(tmp_path, rng):
  a, b = layers_fixture(rng)
  with pytest.raises(ValueError, match="same N"):
    zoo.save_layer_features(tmp_path, "x", [a, b[:5]], {})
  bad = a.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    zoo.save_layer_features(tmp_path, "x", [bad], {})
  with pytest.raises(ValueError, match="layer_names"):
    zoo.save_layer_features(tmp_path, "x", [a, b], {"layer_names": ["only_one"]})
  with pytest.raises(ValueError, match="unique"):
    zoo.save_layer_features(tmp_path, "x", [a], {"sample_ids": np.zeros(7, np.int64)})
  with pytest.raises(ValueError, match="sample_ids"):
    zoo.save_layer_features(tmp_path, "x", [a], {"sample_ids": np.arange(6)})
  with pytest.raises(ValueError, match="JSON"):
    zoo.save_layer_features(tmp_path, "x", [a], {"when": object()})
  with pytest.raises(ValueError, match="`name`"):
    zoo.save_layer_features(tmp_path, "../x", [a], {})
  with pytest.raises(ValueError, match="`layers`"):
    zoo.save_layer_features(tmp_path, "x", a, {})
  assert not list(tmp_path.iterdir())  # nothing written by a rejected call


def test_store_rejects_missing_pickled_unreadable_and_inconsistent_files(tmp_path, rng):
  layers = layers_fixture(rng)
  path = zoo.save_layer_features(tmp_path, "ok", layers, {})
  with pytest.raises(ValueError, match="does not exist"):
    zoo.load_layer_features(tmp_path / "absent")
  path.with_suffix(".json").unlink()  # a write interrupted before the sidecar
  with pytest.raises(ValueError, match="ok.json does not exist"):
    zoo.load_layer_features(path)

  (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"layer_000": layers[0]}))
  (tmp_path / "p.json").write_text(json.dumps({"layer_names": ["a"]}))
  with pytest.raises(ValueError, match="pickle"):
    zoo.load_layer_features(tmp_path / "p")
  with pytest.raises(ValueError, match="pickle"):
    zoo.load_layer_features(tmp_path / "features.pt")

  (tmp_path / "g.safetensors").write_bytes(b"garbage, not a header")
  (tmp_path / "g.json").write_text(json.dumps({"layer_names": ["a"]}))
  with pytest.raises(ValueError, match="not a readable safetensors"):
    zoo.load_layer_features(tmp_path / "g")

  def write(name, tensors, names):
    safetensors.numpy.save_file(tensors, str(tmp_path / f"{name}.safetensors"))
    (tmp_path / f"{name}.json").write_text(json.dumps({"layer_names": names}))
    return tmp_path / name

  ids = np.arange(7, dtype=np.int64)
  nan = layers[0].copy()
  nan[1, 1] = np.inf
  with pytest.raises(ValueError, match="non-finite"):
    zoo.load_layer_features(write("nan", {"layer_000": nan, "sample_ids": ids}, ["a"]))
  with pytest.raises(ValueError, match="different N"):
    zoo.load_layer_features(write("n", {"layer_000": layers[0], "layer_001": layers[1][:4],
                                        "sample_ids": ids}, ["a", "b"]))
  with pytest.raises(ValueError, match="expected"):
    zoo.load_layer_features(write("extra", {"layer_000": layers[0], "sample_ids": ids},
                                  ["a", "b"]))
  with pytest.raises(ValueError, match="sample_ids must be int64"):
    zoo.load_layer_features(write("ids", {"layer_000": layers[0], "sample_ids": ids[:3]}, ["a"]))
  (tmp_path / "j.safetensors").write_bytes(path.read_bytes())
  (tmp_path / "j.json").write_text("{not json")
  with pytest.raises(ValueError, match="JSON sidecar"):
    zoo.load_layer_features(tmp_path / "j")


# -- extraction -----------------------------------------------------------------


@pytest.mark.parametrize("family,key", [("cnn", "image"), ("transformer", "caption")])
def test_batched_and_sharded_extraction_equal_one_shot_capture(family, key):
  model = encoder(family)
  one_shot = [np.asarray(a) for a in nnx.jit(zoo.layer_features)(model, jnp.asarray(DATA[key]))]
  batched = zoo.extract_features(model, DATA[key], batch_size=8)
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  sharded = zoo.extract_features(model, DATA[key], batch_size=8, mesh=mesh)
  assert [a.shape for a in batched] == [a.shape for a in one_shot]
  for a, b, c in zip(one_shot, batched, sharded):
    assert b.dtype == np.float32 and isinstance(b, np.ndarray)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)


def test_extraction_takes_any_nnx_module_or_a_linen_apply_function():
  class Tiny(nnx.Module):

    def __init__(self, rngs):
      self.first = nnx.Linear(64, 6, rngs=rngs)
      self.second = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
      return self.second(jax.nn.relu(self.first(x.reshape(x.shape[0], -1) / 255.0)))

  model = Tiny(nnx.Rngs(0))
  x = DATA["image"].astype(np.float32)
  got = zoo.extract_features(model, x, batch_size=10)
  expected = zoo.nnx_layer_features(model, jnp.asarray(x))
  assert list(expected) == ["__call__", "first/__call__", "second/__call__"]
  for a, b in zip(got, expected.values()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  class Linen(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(4)(nn.relu(nn.Dense(5)(x.reshape(x.shape[0], -1))))

  module = Linen()
  variables = module.init(jax.random.key(0), x[:1])

  def apply(batch):
    return zoo.linen_layer_features(module, variables, batch)

  got = zoo.extract_features(apply, x, batch_size=10)
  for a, b in zip(got, apply(jnp.asarray(x)).values()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_extraction_rejects_bad_arguments():
  with pytest.raises(ValueError, match="`batch_size`"):
    zoo.extract_features(encoder("mlp"), DATA["image"], batch_size=0)
  with pytest.raises(ValueError, match="leading dimension"):
    zoo.extract_features(lambda x: [x["a"]], {"a": np.ones((3, 2)), "b": np.ones((4, 2))},
                         batch_size=2)
  with pytest.raises(ValueError, match="`model_or_apply`"):
    zoo.extract_features(42, DATA["image"], batch_size=2)


def test_raw_input_baseline_is_pixels_and_token_counts():
  pixels = zoo.raw_input_features(DATA["image"], modality="image")
  np.testing.assert_array_equal(pixels["pixels"],
                                DATA["image"].reshape(N, -1).astype(np.float32) / 255)
  counts = zoo.raw_input_features(DATA["caption"], modality="caption", vocab_size=20)
  expected = np.stack([np.bincount(row, minlength=20)[1:] for row in DATA["caption"]])
  np.testing.assert_array_equal(counts["token_counts"], expected)
  with pytest.raises(ValueError, match="`vocab_size`"):
    zoo.raw_input_features(DATA["caption"], modality="caption")
  with pytest.raises(ValueError, match="token ids must lie"):
    zoo.raw_input_features(DATA["caption"], modality="caption", vocab_size=5)
  with pytest.raises(ValueError, match="`modality`"):
    zoo.raw_input_features(DATA["image"], modality="audio")


def test_zoo_alignment_on_stored_features_equals_in_memory(tmp_path):
  members = {"mlp": encoder("mlp"), "cnn": encoder("cnn", depth=3)}  # widths 8, 8 and 64
  in_memory = [zoo.extract_features(m, DATA["image"], batch_size=16) for m in members.values()]
  in_memory.append(list(zoo.raw_input_features(DATA["image"], modality="image").values()))
  loaded = []
  for i, layers in enumerate(in_memory):
    path = zoo.save_layer_features(tmp_path, f"m{i}", layers, {"sample_ids": DATA["id"]})
    loaded.append(zoo.load_layer_features(path)[0])
  a = pj.zoo_alignment(in_memory, "mutual_knn", k=5)
  b = pj.zoo_alignment(loaded, "mutual_knn", k=5)
  np.testing.assert_array_equal(a.scores, b.scores)
  np.testing.assert_array_equal(a.best_layers, b.best_layers)


# -- a whole zoo ------------------------------------------------------------------


def fake_zoo(tmp_path):
  """Two members' manifests; 'checkpoints' are encoders seeded by their step."""
  specs = {"img-cnn": ("cnn", "image"), "cap-transformer": ("transformer", "caption")}
  for member, (family, modality) in specs.items():
    (tmp_path / "zoo" / member).mkdir(parents=True)
    manifest = {"member": member, "num_params": 1, "complete": True, "train_seconds": 0.0,
                "spec": {"family": family, "width": 8, "depth": 1, "seed": 0,
                         "dataset": "synthetic", "modality": modality},
                "checkpoints": [{"step": s, "path": f"checkpoints/{s}",
                                 "eval": {"loss": 1.0, "accuracy": {}}} for s in (0, 5)]}
    (tmp_path / "zoo" / member / "manifest.json").write_text(json.dumps(manifest))
  restored = []

  def restore(member_dir, step):
    restored.append((member_dir.name, step))
    family = specs[member_dir.name][0]
    return encoder(family, seed=step, width=8, depth=1)

  def load_dataset(name, split, *, data_dir=None, num_examples=None):
    assert (name, split) == ("synthetic", "test")
    return {k: v[:num_examples] for k, v in DATA.items()}

  kwargs = dict(restore=restore, load_dataset=load_dataset, dataset_spec=lambda name: SPEC,
                split="test", num_examples=17, batch_size=8, log=lambda line: None)
  return tmp_path / "zoo", kwargs, restored


def test_extract_zoo_features_writes_every_member_checkpoint_and_baseline_then_resumes(tmp_path):
  zoo_dir, kwargs, restored = fake_zoo(tmp_path)
  out = tmp_path / "features"
  paths = zoo.extract_zoo_features(zoo_dir, out, **kwargs)
  assert sorted(p.relative_to(out).as_posix() for p in paths) == sorted([
      "test/raw-synthetic-image/step_000000.safetensors",
      "test/raw-synthetic-caption/step_000000.safetensors",
      "test/img-cnn/step_000000.safetensors", "test/img-cnn/step_000005.safetensors",
      "test/cap-transformer/step_000000.safetensors",
      "test/cap-transformer/step_000005.safetensors"])
  layers, meta = zoo.load_layer_features(zoo.features_path(out, "test", "img-cnn", 5))
  expected = zoo.extract_features(encoder("cnn", seed=5, width=8, depth=1), DATA["image"][:17],
                                  batch_size=8)
  for a, b in zip(layers, expected):
    np.testing.assert_array_equal(a, b)
  assert meta["layer_names"] == ["conv_0", "dense"] and meta["step"] == 5
  assert meta["model"] == "img-cnn" and meta["split"] == "test" and meta["num_examples"] == 17
  np.testing.assert_array_equal(meta["sample_ids"], DATA["id"][:17])
  raw, raw_meta = zoo.load_layer_features(out / "test/raw-synthetic-caption/step_000000")
  assert raw_meta["layer_names"] == ["token_counts"] and raw[0].shape == (17, 19)

  # Resume: nothing is recomputed; an entry missing its sidecar or of another N is redone.
  restored.clear()
  zoo.features_path(out, "test", "img-cnn", 0).with_suffix(".json").unlink()
  zoo.extract_zoo_features(zoo_dir, out, **kwargs)
  assert restored == [("img-cnn", 0)]
  restored.clear()
  zoo.extract_zoo_features(zoo_dir, out, **{**kwargs, "num_examples": 12},
                           members=["img-*"], steps="last")
  assert restored == [("img-cnn", 5)]
  assert zoo.load_layer_features(zoo.features_path(out, "test", "img-cnn", 5))[1][
      "num_examples"] == 12
  with pytest.raises(ValueError, match="match no member"):
    zoo.extract_zoo_features(zoo_dir, out, **kwargs, members=["absent"])
  with pytest.raises(ValueError, match="is not a directory"):
    zoo.extract_zoo_features(tmp_path / "absent", out, **kwargs)


# -- the script -----------------------------------------------------------------


def run_script(*flags):
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, "PYTHONPATH": str(root)}
  return subprocess.run([sys.executable, str(root / "scripts" / "extract_features.py"), *flags],
                        env=env, capture_output=True, text=True, timeout=600)


def test_script_help_and_one_line_usage_errors(tmp_path):
  done = run_script("--help")
  assert done.returncode == 0 and "--zoo_dir" in done.stdout + done.stderr
  done = run_script(f"--zoo_dir={tmp_path}", "--steps=1,x", "extra")
  assert done.returncode != 0
  assert "Traceback" not in done.stderr and "positional" in done.stderr
  done = run_script(f"--zoo_dir={tmp_path}")
  assert done.returncode != 0
  assert "Traceback" not in done.stderr and "has no members" in done.stderr


def test_script_extracts_a_trained_zoo_end_to_end_and_resumes(tmp_path):
  data_dir, zoo_dir, out = tmp_path / "data", tmp_path / "zoo", tmp_path / "features"
  member = zoo.MemberSpec("cnn", 4, 1, 0, "digits", "image", "supervised", ("label",), steps=2,
                          checkpoint_steps=(0, 2), batch_size=16)
  zoo.train_zoo([member], zoo_dir, data_dir=str(data_dir), log=lambda line: None)
  flags = (f"--zoo_dir={zoo_dir}", f"--output_dir={out}", f"--data_dir={data_dir}",
           "--num_examples=40", "--batch_size=16")
  done = run_script(*flags)
  assert done.returncode == 0, done.stderr[-2000:]
  for step in (0, 2):
    layers, meta = zoo.load_layer_features(zoo.features_path(out, "test", member.name, step))
    assert meta["layer_names"] == ["conv_0", "dense"] and meta["step"] == step
    assert [layer.shape for layer in layers] == [(40, 4), (40, 4)]
    restored = zoo.restore_member(zoo_dir / member.name, step)
    images = zoo.load_dataset("digits", "test", data_dir=str(data_dir), num_examples=40)
    for a, b in zip(layers, zoo.layer_features(restored, jnp.asarray(images["image"]))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(meta["sample_ids"], images["id"])
  raw, _ = zoo.load_layer_features(zoo.features_path(out, "test", "raw-digits-image", 0))
  assert raw[0].shape == (40, 64)
