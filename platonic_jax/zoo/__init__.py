"""Flax model zoos: offline datasets (TFDS), NNX model families, checkpointed
training, every layer's features, and adapters for external Flax models."""

# -- datasets --
from platonic_jax.zoo._data import DatasetNotPreparedError
from platonic_jax.zoo._data import DatasetSpec
from platonic_jax.zoo._data import dataset_names
from platonic_jax.zoo._data import dataset_spec
from platonic_jax.zoo._data import load_dataset
from platonic_jax.zoo._data import prepare_datasets
from platonic_jax.zoo._data import resolve_data_dir
from platonic_jax.zoo._world import WorldConfig
from platonic_jax.zoo._world_render import caption_text
from platonic_jax.zoo._world_render import generate_world
# -- models, training, checkpoints, features --
from platonic_jax.zoo._capture import layer_features
from platonic_jax.zoo._capture import layer_names
from platonic_jax.zoo._capture import linen_layer_features
from platonic_jax.zoo._capture import nnx_layer_features
from platonic_jax.zoo._capture import pool_output
from platonic_jax.zoo._extract import extract_features
from platonic_jax.zoo._extract import raw_input_features
from platonic_jax.zoo._families import EncoderFamily
from platonic_jax.zoo._families import encoder_families
from platonic_jax.zoo._families import make_encoder
from platonic_jax.zoo._feature_store import load_layer_features
from platonic_jax.zoo._feature_store import save_layer_features
from platonic_jax.zoo._zoo_features import extract_zoo_features
from platonic_jax.zoo._zoo_features import features_path
from platonic_jax.zoo._zoo_features import zoo_members
# -- adapters --
from platonic_jax.zoo._hf import HFModel
from platonic_jax.zoo._hf import hf_architectures
from platonic_jax.zoo._hf import hf_feature_metadata
from platonic_jax.zoo._hf import hf_image_features
from platonic_jax.zoo._hf import hf_text_features
from platonic_jax.zoo._hf import load_hf_model
from platonic_jax.zoo._hf import pool_hidden_states
from platonic_jax.zoo._hf import save_hf_features
from platonic_jax.zoo._hf import tokenize_left_padded
from platonic_jax.zoo._reference_zoo import REFERENCE_LANGUAGE_MODELS
from platonic_jax.zoo._reference_zoo import REFERENCE_VISION_MODELS
from platonic_jax.zoo._reference_zoo import ReferenceModel
from platonic_jax.zoo._reference_zoo import reference_zoo
