"""The reference study's model lists: structure only (nothing is downloaded)."""

import pytest

from platonic_jax import zoo


def test_reference_zoo_structure():
  vision, language = zoo.reference_zoo("vision"), zoo.reference_zoo("language")
  assert len(vision) == 17 and len(language) == 12
  assert zoo.reference_zoo() == vision + language
  names = [m.reference_name for m in vision + language]
  assert len(set(names)) == len(names)
  assert {m.family for m in vision} == {"augreg", "mae", "dinov2", "clip", "clip_in12k"}
  assert {m.family for m in language} == {"bloomz", "open_llama", "llama"}
  for model in vision:
    assert model.modality == "vision" and model.pooling == "cls"
    assert (model.tower == "vision") == (model.family == "clip")
  for model in language:
    assert model.modality == "language" and model.pooling == "mean" and model.tower is None
    assert model.flax_id == model.reference_name       # the reference's ids are hub ids
  for model in vision + language:
    assert model.note, model                            # every entry says what to expect
    if model.flax_id is None:
      assert "bring the features" in model.note
  assert sum(m.flax_id is not None for m in vision) == 7   # DINOv2 x4, CLIP x3
  with pytest.raises(ValueError, match="modality"):
    zoo.reference_zoo("audio")
