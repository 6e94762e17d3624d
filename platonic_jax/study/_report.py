"""The study's report: Markdown tables (and figures) from alignment records.

Every score is printed beside its interval and its null; a score whose
p-value against its null is at least `alpha` is marked as not separating
from the null (`NOT_SEPARATED`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from platonic_jax.study import _alignment

NOT_SEPARATED = "°"  # marks a score that does not separate from its null


def _p(value: float) -> str:
  if value is None or math.isnan(value):
    return "—"
  return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _cell(score: float, low: float, high: float, p_value: float, alpha: float,
          layers: Sequence[int] | None = None) -> str:
  if score is None or math.isnan(score):
    return "—"
  mark = NOT_SEPARATED if p_value >= alpha else ""
  where = f" ({layers[0]},{layers[1]})" if layers is not None else ""
  return f"{score:.3f}{mark} [{low:.3f}, {high:.3f}]{where}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def matrix_markdown(matrix: _alignment.AlignmentMatrix, *, alpha: float = 0.05,
                    fixed: bool = False) -> str:
  """The `[M, M]` table of one metric: score°, [interval] and (layer pair) per cell.

  Args:
    matrix: from `alignment_matrix`.
    alpha: scores with p-value >= alpha get `NOT_SEPARATED`.
    fixed: the fixed-layer scores instead of the best-layer ones.
  """
  if fixed:
    scores, low, high, p = (matrix.fixed_scores, matrix.fixed_low, matrix.fixed_high,
                            matrix.fixed_p_value)
  else:
    scores, low, high, p = matrix.scores, matrix.low, matrix.high, matrix.p_value
  rows = []
  for i, name in enumerate(matrix.members):
    rows.append([f"**{name}**"] + [
        _cell(scores[i, j], low[i, j], high[i, j], p[i, j], alpha,
              None if fixed else matrix.best_layers[i, j])
        for j in range(len(matrix.members))])
  return "\n".join(_table(["a \\ b", *matrix.members], rows))


def pairs_markdown(records: Iterable[Mapping[str, Any]], metric: str, *,
                   alpha: float = 0.05) -> str:
  """One row per measured pair: best-layer score with the layer-search null, fixed-layer score."""
  header = ["a", "b", "best (layers)", "interval", "search null", "p", "fixed (layers)",
            "interval", "null", "p"]
  rows = []
  for r in records:
    if r.get("kind") != _alignment.RECORD_KIND or r.get("metric") != metric:
      continue
    best_mark = NOT_SEPARATED if r["search_p_value"] >= alpha else ""
    fixed_mark = NOT_SEPARATED if r["fixed_p_value"] >= alpha else ""
    rows.append([
        r["a"], r["b"],
        f"{r['best_score']:.3f}{best_mark} ({r['best_layers'][0]},{r['best_layers'][1]})",
        f"[{r['best_interval'][0]:.3f}, {r['best_interval'][1]:.3f}]",
        f"{r['search_null_mean']:.3f} ± {r['search_null_std']:.3f}", _p(r["search_p_value"]),
        f"{r['fixed_score']:.3f}{fixed_mark} ({r['fixed_layers'][0]},{r['fixed_layers'][1]})",
        f"[{r['fixed_interval'][0]:.3f}, {r['fixed_interval'][1]:.3f}]",
        f"{r['fixed_null_mean']:.3f} ± {r['fixed_null_std']:.3f}", _p(r["fixed_p_value"]),
    ])
  return "\n".join(_table(header, rows))


def alignment_markdown(records: Sequence[Mapping[str, Any]], *, alpha: float = 0.05,
                       title: str = "Alignment") -> str:
  """The whole report of `measure_feature_sets` records, one section per metric.

  Args:
    records: alignment records (other kinds are ignored).
    alpha: significance level for the not-separated mark.
    title: the page's heading.

  Returns:
    Markdown text.
  """
  records = [r for r in records if r.get("kind") == _alignment.RECORD_KIND]
  metrics = list(dict.fromkeys(r["metric"] for r in records))
  lines = [f"# {title}", ""]
  if records:
    config = records[0]["config"]
    lines += [
        f"N = {config['num_samples']} samples; {config['num_permutations']} permutations "
        f"(shuffled correspondence, one permutation for every layer of `b`); "
        f"{config['num_resamples']} half-samples for {config['confidence']:.0%} intervals "
        f"(re-centred half-sampling); seed {config['seed']}; features "
        f"{'clamped and L2-normalised' if config['prepare'] else 'as given'}.", "",
        f"Each cell: score, interval, (layer of a, layer of b). {NOT_SEPARATED} marks a score "
        f"whose p-value against its null is >= {alpha}: it does not separate from the null. "
        "The best-layer score is the maximum over all layer pairs and is biased upward; its "
        "null is the same maximum under shuffled correspondence. The fixed-layer score uses "
        "the last layers.", ""]
  for metric in metrics:
    matrix = _alignment.alignment_matrix(records, metric)
    k = records[[r["metric"] for r in records].index(metric)]["config"].get("k")
    lines += [f"## {metric}" + (f" (k = {k})" if k is not None else ""), "",
              "Best layer pair:", "", matrix_markdown(matrix, alpha=alpha), "",
              "Fixed layers (last):", "", matrix_markdown(matrix, alpha=alpha, fixed=True), "",
              "Per pair:", "", pairs_markdown(records, metric, alpha=alpha), ""]
  if not metrics:
    lines.append("No alignment records.")
  return "\n".join(lines).rstrip() + "\n"
