"""Hugging Face Flax adapter on tiny random-init models saved locally (offline)."""

import sys

import jax
import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from platonic_jax.zoo import _feature_store  # noqa: E402
from platonic_jax.zoo import _hf  # noqa: E402

_TEXT = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             vocab_size=40, max_position_embeddings=32)
_VISION = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
               image_size=8, patch_size=4, num_channels=3)
_WORDS = ["red", "green", "blue", "dark", "light", "pale", "ish", "##ish", "sky", "sea"]


def _tiny_models():
  t = transformers
  return {
      "bert": (t.FlaxBertModel, t.BertConfig(**_TEXT)),
      "gpt2": (t.FlaxGPT2Model, t.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=40,
                                             n_positions=32)),
      # FlaxLlama needs max_position_embeddings >= 2 * head_dim (here 16).
      "llama": (t.FlaxLlamaModel, t.LlamaConfig(num_key_value_heads=1, **_TEXT)),
      "bloom": (t.FlaxBloomModel, t.BloomConfig(hidden_size=16, n_layer=2, n_head=2, vocab_size=40)),
      "vit": (t.FlaxViTModel, t.ViTConfig(**_VISION)),
      "dinov2": (t.FlaxDinov2Model, t.Dinov2Config(
          mlp_ratio=2, **{k: v for k, v in _VISION.items() if k != "intermediate_size"})),
      "clip": (t.FlaxCLIPModel, t.CLIPConfig(
          text_config={k: v for k, v in _TEXT.items()},
          vision_config={k: v for k, v in _VISION.items() if k != "num_channels"},
          projection_dim=8)),
  }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Every tiny model saved with `save_pretrained` (path and original params);
  BERT also gets a tokenizer."""
  root = tmp_path_factory.mktemp("hf")
  paths = {}
  for name, (cls, config) in _tiny_models().items():
    path = root / name
    model = cls(config, seed=0)
    model.save_pretrained(path)
    paths[name] = path
    paths[f"{name}_params"] = model.params
  vocab = root / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _WORDS) + "\n")
  transformers.BertTokenizer(str(vocab)).save_pretrained(paths["bert"])
  return paths


def _direct_hidden(model, params, **inputs):
  """Every hidden state of a transformers Flax model, called directly."""
  out = model(**inputs, params=params, output_hidden_states=True)
  return np.stack([np.asarray(h, np.float64) for h in out.hidden_states])   # [L, B, T, D]


def test_pool_hidden_states_against_hand_computation(rng):
  hidden = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 1, 0, 1, 1]])
  hidden[:, 0, 0] = np.nan                    # a padded position must not leak
  mean = np.asarray(_hf.pool_hidden_states(hidden, mask, "mean"))
  for i in range(4):
    kept = hidden[:, i, mask[i] == 1]          # [L, T_i, D]
    np.testing.assert_allclose(mean[:, i], kept.mean(axis=1), rtol=1e-5, atol=1e-6)
  cls = np.asarray(_hf.pool_hidden_states(hidden, None, "cls"))
  np.testing.assert_array_equal(cls[:, 1:], hidden[:, 1:, 0])
  with pytest.raises(ValueError, match="attention_mask"):
    _hf.pool_hidden_states(hidden, None, "mean")
  with pytest.raises(ValueError, match="pooling"):
    _hf.pool_hidden_states(hidden, mask, "max")


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "bloom", "clip"])
def test_text_models_masked_mean_and_left_padding(saved, name):
  hf = _hf.load_hf_model(saved[name], tower="text" if name == "clip" else None)
  assert hf.modality == "text" and hf.pooling == "mean"
  ids = np.array([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 7, 9]])
  mask = (ids > 0).astype(np.int32)
  layers = _hf.hf_text_features(hf, input_ids=ids, attention_mask=mask, batch_size=2)
  assert len(layers) == 3 == len(hf.layer_names)
  assert all(x.shape == (3, 16) and x.dtype == np.float32 for x in layers)
  # Hand computation on the model's own hidden states (positions follow the mask).
  inputs = {"input_ids": ids, "attention_mask": mask}
  if name != "bloom":   # ALiBi reads positions off the mask
    inputs["position_ids"] = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  hidden = _direct_hidden(hf.model, hf.params, **inputs)         # [L, B, T, D]
  for i in range(3):
    expected = hidden[:, i, mask[i] == 1].mean(axis=1)
    np.testing.assert_allclose(np.stack(layers)[:, i], expected, atol=2e-5)
  # More left padding, and right padding, give the same features.
  wider = np.concatenate([np.zeros((3, 3), ids.dtype), ids], axis=1)
  left = _hf.hf_text_features(hf, input_ids=wider, attention_mask=(wider > 0).astype(int), batch_size=2)
  np.testing.assert_allclose(np.stack(left), np.stack(layers), atol=2e-5)
  right = np.stack([np.concatenate([r[r > 0], np.zeros((r == 0).sum(), r.dtype)]) for r in ids])
  right_layers = _hf.hf_text_features(hf, input_ids=right, attention_mask=(right > 0).astype(int),
                                      batch_size=2)
  np.testing.assert_allclose(np.stack(right_layers), np.stack(layers), atol=2e-5)


@pytest.mark.parametrize("name,tower", [("vit", None), ("dinov2", None), ("clip", "vision")])
def test_vision_models_cls_token(saved, name, tower, rng):
  hf = _hf.load_hf_model(saved[name], tower=tower)
  assert hf.modality == "image" and hf.pooling == "cls"
  pixels = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
  layers = _hf.hf_image_features(hf, pixels, batch_size=2)    # batches 2, 2, 1 (padded)
  hidden = _direct_hidden(hf.model, hf.params, pixel_values=pixels)
  assert len(layers) == hidden.shape[0] == 3
  np.testing.assert_allclose(np.stack(layers), hidden[:, :, 0], atol=1e-5)
  if name == "vit":
    blocks = _hf.hf_image_features(hf, pixels, batch_size=2, include_embeddings=False)
    np.testing.assert_allclose(np.stack(blocks), hidden[1:, :, 0], atol=1e-5)


def test_tokenizer_texts_are_left_padded(saved):
  hf = _hf.load_hf_model(saved["bert"])
  assert hf.tokenizer is not None and hf.tokenizer.padding_side == "left"
  texts = ["dark red", "sky", "pale blue ish", "sea green"]
  ids, mask = _hf.tokenize_left_padded(hf.tokenizer, texts)
  assert ids.shape[1] % 8 == 0 and (mask[:, -1] == 1).all() and (mask[:, 0] == 0).all()
  from_texts = _hf.hf_text_features(hf, texts, batch_size=3)
  from_ids = _hf.hf_text_features(hf, input_ids=ids, attention_mask=mask, batch_size=3)
  np.testing.assert_allclose(np.stack(from_texts), np.stack(from_ids), atol=2e-5)


def _leaves(params):
  return jax.tree_util.tree_leaves_with_path(params)


def test_loaded_weights_and_random_init(saved):
  loaded = _hf.load_hf_model(saved["bert"])
  original = _leaves(saved["bert_params"])
  assert [p for p, _ in _leaves(loaded.params)] == [p for p, _ in original]
  for (_, x), (_, y) in zip(_leaves(loaded.params), original):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  fresh = _hf.load_hf_model(saved["bert"], random_init=True, seed=1)
  again = _hf.load_hf_model(saved["bert"], random_init=True, seed=1)
  assert fresh.random_init and not loaded.random_init and fresh.num_params == loaded.num_params
  for (_, x), (_, y), (_, z) in zip(_leaves(fresh.params), _leaves(again.params), original):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  drawn = [(x, z) for (_, x), (_, z) in zip(_leaves(fresh.params), original) if np.ptp(z) > 0]
  assert drawn and all(not np.array_equal(x, z) for x, z in drawn)   # biases/norms start constant


def test_feature_store_round_trip(saved, tmp_path):
  hf = _hf.load_hf_model(saved["gpt2"])
  ids = np.array([[0, 5, 6], [7, 8, 9]])
  layers = _hf.hf_text_features(hf, input_ids=ids, attention_mask=(ids > 0).astype(int))
  path = _hf.save_hf_features(tmp_path, "gpt2_tiny", hf, layers, dataset="toy", split="test",
                              sample_ids=np.array([10, 11]))
  back, meta = _feature_store.load_layer_features(path)
  np.testing.assert_array_equal(np.stack(back), np.stack(layers))
  assert meta["layer_names"] == ["embeddings", "block_01", "block_02"]
  assert meta["pooling"] == "mean" and meta["architecture"] == "gpt2"


def test_bad_inputs(saved, tmp_path):
  with pytest.raises(ValueError, match="tower"):
    _hf.load_hf_model(saved["clip"])
  with pytest.raises(ValueError, match="tower"):
    _hf.load_hf_model(saved["bert"], tower="text")
  with pytest.raises(ValueError, match="dtype"):
    _hf.load_hf_model(saved["bert"], dtype="float16")
  transformers.LlamaConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                           max_position_embeddings=16).save_pretrained(tmp_path / "llama")
  with pytest.raises(ValueError, match="2 \\* head_dim"):
    _hf.load_hf_model(tmp_path / "llama")
  transformers.RobertaConfig().save_pretrained(tmp_path / "roberta")
  with pytest.raises(ValueError, match="supported"):
    _hf.load_hf_model(tmp_path / "roberta")
  vit = _hf.load_hf_model(saved["vit"])
  with pytest.raises(ValueError, match="text model"):
    _hf.hf_text_features(vit, input_ids=np.ones((2, 3), int))
  with pytest.raises(ValueError, match="pixel_values"):
    _hf.hf_image_features(vit, np.zeros((2, 1, 8, 8), np.float32))
  gpt2 = _hf.load_hf_model(saved["gpt2"])
  with pytest.raises(ValueError, match="exactly one"):
    _hf.hf_text_features(gpt2)
  with pytest.raises(ValueError, match="no tokens"):
    _hf.hf_text_features(gpt2, input_ids=np.ones((2, 3), int), attention_mask=np.zeros((2, 3), int))
  with pytest.raises(ValueError, match="tokenizer"):
    _hf.hf_text_features(gpt2, ["red"])
  with pytest.raises(ValueError, match="batch_size"):
    _hf.hf_text_features(gpt2, input_ids=np.ones((2, 3), int), batch_size=0)


def test_missing_transformers_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "transformers", None)
  with pytest.raises(ImportError, match=r"platonic_jax\[hf\]"):
    _hf.load_hf_model("anything")


def test_flax_safetensors_checkpoint(saved, tmp_path):
  cls, config = _tiny_models()["gpt2"]
  model = cls(config, _do_init=False)
  model.save_pretrained(tmp_path, params=saved["gpt2_params"], safe_serialization=True)
  assert not (tmp_path / "flax_model.msgpack").exists()
  loaded = _hf.load_hf_model(tmp_path)       # Flax-layout safetensors: no PyTorch conversion
  for (_, x), (_, y) in zip(_leaves(loaded.params), _leaves(saved["gpt2_params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
