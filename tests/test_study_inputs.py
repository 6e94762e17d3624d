"""Bring your own features: formats, layouts and errors of `load_feature_sets`."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from platonic_jax import study

ROOT = pathlib.Path(__file__).resolve().parents[1]
N = 12


@pytest.fixture
def layers(rng):
  return [rng.normal(size=(N, d)).astype(np.float32) for d in (3, 5, 4)]


def _equal_layers(got, expected):
  assert len(got) == len(expected)
  for g, e in zip(got, expected):
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, e)


def test_npy_one_layer_and_stacked_layers(tmp_path, rng):
  one = rng.normal(size=(N, 6)).astype(np.float64)
  stacked = rng.normal(size=(3, N, 4)).astype(np.float32)
  np.save(tmp_path / "one.npy", one)
  np.save(tmp_path / "stacked.npy", stacked)
  a, b = study.load_feature_sets([tmp_path / "one.npy", tmp_path / "stacked.npy"])
  assert (a.name, b.name) == ("one", "stacked")
  _equal_layers(a.layers, [one.astype(np.float32)])
  _equal_layers(b.layers, list(stacked))
  assert a.metadata["format"] == "npy" and a.metadata["path"].endswith("one.npy")


def test_npz_layers_in_natural_order_with_scalar_metadata(tmp_path, layers):
  np.savez(tmp_path / "m.npz", layer_10=layers[2], layer_2=layers[1], layer_1=layers[0],
           num_params=np.int64(77), bpb=np.float32(0.5))
  (fs,) = study.load_feature_sets(tmp_path / "m.npz")
  _equal_layers(fs.layers, layers)
  assert fs.metadata["num_params"] == 77 and fs.metadata["bpb"] == 0.5


def test_reference_feats_stack_is_samples_first(tmp_path, rng):
  feats = rng.normal(size=(N, 3, 4)).astype(np.float32)  # the reference's [N, L, D]
  safetensors.numpy.save_file({"feats": feats}, str(tmp_path / "ref.safetensors"),
                              metadata={"num_params": "1000", "model": "vit"})
  (fs,) = study.load_feature_sets([tmp_path / "ref.safetensors"])
  _equal_layers(fs.layers, [feats[:, l] for l in range(3)])
  assert fs.metadata["num_params"] == 1000 and fs.metadata["model"] == "vit"


def test_safetensors_one_tensor_per_layer_and_sample_ids(tmp_path, layers):
  tensors = {f"layer_{i:03d}": x for i, x in enumerate(layers)}
  tensors["sample_ids"] = np.arange(100, 100 + N, dtype=np.int64)
  safetensors.numpy.save_file(tensors, str(tmp_path / "m.safetensors"))
  (fs,) = study.load_feature_sets([str(tmp_path / "m.safetensors")])
  _equal_layers(fs.layers, layers)
  np.testing.assert_array_equal(fs.metadata["sample_ids"], np.arange(100, 100 + N))


def test_feature_store_entries_are_read_with_their_metadata(tmp_path, layers):
  zoo = pytest.importorskip("platonic_jax.zoo")
  zoo.save_layer_features(tmp_path, "member", layers, {"model": "mlp", "step": 3})
  (fs,) = study.load_feature_sets([tmp_path / "member.safetensors"])
  _equal_layers(fs.layers, layers)
  assert fs.metadata["model"] == "mlp" and fs.metadata["step"] == 3
  assert len(fs.metadata["sample_ids"]) == N


def test_a_folder_is_one_feature_set_per_file(tmp_path, layers):
  np.save(tmp_path / "b.npy", layers[1])
  np.save(tmp_path / "a.npy", layers[0])
  (tmp_path / "notes.txt").write_text("not features")
  sets = study.load_feature_sets([tmp_path])
  assert [s.name for s in sets] == ["a", "b"]


def test_reference_dict_conversion():
  feats = np.arange(N * 2 * 3, dtype=np.float32).reshape(N, 2, 3)
  fs = study.from_reference_dict("llama", {"feats": feats, "num_params": 7, "bpb": np.float32(
      0.25), "loss": np.ones(N, np.float32), "mask": np.ones((N, 5), np.int64)})
  _equal_layers(fs.layers, [feats[:, 0], feats[:, 1]])
  assert fs.metadata["num_params"] == 7 and fs.metadata["bpb"] == 0.25
  assert fs.metadata["loss"] == [1.0] * N and "mask" not in fs.metadata
  with pytest.raises(ValueError, match="'feats'"):
    study.from_reference_dict("x", {"num_params": 1})
  with pytest.raises(ValueError, match=r"\[N, L, D\]"):
    study.from_reference_dict("x", {"feats": feats[:, 0]})


def test_mismatched_n_names_both_files(tmp_path, rng):
  np.save(tmp_path / "a.npy", rng.normal(size=(N, 3)))
  np.save(tmp_path / "b.npy", rng.normal(size=(N + 1, 3)))
  with pytest.raises(ValueError, match=r"a\.npy has N=12, but .*b\.npy has N=13"):
    study.load_feature_sets([tmp_path / "a.npy", tmp_path / "b.npy"])


@pytest.mark.parametrize("write,match", [
    (lambda p: np.save(p / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "pickled"),
    (lambda p: (p / "x.npy").write_bytes(b"\x93NUMPY garbage"), "cannot read"),
    (lambda p: (p / "x.safetensors").write_bytes(b"not safetensors"), "cannot read"),
    (lambda p: np.save(p / "x.npy", np.full((N, 2), np.nan)), "NaN"),
    (lambda p: np.save(p / "x.npy", np.ones((2, 2, 2, 2))), r"\[N, D\] or \[L, N, D\]"),
    (lambda p: (p / "x.pt").write_bytes(b"\x80\x02"), "convert_reference_features"),
    (lambda p: np.savez(p / "x.npz", a=np.ones((N, 2)), b=np.ones((N + 1, 2))),
     "different numbers of samples"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path, write, match):
  write(tmp_path)
  (path,) = [p for p in tmp_path.iterdir()]
  with pytest.raises(ValueError, match=match):
    study.load_feature_sets([path])


def test_bad_paths(tmp_path, rng):
  with pytest.raises(ValueError, match="does not exist"):
    study.load_feature_sets([tmp_path / "missing.npy"])
  with pytest.raises(ValueError, match="holds no feature file"):
    study.load_feature_sets([tmp_path])
  with pytest.raises(ValueError, match="`paths`"):
    study.load_feature_sets([])
  (tmp_path / "x").mkdir()
  np.save(tmp_path / "m.npy", rng.normal(size=(N, 2)))
  np.save(tmp_path / "x" / "m.npy", rng.normal(size=(N, 2)))
  with pytest.raises(ValueError, match="two feature sets are named 'm'"):
    study.load_feature_sets([tmp_path / "m.npy", tmp_path / "x" / "m.npy"])


def test_different_sample_ids_are_refused(tmp_path, layers):
  for name, start in (("a", 0), ("b", 1)):
    np.savez(tmp_path / f"{name}.npz", layer_0=layers[0],
             sample_ids=np.arange(start, start + N, dtype=np.int64))
  with pytest.raises(ValueError, match="different sample ids"):
    study.load_feature_sets([tmp_path])


def test_converter_writes_what_the_loader_reads(tmp_path, rng):
  torch = pytest.importorskip("torch")
  feats = rng.normal(size=(N, 3, 4)).astype(np.float32)
  torch.save({"feats": torch.from_numpy(feats), "num_params": 1234,
              "bpb": torch.tensor(0.75), "mask": torch.ones(N, 6)}, tmp_path / "lm.pt")
  out = tmp_path / "out"
  done = subprocess.run(
      [sys.executable, str(ROOT / "scripts" / "convert_reference_features.py"),
       f"--inputs={tmp_path}", f"--output_dir={out}"],
      env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
      check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  (fs,) = study.load_feature_sets([out])
  assert fs.name == "lm"
  _equal_layers(fs.layers, [feats[:, l] for l in range(3)])
  assert fs.metadata["num_params"] == 1234 and fs.metadata["bpb"] == pytest.approx(0.75)
