"""`measure_feature_sets` and `scripts/measure_alignment.py` end to end on tiny arrays."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import platonic_jax as pj
from platonic_jax import bench
from platonic_jax import study

ROOT = pathlib.Path(__file__).resolve().parents[1]
N = 40
SETTINGS = {"k": 4, "num_permutations": 9, "num_resamples": 8, "seed": 1}


def _script(*flags, check=True):
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_alignment.py"), *flags],
                        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                        text=True, timeout=600, check=False)
  if check:
    assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(N, 4)).astype(np.float32)
  folder = tmp_path_factory.mktemp("features")
  np.save(folder / "alpha.npy", np.stack([
      z @ rng.normal(size=(4, 6)).astype(np.float32) + s * rng.normal(size=(N, 6)).astype(
          np.float32) for s in (2.0, 0.2)]))
  np.savez(folder / "beta.npz", layer_0=z @ rng.normal(size=(4, 6)).astype(np.float32),
           layer_1=rng.normal(size=(N, 6)).astype(np.float32))
  return folder


@pytest.fixture(scope="module")
def records(feature_dir):
  return study.measure_feature_sets(study.load_feature_sets([feature_dir]), ["mutual_knn"],
                                    **SETTINGS)


def test_measurements_equal_the_library_statistics(feature_dir, records):
  sets = study.load_feature_sets([feature_dir])
  assert [(r["a"], r["b"]) for r in records] == [("alpha", "beta")]
  a, b = (study.prepared_layers(s) for s in sets)
  np.testing.assert_array_equal(a[1], pj.prepare_features(np.stack(sets[0].layers))[1])
  search = study.layer_search_null("mutual_knn", a, b, indices=study.permutations(N, 9, 1), k=4)
  (record,) = records
  assert record["best_score"] == search.best_score
  assert record["best_layers"] == list(search.best_pair)
  assert record["search_p_value"] == search.p_value
  assert record["fixed_layers"] == [1, 1] and record["fixed_score"] == search.fixed_score
  i, j = search.best_pair
  interval = study.bootstrap_interval("mutual_knn", a[i], b[j], indices=study.resamples(N, 8, 1),
                                      k=4)
  assert record["best_interval"] == [interval.low, interval.high]
  matrix = study.alignment_matrix(records, "mutual_knn")
  assert matrix.members == ("alpha", "beta")
  assert matrix.scores[1, 0] == matrix.scores[0, 1] == record["best_score"]
  assert list(matrix.best_layers[1, 0]) == record["best_layers"][::-1]
  assert np.isnan(matrix.scores[0, 0])


def test_non_symmetric_metrics_measure_both_orders(feature_dir):
  sets = study.load_feature_sets([feature_dir])
  out = study.measure_feature_sets(sets, ["cknna"], k=3, num_permutations=4, num_resamples=4,
                                   prepare=False)
  assert [(r["a"], r["b"]) for r in out] == [("alpha", "beta"), ("beta", "alpha")]
  with pytest.raises(ValueError, match="at least 2"):
    study.measure_feature_sets(sets[:1], ["cknna"])
  for bad, match in (({"num_permutations": 0}, "num_permutations"),
                     ({"confidence": 2.0}, "confidence"), ({"seed": -3}, "seed"),
                     ({"metrics": ["nope"]}, "unknown metric")):
    with pytest.raises(ValueError, match=match):
      study.measure_feature_sets(sets, **{"metrics": ["cka"], **bad})


def test_script_end_to_end_resumes_and_reports(feature_dir, records, tmp_path):
  out, inputs = tmp_path / "out", shutil.copytree(feature_dir, tmp_path / "features")
  flags = [f"--inputs={inputs}", f"--output_dir={out}", "--k=4", "--num_permutations=9",
           "--num_resamples=8", "--seed=1"]
  done = _script(*flags, "--metrics=mutual_knn")
  assert done.stdout.count("measuring ") == 1
  (got,) = bench.load_records(out / "records.jsonl")
  for key in ("best_score", "best_layers", "search_p_value", "best_interval", "fixed_score",
              "fixed_p_value", "fixed_interval", "layer_scores"):
    assert got[key] == records[0][key], key
  matrices = json.loads((out / "alignment.json").read_text())
  assert matrices["mutual_knn"]["members"] == ["alpha", "beta"]
  assert matrices["mutual_knn"]["scores"][0][1] == got["best_score"]
  assert matrices["mutual_knn"]["scores"][0][0] is None
  report = (out / "report.md").read_text()
  assert "## mutual_knn (k = 4)" in report and "| **beta** |" in report
  assert "![mutual_knn heatmap](figures/mutual_knn_heatmap.png)" in report
  assert (out / "figures" / "mutual_knn_heatmap.png").read_bytes().startswith(b"\x89PNG")
  # A rerun (as after a kill) measures only what is not yet recorded.
  again = _script(*flags, "--metrics=mutual_knn,unbiased_cka")
  assert "measuring mutual_knn" not in again.stdout
  assert again.stdout.count("measuring unbiased_cka") == 1
  assert len(bench.load_records(out / "records.jsonl")) == 2


def test_resume_skips_recorded_pairs_but_not_changed_features(feature_dir, tmp_path):
  sets = study.load_feature_sets([feature_dir])
  path, seen = tmp_path / "records.jsonl", []
  settings = {"num_permutations": 3, "num_resamples": 3, "records_path": path,
              "progress": seen.append}
  first = study.measure_feature_sets(sets, ["cka"], **settings)
  assert study.measure_feature_sets(sets, ["cka"], **settings) == first and len(seen) == 1
  changed = [dataclasses.replace(sets[0], layers=[2.0 * x + 1.0 for x in sets[0].layers]),
             sets[1]]
  study.measure_feature_sets(changed, ["cka"], **settings)
  assert len(seen) == 2 and len(bench.load_records(path)) == 2


def test_help_and_one_line_errors(feature_dir, tmp_path):
  assert _script("--help").stdout.count("--num_permutations") == 1
  np.save(tmp_path / "short.npy", np.ones((N - 1, 2), np.float32))
  for flags, message in (
      ((f"--inputs={feature_dir}", "--metrics=mutal_knn"), "Did you mean 'mutual_knn'"),
      ((f"--inputs={feature_dir}", "--num_permutations=0"), "--num_permutations"),
      ((f"--inputs={feature_dir}", "extra"), "unexpected positional arguments ['extra']"),
      ((f"--inputs={tmp_path / 'short.npy'},{feature_dir / 'beta.npz'}",), "has N=39"),
  ):
    done = _script(*flags, f"--output_dir={tmp_path / 'o'}", check=False)
    assert done.returncode != 0, flags
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 2, done.stderr
