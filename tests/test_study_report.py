"""The study's report on synthetic alignment results: tables, figures, bins, rank correlation."""

import itertools

import hypothesis
import hypothesis.strategies as hst
import numpy as np
import pytest

from platonic_jax import study
from platonic_jax.study import _report as report

PNG = b"\x89PNG\r\n\x1a\n"
ACCURACY = {"init": 0.1, "small": 0.5, "mid": 0.6, "wide": 0.7, "deep": 0.8, "big": 0.9}
PARAMS = {"init": 1000, "small": 1000, "mid": 4000, "wide": 16000, "deep": 30000, "big": 64000}


def _record(a, b, score, p_value, metric="mutual_knn"):
  return {"kind": "alignment", "metric": metric, "a": a, "b": b,
          "config": {"k": 10, "num_permutations": 99, "num_resamples": 50, "confidence": 0.95,
                     "seed": 0, "prepare": True, "num_samples": 500},
          "layer_scores": [[score]], "best_score": score, "best_layers": [1, 0],
          "search_null_mean": 0.05, "search_null_std": 0.01, "search_p_value": p_value,
          "best_interval": [score - 0.02, score + 0.03], "fixed_layers": [1, 1],
          "fixed_score": score - 0.01, "fixed_null_mean": 0.04, "fixed_null_std": 0.01,
          "fixed_p_value": p_value, "fixed_interval": [score - 0.03, score + 0.01]}


def _score(a, b):
  """Synthetic truth: two members align as much as the weaker of them is competent."""
  return 0.05 + 0.5 * min(ACCURACY[a], ACCURACY[b])


@pytest.fixture
def records():
  return [_record(a, b, _score(a, b), 0.4 if "init" in (a, b) else 0.01)
          for a, b in itertools.combinations(ACCURACY, 2)]


@pytest.fixture
def matrix(records):
  return study.alignment_matrix(records, "mutual_knn")


@pytest.fixture
def infos():
  return [report.MemberInfo(name, family="mlp" if name != "big" else "cnn", modality="image",
                            objective="supervised", num_params=PARAMS[name], accuracy=acc,
                            steps=0 if name == "init" else 300)
          for name, acc in ACCURACY.items()]


def test_member_info_reads_the_manifest_contract():
  manifest = {"member": "mlp-w64", "num_params": 8320, "complete": True,
              "spec": {"family": "mlp", "width": 64, "depth": 2, "seed": 0, "dataset": "digits",
                       "modality": "image", "objective": "supervised", "targets": ["label"],
                       "steps": 300},
              "checkpoints": [{"step": 300, "path": "c/300", "eval": {"loss": 0.3, "accuracy": {
                  "label": 0.9, "colour": 0.7}}},
                              {"step": 0, "path": "c/0", "eval": {"loss": 2.3, "accuracy": {
                                  "label": 0.1, "colour": 0.3}}}]}
  last = report.member_info(manifest)
  assert (last.name, last.family, last.width, last.depth, last.num_params, last.steps) == (
      "mlp-w64", "mlp", 64, 2, 8320, 300)
  assert last.accuracy == pytest.approx(0.8)
  init = report.member_info(manifest, step=0, target="label")
  assert (init.name, init.steps, init.accuracy) == ("mlp-w64@0", 0, 0.1)
  with pytest.raises(ValueError, match="no checkpoint at step 7"):
    report.member_info(manifest, step=7)
  with pytest.raises(ValueError, match="`manifest`"):
    report.member_info({"spec": {}})


def test_member_alignment_is_the_mean_over_the_chosen_columns(matrix):
  aligned = report.member_alignment(matrix)
  others = [m for m in ACCURACY if m != "mid"]
  assert aligned.score[2] == pytest.approx(np.mean([_score("mid", o) for o in others]))
  assert aligned.low[2] == pytest.approx(aligned.score[2] - 0.02)
  assert not aligned.separated[2] and aligned.separated.sum() == 0  # all meet 'init'
  to_big = report.member_alignment(matrix, rows=["small", "deep"], columns=["big"])
  np.testing.assert_allclose(to_big.score, [_score("small", "big"), _score("deep", "big")])
  assert to_big.separated.all()
  with pytest.raises(ValueError, match="'nope' is not in the matrix"):
    report.member_alignment(matrix, columns=["nope"])


def test_competence_bins_average_the_pairs_inside_each_bin(matrix, infos):
  bins = report.binned_alignment(matrix, infos, "accuracy", num_bins=3)
  assert [b.members for b in bins] == [("init", "small"), ("mid", "wide"), ("deep", "big")]
  assert [b.num_pairs for b in bins] == [2, 2, 2]
  for b in bins:
    assert b.score == pytest.approx(_score(*b.members))
  assert bins[0].score < bins[1].score < bins[2].score
  assert not bins[0].separated and bins[2].separated
  assert (bins[2].low_edge, bins[2].high_edge) == (0.8, 0.9)
  with pytest.raises(ValueError, match="need at least `num_bins`"):
    report.binned_alignment(matrix, infos, "accuracy", num_bins=7)


def test_rank_correlation_matches_scipy_and_brackets_its_value():
  stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  x = rng.normal(size=12)
  y = x + rng.normal(size=12)
  y[3] = y[4]  # a tie
  corr = report.rank_correlation(x, y, num_resamples=300, seed=1)
  assert corr.rho == pytest.approx(stats.spearmanr(x, y).statistic)
  assert corr.low <= corr.rho <= corr.high and corr.num_members == 12
  perfect = report.rank_correlation([1, 2, 3, 4, 5], [10, 20, 30, 40, 50.0], num_resamples=50)
  assert perfect.rho == 1.0 and perfect.low == pytest.approx(1.0)
  again = report.rank_correlation(x, y, num_resamples=300, seed=1)
  np.testing.assert_array_equal(corr.samples, again.samples)
  with pytest.raises(ValueError, match="at least 3"):
    report.rank_correlation([1, 2, np.nan], [1, 2, 3])
  with pytest.raises(ValueError, match="`confidence`"):
    report.rank_correlation(x, y, confidence=1.5)


@hypothesis.given(values=hst.lists(hst.floats(-1e3, 1e3), min_size=3, max_size=12, unique=True))
def test_rank_correlation_depends_only_on_ranks(values):
  x = np.asarray(values)
  y = np.sin(x)
  rho = report.rank_correlation(x, y, num_resamples=5).rho
  assert -1.0 <= rho <= 1.0 or np.isnan(rho)  # NaN: y constant
  # Scaling by a power of two is exact, so it keeps every order and tie.
  assert report.rank_correlation(4.0 * x, y, num_resamples=5).rho == pytest.approx(
      rho, nan_ok=True)
  assert report.rank_correlation(-x, y, num_resamples=5).rho == pytest.approx(-rho, nan_ok=True)


def test_figures_are_written_as_png(tmp_path, matrix, infos):
  paths = [
      report.plot_heatmap(matrix, tmp_path / "heatmap.png"),
      report.plot_alignment_vs(matrix, infos, "num_params", tmp_path / "params.png"),
      report.plot_alignment_vs(matrix, infos, "accuracy", tmp_path / "to_big.png",
                               columns=["big"]),
      report.plot_binned(report.binned_alignment(matrix, infos, num_bins=3),
                         tmp_path / "bins.png", metric="mutual_knn", attribute="accuracy"),
  ]
  for path in paths:
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
  with pytest.raises(ValueError, match="no member of the matrix has 'width'"):
    report.plot_alignment_vs(matrix, infos, "width", tmp_path / "w.png")


def test_zoo_section_answers_with_intervals_nulls_and_marks(matrix, infos):
  text = report.zoo_markdown(matrix, infos, num_bins=3, num_resamples=200,
                             figures={"heatmap": "figures/heatmap.png"})
  assert "### mutual_knn" in text
  assert f"0.100{study.NOT_SEPARATED} [0.080, 0.130] (1,0)" in text  # init vs small
  assert "| held-out accuracy | +" in text  # rho of accuracy vs alignment, positive
  assert "| init, small | 2 |" in text and "![heatmap](figures/heatmap.png)" in text
  without_init = report.zoo_markdown(matrix, infos[1:], columns=["big"], num_resamples=50)
  assert f"{study.NOT_SEPARATED} [" not in without_init.split("Spearman")[0].split(
      "Mean alignment")[1]


def test_zoo_report_writes_markdown_and_the_figures_it_embeds(tmp_path, records, infos):
  matrices = [study.alignment_matrix(records, "mutual_knn"),
              study.alignment_matrix([{**r, "metric": "unbiased_cka"} for r in records],
                                     "unbiased_cka")]
  infos = [*infos, report.MemberInfo("pixels", family="raw")]  # a baseline without attributes
  page = study.write_zoo_report(matrices, infos, tmp_path, num_resamples=50)
  text = page.read_text()
  assert text.startswith("# Alignment across the zoo") and "| pixels | raw |" in text
  embedded = [line.split("](")[1][:-1] for line in text.splitlines() if line.startswith("![")]
  assert len(embedded) == 8  # per metric: heatmap, two attributes, bins
  for relative in embedded:
    assert (tmp_path / relative).read_bytes().startswith(PNG)


def test_alignment_report_of_records(records):
  text = study.alignment_markdown(records, title="Synthetic")
  assert text.startswith("# Synthetic") and "N = 500 samples; 99 permutations" in text
  assert "## mutual_knn (k = 10)" in text
  assert text.count(study.NOT_SEPARATED) > 0
  assert "| init | small | 0.100° (1,0) |" in text
