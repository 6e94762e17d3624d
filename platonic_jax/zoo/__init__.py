"""Flax model zoos: offline datasets (TFDS), NNX model families, checkpointed
training, every layer's features, and adapters for external Flax models."""

# -- datasets --
# -- models, training, checkpoints, features --
from platonic_jax.zoo._capture import layer_features
from platonic_jax.zoo._capture import layer_names
from platonic_jax.zoo._capture import linen_layer_features
from platonic_jax.zoo._capture import nnx_layer_features
from platonic_jax.zoo._capture import pool_output
from platonic_jax.zoo._families import EncoderFamily
from platonic_jax.zoo._families import encoder_families
from platonic_jax.zoo._families import make_encoder
# -- adapters --
