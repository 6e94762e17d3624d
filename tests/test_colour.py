"""Colour experiment: CIELAB conversion, perceptual kernel, and the pipeline on a tiny BERT."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from platonic_jax import study

ROOT = pathlib.Path(__file__).resolve().parents[1]

# sRGB (8-bit / 255) -> CIELAB (D65), published reference values (Lindbloom's calculator).
_REFERENCE_LAB = [
    ((1, 1, 1), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((1, 0, 0), (53.241, 80.092, 67.203)),
    ((0, 1, 0), (87.735, -86.183, 83.179)),
    ((0, 0, 1), (32.297, 79.188, -107.860)),
    ((1, 1, 0), (97.139, -21.554, 94.478)),
    ((0, 1, 1), (91.113, -48.088, -14.131)),
    ((1, 0, 1), (60.324, 98.234, -60.825)),
    ((128 / 255,) * 3, (53.585, 0.0, 0.0)),
]


def test_srgb_to_cielab_reference_values():
  rgb = np.array([c for c, _ in _REFERENCE_LAB])
  expected = np.array([lab for _, lab in _REFERENCE_LAB])
  np.testing.assert_allclose(study.srgb_to_cielab(rgb), expected, atol=0.01)
  with pytest.raises(ValueError, match="rgb"):
    study.srgb_to_cielab(np.array([[0, 128, 255]]))
  with pytest.raises(ValueError, match="rgb"):
    study.srgb_to_cielab(np.zeros((3, 4)))


def test_xkcd_colours():
  names, rgb = study.xkcd_colours()
  assert len(names) == 949 == rgb.shape[0] and rgb.dtype == np.uint8
  assert not any(n.startswith("xkcd:") for n in names)
  index = names.index("white")
  assert tuple(rgb[index]) == (255, 255, 255)


def test_perceptual_kernel_features_give_delta_e_neighbours(rng):
  lab = study.srgb_to_cielab(rng.uniform(size=(60, 3)))
  features, sigma = study.perceptual_kernel_features(lab)
  distance = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))
  assert sigma == pytest.approx(np.median(distance[np.triu_indices(60, 1)]))
  kernel = np.exp(-distance ** 2 / (2 * sigma ** 2))
  np.testing.assert_allclose(features.astype(np.float64) @ features.T, kernel, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
  np.fill_diagonal(distance, np.inf)
  by_distance = np.argsort(distance, axis=1, kind="stable")[:, :5]
  gram = features.astype(np.float64) @ features.T
  np.fill_diagonal(gram, -np.inf)
  by_kernel = np.argsort(-gram, axis=1, kind="stable")[:, :5]
  np.testing.assert_array_equal(by_kernel, by_distance)


def test_bag_of_words_features():
  counts = study.bag_of_words_features(["dark blue", "blue", "Blue-green"])
  # vocabulary: blue, dark, green
  np.testing.assert_array_equal(counts, [[1, 1, 0], [1, 0, 0], [1, 0, 1]])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
  transformers = pytest.importorskip("transformers")
  path = tmp_path_factory.mktemp("tiny_bert")
  config = transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, vocab_size=64, max_position_embeddings=32)
  transformers.FlaxBertModel(config, seed=0).save_pretrained(path)
  words = ["blue", "green", "dark", "light", "pale", "red", "brown", "purple", "pink", "grey"]
  vocab = path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
  transformers.BertTokenizer(str(vocab)).save_pretrained(path)
  return path


def test_script_end_to_end_on_tiny_bert(tiny_bert, tmp_path):
  out = tmp_path / "colour"
  command = [sys.executable, str(ROOT / "scripts" / "colour_experiment.py"),
             f"--model_dir={tiny_bert}", f"--output_dir={out}", "--num_colours=40", "--k=3",
             "--num_permutations=8", "--num_resamples=8", "--batch_size=16",
             "--metrics=mutual_knn"]
  done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "mutual_knn: last layer" in done.stdout
  payload = json.loads((out / "colour.json").read_text())
  assert payload["config"]["num_colours"] == 40 and payload["config"]["k"] == 3
  assert payload["layer_names"] == ["embeddings", "block_01", "block_02"]
  records = payload["records"]
  for member, layers in (("pretrained", 3), ("random_init", 3), ("bag_of_words", 1)):
    for metric in ("mutual_knn",):
      rows = [r for r in records if (r["member"], r["metric"]) == (member, metric)]
      assert sorted(r["selection"] for r in rows) == sorted(["layer"] * layers + ["best", "last"])
      for r in rows:
        assert r["low"] <= r["high"] and np.isfinite(r["score"])
        if r["selection"] != "layer":   # (1 + #{null >= score}) / (P + 1)
          assert r["p_value"] * 9 == pytest.approx(round(r["p_value"] * 9)) and r["p_value"] > 0
  best = [r for r in records if r["selection"] == "best" and r["member"] == "pretrained"]
  for r in best:   # the best layer really is the maximum over layers
    layer_scores = [x["score"] for x in records if (x["member"], x["metric"], x["selection"])
                    == ("pretrained", r["metric"], "layer")]
    assert r["score"] == max(layer_scores)
  report = (out / "report.md").read_text()
  assert "## What it shows" in report and "colour_layers.png" in report
  assert (out / "colour_layers.png").stat().st_size > 1000


def test_bad_arguments_fail_before_loading_a_model(tmp_path):
  missing = tmp_path / "no_model"    # never read: arguments are checked first
  with pytest.raises(ValueError, match="template"):
    study.colour_experiment(missing, template="no placeholder")
  with pytest.raises(ValueError, match="metrics"):
    study.colour_experiment(missing, metrics=["mutual_nn"])
  with pytest.raises(ValueError, match="num_colours"):
    study.colour_experiment(missing, num_colours=5, k=10)
