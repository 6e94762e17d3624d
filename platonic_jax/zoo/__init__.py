"""Flax model zoos: offline datasets (TFDS), NNX model families, checkpointed
training, every layer's features, and adapters for external Flax models."""

# -- datasets --
# -- models, training, checkpoints, features --
# -- adapters --
