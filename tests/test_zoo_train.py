"""Zoo training: specs, objectives, data parallelism, checkpoints, resume, the script.

Members are tiny MLP / bag-of-tokens encoders on the real digits dataset; a
caption modality and a second target (parity) are derived from the digit
label, so every objective and modality runs in seconds.
"""

import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.neighbors import KNeighborsClassifier

from platonic_jax import zoo
from platonic_jax.zoo import _data
from platonic_jax.zoo import _families
from platonic_jax.zoo import _objectives
from platonic_jax.zoo import _train

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEDULE = dict(steps=8, checkpoint_steps=(0, 3, 8), batch_size=16, learning_rate=3e-2)


def _member(objective="supervised", seed=0, modality="image", family="mlp", **changes):
  targets = {"supervised": ("label",), "multitask": ("label", "target_parity"),
             "contrastive": ("label",)}[objective]
  return zoo.MemberSpec(family, 8, 1, seed, "digits", modality, objective, targets,
                        **{**SCHEDULE, **changes})


@pytest.fixture(scope="module")
def api(tmp_path_factory):
  """The zoo's functions on digits plus a derived caption and parity target."""
  data_dir = str(tmp_path_factory.mktemp("data"))

  def dataset_spec(name):
    base = _data.dataset_spec(name)
    return dataclasses.replace(base, targets={**base.targets, "target_parity": 2},
                               vocab_size=16, caption_length=5)

  @functools.cache
  def load(split):
    d = dict(_data.load_dataset("digits", split, data_dir=data_dir))
    d["target_parity"] = d["label"] % 2
    caption = np.zeros((len(d["label"]), 5), np.int32)
    caption[:, 0] = d["label"] + 1
    caption[:, 1] = 11 + d["target_parity"]
    caption[:, 2] = np.random.default_rng(len(caption)).integers(13, 16, len(caption))
    d["caption"] = caption
    return d

  return zoo.ZooApi(lambda name, split, data_dir=None: load(split), dataset_spec,
                    _families.make_encoder)


MEMBERS = (_member("supervised", 0), _member("supervised", 1), _member("multitask", 0),
           _member("contrastive", 0))


@pytest.fixture(scope="module")
def trained(api, tmp_path_factory):
  """The test zoo trained once, uninterrupted, on all 8 simulated devices."""
  zoo_dir = tmp_path_factory.mktemp("zoo")
  log = []
  manifests = zoo.train_zoo(MEMBERS, zoo_dir, api=api, log=log.append)
  return zoo_dir, manifests, log


def _params(member_dir, step=None):
  encoder = zoo.restore_member(member_dir, step, make_encoder=_families.make_encoder,
                               dataset_spec=lambda name: dataclasses.replace(
                                   _data.dataset_spec(name), vocab_size=16, caption_length=5))
  return encoder, jax.tree.leaves(nnx.state(encoder, nnx.Param))


# -- specs --------------------------------------------------------------------------------------


def test_member_spec_name_validation_and_json_round_trip():
  m = _member("supervised", 3)
  assert m.name == "digits-image-mlp-w8-d1-supervised-label-s3"
  assert zoo.MemberSpec.from_json(json.loads(json.dumps(m.to_json()))) == m
  assert _member(checkpoint_steps=(5,)).checkpoint_steps == (0, 5, 8)
  with pytest.raises(ValueError, match="modality"):
    _member(modality="audio")
  with pytest.raises(ValueError, match="exactly one target"):
    zoo.MemberSpec("mlp", 8, 1, 0, "digits", "image", "supervised", ("a", "b"), **SCHEDULE)
  with pytest.raises(ValueError, match="checkpoint_steps"):
    _member(checkpoint_steps=(20,))


def test_presets_cover_modalities_sizes_objectives_and_overrides_rescale():
  default = zoo.zoo_spec("default")
  assert 30 <= len(default) <= 60
  kinds = {(m.dataset, m.modality) for m in default.members}
  assert kinds == {("digits", "image"), ("world", "image"), ("world", "caption")}
  assert {m.objective for m in default.members} == {"supervised", "multitask", "contrastive"}
  for family in {m.family for m in default.members}:
    members = [m for m in default.members if m.family == family]
    assert len({m.width for m in members}) >= 3 and len({m.depth for m in members}) >= 2
    assert len({m.seed for m in members}) >= 2
  assert all(len(m.checkpoint_steps) >= 3 and m.checkpoint_steps[0] == 0
             for m in default.members)
  families = {f.name: f.modality for f in zoo.encoder_families().values()}
  assert all(families[m.family] == m.modality for name in zoo.zoo_names()
             for m in zoo.zoo_spec(name).members)
  short = zoo.override_zoo(default, member_filter="digits-*", seeds=[0], steps=30)
  assert short.members and all(m.dataset == "digits" and m.seed == 0 for m in short.members)
  assert all(m.checkpoint_steps == (0, 4, 12, 30) for m in short.members)
  with pytest.raises(ValueError, match="no member"):
    zoo.override_zoo(default, member_filter="nothing-*")
  with pytest.raises(ValueError, match="zoo must be one of"):
    zoo.zoo_spec("huge")


# -- objectives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", MEMBERS[1:] + (_member("contrastive", modality="caption",
                                                         family="bow"),),
                         ids=lambda m: f"{m.objective}-{m.modality}")
def test_one_training_step_lowers_the_loss(api, spec):
  data = api.load_dataset("digits", "train")
  trainee = _train.new_trainee(spec, api)
  graphdef, params, rest = nnx.split(trainee, nnx.Param, ...)
  tx = optax.adam(1e-2)
  inputs = jnp.asarray(data[spec.modality][:32])[None]
  labels = {t: jnp.asarray(data[t][:32])[None] for t in spec.targets}
  seeds = jnp.asarray([spec.seed])
  state = jax.tree.map(lambda x: x[None], (params, rest, tx.init(params)))
  losses = []
  for _ in range(2):   # the same batch and augmentation key (step 0) twice
    *state, loss = _train._train_step(*state, inputs, labels, seeds, 0, graphdef=graphdef,
                                      tx=tx, modality=spec.modality)
    losses.append(float(loss[0]))
  assert np.isfinite(losses[0]) and losses[1] < losses[0]


def test_nt_xent_matches_a_numpy_reference(rng):
  z1, z2 = rng.standard_normal((2, 6, 4)).astype(np.float32)
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T / 0.5
  expected = 0.0
  for i in range(12):
    others = [j for j in range(12) if j != i]
    expected -= sim[i, (i + 6) % 12] - np.log(np.exp(sim[i, others]).sum())
  np.testing.assert_allclose(_objectives.nt_xent(z1, z2, temperature=0.5), expected / 12,
                             rtol=1e-5)


def test_augmentations_keep_dtype_and_content_and_vary_with_the_key(rng):
  images = jnp.asarray(rng.integers(0, 256, (4, 8, 8, 3)), jnp.uint8)
  view = _objectives.augment(images, jax.random.key(0), "image")
  assert view.dtype == jnp.uint8 and view.shape == images.shape
  assert not np.array_equal(view, _objectives.augment(images, jax.random.key(1), "image"))
  tokens = np.zeros((50, 7), np.int32)
  lengths = rng.integers(1, 8, 50)
  for i, n in enumerate(lengths):
    tokens[i, :n] = rng.integers(1, 30, n)
  view = np.asarray(_objectives.augment(jnp.asarray(tokens), jax.random.key(2), "caption"))
  assert ((view > 0).sum(1) >= 1).all()                       # never an empty caption
  for original, augmented, n in zip(tokens, view, lengths):
    assert np.isin(augmented[augmented > 0], original[:n]).all()   # words only move or drop
    assert (augmented[n:] == 0).all()                               # padding stays padding
  assert not np.array_equal(view, tokens)


def test_knn_accuracy_matches_scikit_learn(rng):
  train, test = rng.standard_normal((200, 5)), rng.standard_normal((50, 5))
  train_y = (train[:, 0] > 0).astype(int) + (train[:, 1] > 0)
  test_y = (test[:, 0] > 0).astype(int) + (test[:, 1] > 0)
  knn = KNeighborsClassifier(n_neighbors=10, metric="cosine", algorithm="brute").fit(train, train_y)
  assert _train.knn_accuracy(train, train_y, test, test_y) == pytest.approx(
      knn.score(test, test_y))


def test_batch_order_is_a_per_epoch_permutation_known_from_the_step():
  full = _train.batch_indices(3, 10, 4, 0, 5)                 # 20 positions = two epochs
  assert sorted(full.ravel()[:10]) == list(range(10))
  assert sorted(full.ravel()[10:]) == list(range(10))
  np.testing.assert_array_equal(_train.batch_indices(3, 10, 4, 2, 5), full[2:])
  assert not np.array_equal(_train.batch_indices(4, 10, 4, 0, 5), full)


# -- training, checkpoints, manifests -----------------------------------------------------------


def test_manifest_schema_and_competence(trained):
  zoo_dir, manifests, _ = trained
  for spec, manifest in zip(MEMBERS, manifests):
    assert manifest == zoo.load_manifest(zoo_dir / spec.name)
    assert manifest["member"] == spec.name and manifest["complete"] is True
    assert zoo.MemberSpec.from_json(manifest["spec"]) == spec
    assert {"family", "width", "depth", "seed", "dataset", "modality", "objective", "targets",
            "steps"} <= set(manifest["spec"])
    assert isinstance(manifest["num_params"], int) and manifest["num_params"] > 0
    assert isinstance(manifest["train_seconds"], float) and manifest["train_seconds"] >= 0
    assert [c["step"] for c in manifest["checkpoints"]] == list(spec.checkpoint_steps)
    for c in manifest["checkpoints"]:
      assert (zoo_dir / spec.name / c["path"]).is_dir()
      assert np.isfinite(c["eval"]["loss"])
      assert set(c["eval"]["accuracy"]) == set(spec.targets)
      assert all(0 <= a <= 1 for a in c["eval"]["accuracy"].values())
    if spec.objective != "contrastive":   # heads start near chance and learn in 8 steps
      first, last = (manifest["checkpoints"][i]["eval"] for i in (0, -1))
      assert first["accuracy"]["label"] < 0.25 and last["accuracy"]["label"] > first["accuracy"]["label"]
      assert last["loss"] < first["loss"]


def test_restore_member_round_trip(trained, api):
  zoo_dir, _, _ = trained
  member_dir = zoo_dir / MEMBERS[0].name
  _, init = _train.initial_state(MEMBERS[0], api)
  encoder, restored = _params(member_dir / "manifest.json", 0)
  for a, b in zip(jax.tree.leaves(init["params"]["encoder"]), restored):
    np.testing.assert_array_equal(a, b)                        # step 0 is the random init
  x = api.load_dataset("digits", "test")["image"][:5]
  assert encoder(x).shape == (5, MEMBERS[0].width)
  _, last = _params(member_dir)
  assert any(not np.array_equal(a, b) for a, b in zip(restored, last))
  with pytest.raises(ValueError, match="step must be one of"):
    zoo.restore_member(member_dir, 5)


def test_one_device_equals_eight_and_vmapped_seeds_equal_separate(trained, api, tmp_path):
  zoo_dir, _, _ = trained
  members = (MEMBERS[0], MEMBERS[1], MEMBERS[3])
  zoo.train_zoo(members, tmp_path, api=api, devices=jax.devices()[:1], vmap_seeds=True,
                log=lambda _: None)
  for spec in members:
    for a, b in zip(_params(zoo_dir / spec.name)[1], _params(tmp_path / spec.name)[1]):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  assert zoo.load_manifest(tmp_path / MEMBERS[0].name)["trained_with"] == [
      MEMBERS[0].name, MEMBERS[1].name]


def test_resume_after_a_kill_equals_an_uninterrupted_run(trained, api, tmp_path):
  zoo_dir, _, _ = trained
  members = MEMBERS[:3]
  # Member 0 finishes (8 steps); member 1 dies at step 6, after its step-3 checkpoint.
  with pytest.raises(zoo.TrainingInterrupted):
    zoo.train_zoo(members, tmp_path, api=api, stop_after_steps=14, log=lambda _: None)
  partial = zoo.load_manifest(tmp_path / members[1].name)
  assert not partial["complete"] and [c["step"] for c in partial["checkpoints"]] == [0, 3]
  done = (tmp_path / members[0].name / "manifest.json").read_bytes()
  log = []
  zoo.train_zoo(members, tmp_path, api=api, log=log.append)
  assert log[0] == f"skipping {members[0].name} (complete)"
  assert any(line.startswith(f"training {members[1].name} from step 3") for line in log)
  assert (tmp_path / members[0].name / "manifest.json").read_bytes() == done
  for spec in members:
    for a, b in zip(_params(zoo_dir / spec.name)[1], _params(tmp_path / spec.name)[1]):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  log = []
  zoo.train_zoo(members, tmp_path, api=api, log=log.append)
  assert all(line.startswith("skipping") for line in log) and len(log) == 3
  with pytest.raises(ValueError, match="another spec"):
    zoo.train_zoo([dataclasses.replace(members[0], steps=9)], tmp_path, api=api)


# -- the script ---------------------------------------------------------------------------------


def _script(*flags, data_dir):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "TFDS_DATA_DIR": str(data_dir)}
  return subprocess.run([sys.executable, str(ROOT / "scripts" / "train_zoo.py"), *flags],
                        env=env, capture_output=True, text=True, timeout=300)


def test_script_trains_the_tiny_zoo_then_skips_it(tmp_path):
  zoo_dir = tmp_path / "zoo"
  done = _script("--zoo=tiny", f"--zoo_dir={zoo_dir}", "--devices=1", data_dir=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  names = [m.name for m in zoo.zoo_spec("tiny").members]
  for name in names:
    assert zoo.load_manifest(zoo_dir / name)["complete"]
    assert f"{name} step 6/6" in done.stdout
  again = _script("--zoo=tiny", f"--zoo_dir={zoo_dir}", "--devices=1", data_dir=tmp_path)
  assert again.returncode == 0
  assert [f"skipping {n} (complete)" for n in names] == again.stdout.splitlines()[:3]


@pytest.mark.parametrize("flags, message", [
    (("--steps=0",), "steps"),
    (("--filter=nothing*",), "no member"),
    (("extra",), "positional"),
])
def test_script_rejects_bad_values_in_one_line(tmp_path, flags, message):
  done = _script(*flags, f"--zoo_dir={tmp_path}", "--list", data_dir=tmp_path)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr and message in done.stderr
  assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 2


def test_script_help_and_list(tmp_path):
  assert _script("--help", data_dir=tmp_path).returncode == 0
  listed = _script("--zoo=default", "--list", data_dir=tmp_path)
  assert listed.returncode == 0
  assert "world-caption-transformer-w32-d2-multitask-s0" in listed.stdout
