"""Encoder families and layer capture: shapes, pooling, padding, jit, generic adapters.

Datasets are stood in for by a spec with the contract's fields and synthetic
arrays of its shapes (uint8 images, int32 token ids with 0 = padding).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from platonic_jax import zoo


@dataclasses.dataclass(frozen=True)
class Spec:
  name: str = "synthetic"
  image_shape: tuple = (8, 8, 1)
  vocab_size: int = 20
  caption_length: int = 10


SPEC = Spec()
RGB_SPEC = Spec(image_shape=(12, 12, 3))
B = 5


def images(spec=SPEC, n=B, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *spec.image_shape), dtype=np.uint8)


def captions(n=B, length=8, seed=0):
  """Token ids with 3..length real tokens per row, then padding."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, SPEC.vocab_size, (n, length)).astype(np.int32)
  lengths = rng.integers(3, length + 1, n)
  tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
  return tokens


def build(family, width=8, depth=2, spec=SPEC, seed=0):
  modality = zoo.encoder_families()[family].modality
  return zoo.make_encoder(family, width=width, depth=depth, dataset_spec=spec, modality=modality,
                          rngs=nnx.Rngs(seed))


def inputs_for(family, spec=SPEC):
  return images(spec) if zoo.encoder_families()[family].modality == "image" else captions()


# One compiled function per model structure and input shape (nnx.jit caches on both).
jit_forward = nnx.jit(lambda model, x: (zoo.layer_features(model, x), model(x)))


def jit_layers(model, x):
  return jit_forward(model, x)[0]

EXPECTED_LAYERS = {
    "mlp": ["block_0", "block_1"],
    "cnn": ["conv_0", "conv_1", "dense"],
    "resnet": ["stem", "block_0", "block_1"],
    "vit": ["block_0", "block_1", "final"],
    "bow": ["bag", "block_0", "block_1"],
    "transformer": ["embedding", "block_0", "block_1", "final"],
    "transformer_cls": ["block_0", "block_1", "final"],
}


def test_registry_names_every_family_with_its_modality_and_defaults():
  families = zoo.encoder_families()
  assert set(families) == set(EXPECTED_LAYERS)
  assert {f.name for f in families.values() if f.modality == "caption"} == {
      "bow", "transformer", "transformer_cls"}
  for family in families.values():
    assert family.default_width >= 1 and family.default_depth >= 1 and family.description


@pytest.mark.parametrize("family", sorted(EXPECTED_LAYERS))
def test_every_layer_is_captured_pooled_and_ends_with_the_final_representation(family):
  spec = RGB_SPEC if family in ("resnet", "vit") else SPEC
  model = build(family, spec=spec)
  x = jnp.asarray(inputs_for(family, spec))
  assert zoo.layer_names(model) == EXPECTED_LAYERS[family]
  layers, final = jit_forward(model, x)
  assert [layer.shape for layer in layers] == [(B, 8)] * len(EXPECTED_LAYERS[family])
  assert all(layer.dtype == jnp.float32 for layer in layers)
  assert final.shape == (B, 8)
  np.testing.assert_allclose(layers[-1], final, rtol=1e-5, atol=1e-6)
  # Layers differ from one another and vary over samples (no constant CLS embedding).
  for layer in layers:
    assert float(jnp.std(layer, axis=0).max()) > 0


def test_width_and_depth_knobs_set_layer_count_and_width():
  model = build("cnn", width=6, depth=1)
  layers = jit_layers(model, jnp.asarray(images()))
  assert zoo.layer_names(model) == ["conv_0", "dense"]
  assert [layer.shape for layer in layers] == [(B, 6), (B, 6)]


def test_mlp_layers_match_a_hand_computed_forward_pass():
  model = build("mlp")
  x = images()
  h = x.reshape(B, -1).astype(np.float32) / 255
  expected = []
  for block in model.blocks:
    h = np.maximum(h @ np.asarray(block.linear.kernel[...]) + np.asarray(block.linear.bias[...]),
                   0)
    expected.append(h)
  for got, want in zip(zoo.layer_features(model, jnp.asarray(x)), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cnn_conv_layers_are_spatial_means_of_the_feature_maps():
  model = build("cnn")
  x = images()
  conv = model.blocks[0].conv
  maps = jax.lax.conv_general_dilated(
      jnp.asarray(x, jnp.float32) / 255, conv.kernel[...], (2, 2), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias[...]
  expected = np.maximum(np.asarray(maps), 0).mean(axis=(1, 2))
  np.testing.assert_allclose(zoo.layer_features(model, jnp.asarray(x))[0], expected, rtol=1e-5,
                             atol=1e-6)


def test_uint8_images_are_scaled_to_unit_range_inside_the_encoder():
  model = build("mlp")
  x = images()
  np.testing.assert_allclose(model(jnp.asarray(x)), model(jnp.asarray(x, jnp.float32) / 255),
                             rtol=1e-6)


@pytest.mark.parametrize("family", ["bow", "transformer", "transformer_cls"])
def test_appended_padding_leaves_every_layer_unchanged(family):
  model = build(family)  # caption_length 10 >= 8 + 2
  x = captions(length=8)
  padded = np.concatenate([x, np.zeros((B, 2), np.int32)], axis=1)
  short, long = jit_layers(model, jnp.asarray(x)), jit_layers(model, jnp.asarray(padded))
  for a, b in zip(short, long):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_transformer_embedding_layer_is_the_mean_over_real_tokens_only():
  model = build("transformer")
  x = captions()
  embedded = np.asarray(model.embedding(jnp.asarray(x)))
  mask = x != 0
  expected = np.stack([embedded[i][mask[i]].mean(0) for i in range(B)])
  np.testing.assert_allclose(jit_layers(model, jnp.asarray(x))[0], expected, rtol=1e-5,
                             atol=1e-6)


def test_bag_of_tokens_ignores_word_order():
  model = build("bow")
  x = captions()
  shuffled = x.copy()
  for row in shuffled:
    real = row[row != 0]
    row[:len(real)] = real[::-1]
  for a, b in zip(jit_layers(model, jnp.asarray(x)), jit_layers(model, jnp.asarray(shuffled))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vit_blocks_are_pooled_by_their_cls_token():
  model = build("vit", spec=RGB_SPEC)
  x = jnp.asarray(images(RGB_SPEC))
  tokens = nnx.jit(lambda m, x: m.blocks[0](m.embedding(x.astype(jnp.float32) / 255)))(model, x)
  np.testing.assert_allclose(jit_layers(model, x)[0], tokens[:, 0], rtol=1e-5, atol=1e-6)


def test_capture_leaves_the_model_and_its_classes_untouched():
  model = build("cnn")
  before = jax.tree.map(np.asarray, nnx.state(model))
  call = type(model.blocks[0]).__call__
  zoo.layer_features(model, jnp.asarray(images()))
  assert type(model.blocks[0]).__call__ is call
  assert not any(hasattr(m, "__captures__") for _, m in nnx.iter_modules(model))
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(model)))


def test_layer_features_works_under_jax_jit_over_split_state():
  model = build("cnn")
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, x: zoo.layer_features(nnx.merge(graphdef, s), x))
  x = jnp.asarray(images())
  for a, b in zip(fn(state, x), zoo.layer_features(model, x)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_default_sizes_have_the_documented_parameter_counts():
  mlp = zoo.make_encoder("mlp", width=64, depth=2, dataset_spec=SPEC, modality="image",
                         rngs=nnx.Rngs(0))
  params = sum(x.size for x in jax.tree.leaves(nnx.state(mlp, nnx.Param)))
  assert params == (64 * 64 + 64) + (64 * 64 + 64)  # 8x8x1 pixels -> 64 -> 64


def test_bad_arguments_raise_value_errors_naming_them():
  with pytest.raises(ValueError, match="unknown encoder `family`"):
    zoo.make_encoder("lstm", width=8, depth=1, dataset_spec=SPEC, modality="image",
                     rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="`modality`"):
    zoo.make_encoder("cnn", width=8, depth=1, dataset_spec=SPEC, modality="caption",
                     rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="`width`"):
    zoo.make_encoder("cnn", width=0, depth=1, dataset_spec=SPEC, modality="image",
                     rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="vocab_size"):
    zoo.make_encoder("bow", width=8, depth=1, dataset_spec=Spec(vocab_size=None),
                     modality="caption", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="at most 10"):
    build("transformer")(jnp.ones((2, 11), jnp.int32))
  with pytest.raises(ValueError, match="token ids"):
    build("bow")(jnp.ones((2, 4, 1), jnp.int32))
  with pytest.raises(ValueError, match="capture_points"):
    zoo.layer_names(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


# -- generic adapters ---------------------------------------------------------


class Custom(nnx.Module):
  """A conv map, a token sequence and a public helper method, all captured."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
    self.proj = nnx.Linear(3, 4, rngs=rngs)

  def tokens(self, x):
    maps = self.conv(x)
    return maps.reshape(maps.shape[0], -1, 3)

  def __call__(self, x):
    return self.proj(self.tokens(x))


def test_nnx_adapter_captures_every_method_output_by_path_and_pools_it():
  model = Custom(nnx.Rngs(0))
  x = jnp.asarray(images(), jnp.float32) / 255
  got = zoo.nnx_layer_features(model, x)
  assert list(got) == ["__call__", "conv/__call__", "proj/__call__", "tokens"]
  maps = model.conv(x)
  out = model(x)
  np.testing.assert_allclose(got["conv/__call__"], maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["__call__"], out.mean(axis=1), rtol=1e-5, atol=1e-6)
  cls = zoo.nnx_layer_features(model, x, include=["tokens", "__call__"], token_pooling="cls")
  assert list(cls) == ["tokens", "__call__"]
  np.testing.assert_allclose(cls["__call__"], out[:, 0], rtol=1e-6)
  mask = jnp.arange(64)[None, :] < jnp.array([10, 20, 30, 40, 64])[:, None]
  masked = zoo.nnx_layer_features(model, x, include=["__call__"], mask=mask)["__call__"]
  np.testing.assert_allclose(masked[0], out[0, :10].mean(0), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="were not captured"):
    zoo.nnx_layer_features(model, x, include=["nope"])


class LinenMLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(6)(x))
    return nn.Dense(3)(h)


def test_linen_adapter_captures_every_submodule_output():
  module = LinenMLP()
  x = np.random.default_rng(0).standard_normal((B, 4)).astype(np.float32)
  variables = module.init(jax.random.key(0), x)
  got = zoo.linen_layer_features(module, variables, x)
  assert list(got) == ["Dense_0/__call__", "Dense_1/__call__", "__call__"]
  p = variables["params"]
  dense0 = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  np.testing.assert_allclose(got["Dense_0/__call__"], dense0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["__call__"], module.apply(variables, x), rtol=1e-6)
  only = zoo.linen_layer_features(module, variables, x, include=lambda n: n.startswith("Dense_1"))
  assert list(only) == ["Dense_1/__call__"]


def test_pool_output_rules():
  rng = np.random.default_rng(0)
  y3 = rng.standard_normal((2, 4, 3)).astype(np.float32)
  y4 = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
  np.testing.assert_allclose(zoo.pool_output(y3), y3.mean(1), rtol=1e-6)
  np.testing.assert_allclose(zoo.pool_output(y3, token_pooling="cls"), y3[:, 0])
  np.testing.assert_allclose(zoo.pool_output(y4), y4.mean((1, 2)), rtol=1e-6)
  empty = zoo.pool_output(y3, mask=np.zeros((2, 4), bool))
  np.testing.assert_array_equal(empty, np.zeros((2, 3)))  # all padding: zeros, not NaN
  with pytest.raises(ValueError, match="token_pooling"):
    zoo.pool_output(y3, token_pooling="max")
  with pytest.raises(ValueError, match="`mask`"):
    zoo.pool_output(y3, mask=np.ones((2, 5), bool))
