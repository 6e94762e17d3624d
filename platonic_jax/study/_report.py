"""The study's report: Markdown tables and PNG figures from alignment results.

Every score is printed beside its interval and its null; a score whose
p-value against its null is at least `alpha` is marked as not separating
from the null (`NOT_SEPARATED`). For a zoo, members carry their metadata
(`MemberInfo`, from the member manifests) and the report asks whether
alignment grows with competence and scale: per-member alignment against an
attribute, alignment within competence bins (the hypothesis' vision-vision
figure), and Spearman's rank correlation with a bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from platonic_jax import _files
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
                       title: str = "Alignment",
                       figures: Mapping[str, str] | None = None) -> str:
  """The whole report of `measure_feature_sets` records, one section per metric.

  Args:
    records: alignment records (other kinds are ignored).
    alpha: significance level for the not-separated mark.
    title: the page's heading.
    figures: metric -> relative path of an image (e.g. its `plot_heatmap`)
      shown under the metric's best-layer table.

  Returns:
    Markdown text.
  """
  records = [r for r in records if r.get("kind") == _alignment.RECORD_KIND]
  metrics = list(dict.fromkeys(r["metric"] for r in records))
  lines = [f"# {title}", ""]
  if records:
    config = records[0]["config"]
    lines += [
        (f"N = {config['num_samples']} samples; {config['num_permutations']} permutations "
         f"(shuffled correspondence, one permutation for every layer of `b`); "
         f"{config['num_resamples']} half-samples for {config['confidence']:.0%} intervals "
         f"(re-centred half-sampling); seed {config['seed']}; features "
         f"{'clamped and L2-normalised' if config['prepare'] else 'as given'}."), "",
        (f"Each cell: score, interval, (layer of a, layer of b). {NOT_SEPARATED} marks a score "
         f"whose p-value against its null is >= {alpha}: it does not separate from the null. "
         "The best-layer score is the maximum over all layer pairs and is biased upward; its "
         "null is the same maximum under shuffled correspondence. The fixed-layer score uses "
         "the last layers."), ""]
  for metric in metrics:
    matrix = _alignment.alignment_matrix(records, metric)
    k = records[[r["metric"] for r in records].index(metric)]["config"].get("k")
    lines += [f"## {metric}" + (f" (k = {k})" if k is not None else ""), "",
              "Best layer pair:", "", matrix_markdown(matrix, alpha=alpha), "",
              *([f"![{metric} heatmap]({figures[metric]})", ""]
                if figures and metric in figures else []),
              "Fixed layers (last):", "", matrix_markdown(matrix, alpha=alpha, fixed=True), "",
              "Per pair:", "", pairs_markdown(records, metric, alpha=alpha), ""]
  if not metrics:
    lines.append("No alignment records.")
  return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------
# Zoo members: metadata, per-member alignment, bins, rank correlation
# --------------------------------------------------------------------------

ATTRIBUTES = ("num_params", "accuracy", "steps", "width", "depth")
_LABELS = {"num_params": "parameters", "accuracy": "held-out accuracy", "steps": "training steps",
           "width": "width", "depth": "depth"}


@dataclasses.dataclass(frozen=True)
class MemberInfo:
  """What the report knows about one member (None where it does not apply).

  Attributes:
    name: the member's name in the alignment records.
    family, modality, objective: from the manifest's spec ('raw', 'latent',
      ... for baselines).
    width, depth, seed: architecture knobs.
    num_params: parameter count.
    steps: training steps of the checkpoint measured (0 = random init).
    accuracy: held-out accuracy of that checkpoint (mean over its targets,
      or the chosen target).
  """
  name: str
  family: str | None = None
  modality: str | None = None
  objective: str | None = None
  width: int | None = None
  depth: int | None = None
  seed: int | None = None
  num_params: int | None = None
  steps: int | None = None
  accuracy: float | None = None

  def value(self, attribute: str) -> float | None:
    if attribute not in ATTRIBUTES:
      raise ValueError(f"`attribute` must be one of {ATTRIBUTES}, got {attribute!r}.")
    value = getattr(self, attribute)
    return None if value is None else float(value)


def member_info(manifest: Mapping[str, Any], *, name: str | None = None, step: int | None = None,
                target: str | None = None) -> MemberInfo:
  """A `MemberInfo` from a zoo member manifest (`<zoo_dir>/<member>/manifest.json`).

  Args:
    manifest: the parsed manifest (`member`, `spec`, `num_params`, `checkpoints`).
    name: the member's name in the records (default `manifest['member']`,
      with `@<step>` appended when `step` is given).
    step: which checkpoint (default the last one).
    target: whose accuracy (default the mean over the checkpoint's targets).

  Raises:
    ValueError: a manifest without `member`/`spec`, or no checkpoint at `step`.
  """
  if not isinstance(manifest, Mapping) or "member" not in manifest or not isinstance(
      manifest.get("spec"), Mapping):
    raise ValueError("`manifest` must be a member manifest with 'member' and 'spec'.")
  spec = manifest["spec"]
  checkpoints = sorted(manifest.get("checkpoints") or [], key=lambda c: c["step"])
  chosen = None
  if step is not None:
    chosen = next((c for c in checkpoints if c["step"] == step), None)
    if chosen is None:
      raise ValueError(f"member {manifest['member']!r} has no checkpoint at step {step}; it has "
                       f"{[c['step'] for c in checkpoints]}.")
  elif checkpoints:
    chosen = checkpoints[-1]
  accuracy = None
  if chosen is not None:
    accuracies = (chosen.get("eval") or {}).get("accuracy") or {}
    if target is not None:
      accuracy = accuracies.get(target)
    elif accuracies:
      accuracy = float(np.mean(list(accuracies.values())))
  default_name = manifest["member"] + (f"@{step}" if step is not None else "")
  return MemberInfo(
      name=name or default_name, family=spec.get("family"), modality=spec.get("modality"),
      objective=spec.get("objective"), width=spec.get("width"), depth=spec.get("depth"),
      seed=spec.get("seed"), num_params=manifest.get("num_params"),
      steps=None if chosen is None else chosen["step"], accuracy=accuracy)


@dataclasses.dataclass(frozen=True)
class MemberAlignment:
  """Each row member's alignment with a set of column members.

  Attributes:
    members: the row members.
    score: `[R]` mean best-layer score over the columns (excluding itself).
    low, high: `[R]` means of the per-pair interval ends: the interval the
      mean would have if the pair scores moved together (they share the row
      member), so at least as wide as the mean's own.
    null_mean: `[R]` mean of the per-pair nulls.
    num_pairs: `[R]` measured pairs in each mean.
    num_separated: `[R]` of those, pairs whose p-value < alpha.
    separated: `[R]` bool, every pair separated from its null.
  """
  members: tuple[str, ...]
  score: np.ndarray
  low: np.ndarray
  high: np.ndarray
  null_mean: np.ndarray
  num_pairs: np.ndarray
  num_separated: np.ndarray
  separated: np.ndarray


def member_alignment(matrix: _alignment.AlignmentMatrix, *, rows: Sequence[str] | None = None,
                     columns: Sequence[str] | None = None,
                     alpha: float = 0.05) -> MemberAlignment:
  """Mean alignment of each row member with the column members (default: all others).

  Use `columns=[reference]` for alignment with one reference (the true
  latent, a large model), `rows` = caption members and `columns` = image
  members for cross-modal alignment.

  Raises:
    ValueError: a name not in the matrix, or a row with no measured column.
  """
  index = {name: m for m, name in enumerate(matrix.members)}
  rows = list(matrix.members if rows is None else rows)
  columns = list(matrix.members if columns is None else columns)
  for name in rows + columns:
    if name not in index:
      raise ValueError(f"member {name!r} is not in the matrix ({list(matrix.members)}).")
  out = {key: [] for key in ("score", "low", "high", "null_mean", "num_pairs", "num_separated",
                             "separated")}
  for r in rows:
    cols = [index[c] for c in columns if c != r and not np.isnan(matrix.scores[index[r], index[c]])]
    if not cols:
      raise ValueError(f"member {r!r} has no measured pair with {columns}.")
    i = index[r]
    out["score"].append(matrix.scores[i, cols].mean())
    out["low"].append(matrix.low[i, cols].mean())
    out["high"].append(matrix.high[i, cols].mean())
    out["null_mean"].append(matrix.null_mean[i, cols].mean())
    separated = int((matrix.p_value[i, cols] < alpha).sum())
    out["num_pairs"].append(len(cols))
    out["num_separated"].append(separated)
    out["separated"].append(separated == len(cols))
  return MemberAlignment(tuple(rows), **{k: np.asarray(v) for k, v in out.items()})


@dataclasses.dataclass(frozen=True)
class CompetenceBin:
  """Members whose attribute falls in `[low_edge, high_edge]`, and their mutual alignment.

  Attributes:
    low_edge, high_edge: the bin's attribute range.
    members: the members in the bin.
    num_pairs: measured pairs with both members in the bin.
    score: mean best-layer score over those pairs (NaN when none).
    low, high: means of their interval ends.
    null_mean: mean of their nulls.
    separated: every pair's p-value < alpha.
  """
  low_edge: float
  high_edge: float
  members: tuple[str, ...]
  num_pairs: int
  score: float
  low: float
  high: float
  null_mean: float
  separated: bool


def binned_alignment(matrix: _alignment.AlignmentMatrix, infos: Sequence[MemberInfo],
                     attribute: str = "accuracy", *, num_bins: int = 3,
                     alpha: float = 0.05) -> list[CompetenceBin]:
  """The hypothesis' vision-vision figure: members binned by competence, mean alignment within.

  Members with a value of `attribute` are sorted by it and split into
  `num_bins` bins of (nearly) equal count; each bin reports the mean score
  over the pairs of its members (both orders for non-symmetric metrics).

  Raises:
    ValueError: fewer members with the attribute than bins, or `num_bins` < 1.
  """
  if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
    raise ValueError(f"`num_bins` must be a positive int, got {num_bins!r}.")
  index = {name: m for m, name in enumerate(matrix.members)}
  valued = sorted((info.value(attribute), info.name) for info in infos
                  if info.name in index and info.value(attribute) is not None)
  if len(valued) < num_bins:
    raise ValueError(f"{len(valued)} members have {attribute!r}; need at least `num_bins` = "
                     f"{num_bins}.")
  bins = []
  for part in np.array_split(np.arange(len(valued)), num_bins):
    names = [valued[p][1] for p in part]
    cells = [(index[a], index[b]) for a in names for b in names
             if a != b and not np.isnan(matrix.scores[index[a], index[b]])]
    if cells:
      ii, jj = (np.asarray(v) for v in zip(*cells))
      stats = (matrix.scores[ii, jj].mean(), matrix.low[ii, jj].mean(),
               matrix.high[ii, jj].mean(), matrix.null_mean[ii, jj].mean(),
               bool((matrix.p_value[ii, jj] < alpha).all()))
    else:
      stats = (np.nan, np.nan, np.nan, np.nan, False)
    bins.append(CompetenceBin(valued[part[0]][0], valued[part[-1]][0], tuple(names),
                              len(cells), *(float(s) for s in stats[:4]), stats[4]))
  return bins


@dataclasses.dataclass(frozen=True)
class RankCorrelation:
  """Spearman's rank correlation with a percentile bootstrap interval over members.

  Attributes:
    rho: Spearman's rho of the observed (x, y).
    low, high: percentile interval of rho over resampled members.
    num_members: members with both values.
    samples: `[R']` rho of each resample that has variation in x and y.
  """
  rho: float
  low: float
  high: float
  num_members: int
  samples: np.ndarray


def _ranks(x: np.ndarray) -> np.ndarray:
  """Ranks 0..n-1 with ties sharing their average rank."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(len(x))
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
  rx, ry = _ranks(x), _ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
  return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def rank_correlation(x: Sequence[float], y: Sequence[float], *, num_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> RankCorrelation:
  """Spearman's rho of (x, y) over members, with a bootstrap interval.

  Members are resampled with replacement (ties from repeated members get
  average ranks); resamples in which x or y is constant have no rho and are
  dropped. With few members the interval is wide: that is the honest answer.

  Args:
    x, y: one value per member (e.g. accuracy, mean alignment); pairs with a
      NaN are left out.
    num_resamples: bootstrap resamples (>= 1).
    confidence: interval coverage in (0, 1).
    seed: non-negative int.

  Raises:
    ValueError: x and y of different lengths, fewer than 3 complete members,
      bad `num_resamples`, `confidence` or `seed`.

  Cost: O(R n log n) for n members.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"`x` and `y` must be 1-D of one length, got {x.shape} and {y.shape}.")
  keep = ~(np.isnan(x) | np.isnan(y))
  x, y = x[keep], y[keep]
  if len(x) < 3:
    raise ValueError(f"a rank correlation needs at least 3 members with both values, got "
                     f"{len(x)}.")
  if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
    raise ValueError(f"`num_resamples` must be a positive int, got {num_resamples!r}.")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, len(x), size=(num_resamples, len(x)))
  samples = np.array([_spearman(x[d], y[d]) for d in draws])
  samples = samples[~np.isnan(samples)]
  if samples.size:
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
  else:
    low = high = float("nan")
  return RankCorrelation(_spearman(x, y), float(low), float(high), len(x), samples)


# --------------------------------------------------------------------------
# Figures (matplotlib, imported on use; no global pyplot state)
# --------------------------------------------------------------------------

def _figure(width: float, height: float):
  try:
    # pylint: disable=g-import-not-at-top
    from matplotlib import figure as mpl_figure
    from matplotlib.backends import backend_agg
    # pylint: enable=g-import-not-at-top
  except ImportError as error:
    raise ImportError("matplotlib is needed for the study's figures: pip install matplotlib"
                      ) from error
  fig = mpl_figure.Figure(figsize=(width, height), dpi=120)
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _save(fig, path) -> pathlib.Path:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
  return _files.write_atomic(path, buffer.getvalue())


def plot_heatmap(matrix: _alignment.AlignmentMatrix, path, *, alpha: float = 0.05,
                 title: str | None = None) -> pathlib.Path:
  """Members x members heatmap of best-layer scores; cells not separating from the null
  carry `NOT_SEPARATED`, unmeasured cells are blank. Returns the PNG's path."""
  m = len(matrix.members)
  fig = _figure(1.2 + 0.55 * m, 0.9 + 0.5 * m)
  ax = fig.add_subplot()
  image = ax.imshow(np.ma.masked_invalid(matrix.scores), cmap="viridis")
  fig.colorbar(image, ax=ax, label=matrix.metric)
  for i in range(m):
    for j in range(m):
      if np.isnan(matrix.scores[i, j]):
        continue
      mark = NOT_SEPARATED if matrix.p_value[i, j] >= alpha else ""
      ax.text(j, i, f"{matrix.scores[i, j]:.2f}{mark}", ha="center", va="center", fontsize=7,
              color="white" if matrix.scores[i, j] < np.nanmean(matrix.scores) else "black")
  ax.set_xticks(range(m), matrix.members, rotation=60, ha="right", fontsize=7)
  ax.set_yticks(range(m), matrix.members, fontsize=7)
  ax.set_xlabel("b")
  ax.set_ylabel("a")
  ax.set_title(title or f"{matrix.metric}: best layer pair ({NOT_SEPARATED}: p >= {alpha})",
               fontsize=9)
  return _save(fig, path)


def _log_scale(attribute: str, values: np.ndarray) -> bool:
  positive = values[values > 0]
  return attribute == "num_params" and positive.size == values.size and (
      positive.max() / positive.min() > 20)


def plot_alignment_vs(matrix: _alignment.AlignmentMatrix, infos: Sequence[MemberInfo],
                      attribute: str, path, *, columns: Sequence[str] | None = None,
                      alpha: float = 0.05, title: str | None = None) -> pathlib.Path:
  """Each member's alignment (`member_alignment` with `columns`) against `attribute`.

  Error bars are the mean per-pair intervals; the dashed markers are the mean
  nulls; open markers did not separate from the null. Members without the
  attribute are left out. Returns the PNG's path.

  Raises:
    ValueError: no member with the attribute.
  """
  infos = [i for i in infos if i.name in matrix.members and i.value(attribute) is not None
           and (columns is None or [c for c in columns if c != i.name])]
  if not infos:
    raise ValueError(f"no member of the matrix has {attribute!r}.")
  aligned = member_alignment(matrix, rows=[i.name for i in infos], columns=columns, alpha=alpha)
  x = np.array([i.value(attribute) for i in infos])
  fig = _figure(5.5, 3.8)
  ax = fig.add_subplot()
  families = sorted({i.family or "?" for i in infos})
  for number, family in enumerate(families):
    colour = f"C{number % 10}"
    sel = np.array([(i.family or "?") == family for i in infos])
    err = np.stack([aligned.score[sel] - aligned.low[sel], aligned.high[sel] - aligned.score[sel]])
    ax.errorbar(x[sel], aligned.score[sel], yerr=np.maximum(err, 0), fmt="none", capsize=3,
                color=colour, alpha=0.7)
    ax.scatter(x[sel], aligned.score[sel], zorder=3, edgecolors=colour,
               color=[colour if s else "none" for s in aligned.separated[sel]])
    ax.scatter(x[sel], aligned.null_mean[sel], marker="_", color=colour, s=80)
  if _log_scale(attribute, x):
    ax.set_xscale("log")
  ax.set_xlabel(_LABELS[attribute])
  if columns is None:
    against = "(mean over others)"
  elif len(columns) <= 2:
    against = f"with {', '.join(columns)}"
  else:  # the caller's title or text names them; a long list would swamp the figure
    against = f"(mean over {len(columns)} members)"
  ax.set_ylabel(f"{matrix.metric} {against}")
  ax.set_title(title or f"{matrix.metric} against {_LABELS[attribute]}; '_' null, open: "
               f"p >= {alpha}", fontsize=9)
  from matplotlib import lines as mpl_lines  # pylint: disable=g-import-not-at-top
  ax.legend(handles=[mpl_lines.Line2D([], [], marker="o", linestyle="", color=f"C{n % 10}",
                                      label=family) for n, family in enumerate(families)],
            fontsize=7)
  return _save(fig, path)


def plot_binned(bins: Sequence[CompetenceBin], path, *, metric: str, attribute: str,
                title: str | None = None) -> pathlib.Path:
  """Mean within-bin alignment per competence bin, with the mean intervals and nulls."""
  fig = _figure(5.0, 3.5)
  ax = fig.add_subplot()
  x = np.arange(len(bins))
  score = np.array([b.score for b in bins])
  err = np.stack([score - [b.low for b in bins], [b.high for b in bins] - score])
  ax.bar(x, score, yerr=np.nan_to_num(np.maximum(err, 0)), capsize=4, color="tab:blue",
         alpha=0.8, label="mean alignment within bin")
  ax.scatter(x, [b.null_mean for b in bins], marker="_", s=300, color="black", zorder=3,
             label="mean null")
  ax.set_xticks(x, [f"{b.low_edge:.3g}–{b.high_edge:.3g}\n({len(b.members)} members)"
                    for b in bins], fontsize=7)
  ax.set_xlabel(f"bins of {_LABELS[attribute]}")
  ax.set_ylabel(metric)
  ax.set_title(title or f"{metric} within {_LABELS[attribute]} bins", fontsize=9)
  ax.legend(fontsize=7)
  return _save(fig, path)


# --------------------------------------------------------------------------
# Markdown for a zoo
# --------------------------------------------------------------------------

def members_markdown(infos: Sequence[MemberInfo]) -> str:
  """One row per member: family, modality, objective, width, depth, params, steps, accuracy."""
  def text(value):
    if value is None:
      return "—"
    return f"{value:.3f}" if isinstance(value, float) else f"{value:,}" if isinstance(
        value, int) else str(value)
  header = ["member", "family", "modality", "objective", "width", "depth", "params", "steps",
            "accuracy"]
  rows = [[i.name] + [text(getattr(i, f)) for f in (
      "family", "modality", "objective", "width", "depth", "num_params", "steps", "accuracy")]
          for i in infos]
  return "\n".join(_table(header, rows))


def zoo_markdown(matrix: _alignment.AlignmentMatrix, infos: Sequence[MemberInfo], *,
                 attributes: Sequence[str] = ("num_params", "accuracy"),
                 columns: Sequence[str] | None = None, num_bins: int = 3,
                 alpha: float = 0.05, num_resamples: int = 1000, seed: int = 0,
                 figures: Mapping[str, str] | None = None) -> str:
  """A section answering "does alignment grow with competence and scale?" for one metric.

  It holds: the members x members table; per member, its mean alignment with
  `columns` (default all others) beside each attribute; for each attribute,
  Spearman's rho between the attribute and that alignment with a bootstrap
  interval over members; and the competence bins of the first attribute.
  `figures` maps captions to relative image paths to embed.

  Raises:
    ValueError: as `member_alignment`, `binned_alignment` and `rank_correlation`.
  """
  lines = [f"### {matrix.metric}", "", matrix_markdown(matrix, alpha=alpha), ""]
  rows = [i for i in infos if i.name in matrix.members
          and (columns is None or [c for c in columns if c != i.name])]
  aligned = member_alignment(matrix, rows=[i.name for i in rows], columns=columns, alpha=alpha)
  header = ["member", *[_LABELS[a] for a in attributes], "alignment", "interval", "null",
            "pairs separated"]
  table = []
  for m, info in enumerate(rows):
    mark = "" if aligned.separated[m] else NOT_SEPARATED
    values = [info.value(a) for a in attributes]
    table.append([info.name] + ["—" if v is None else f"{v:.4g}" for v in values] + [
        f"{aligned.score[m]:.3f}{mark}", f"[{aligned.low[m]:.3f}, {aligned.high[m]:.3f}]",
        f"{aligned.null_mean[m]:.3f}", f"{aligned.num_separated[m]}/{aligned.num_pairs[m]}"])
  others = "every other member" if columns is None else ", ".join(columns)
  lines += [f"Mean alignment with {others} ({NOT_SEPARATED}: some of its pairs have "
            f"p >= {alpha}):", "", *_table(header, table), ""]
  corr_rows = []
  for attribute in attributes:
    values = [info.value(attribute) for info in rows]
    x = np.array([np.nan if v is None else v for v in values])
    if np.count_nonzero(~np.isnan(x)) < 3:
      corr_rows.append([_LABELS[attribute], "—", "—", str(np.count_nonzero(~np.isnan(x)))])
      continue
    corr = rank_correlation(x, aligned.score, num_resamples=num_resamples, seed=seed)
    corr_rows.append([_LABELS[attribute], f"{corr.rho:+.2f}", f"[{corr.low:+.2f}, {corr.high:+.2f}]",
                      str(corr.num_members)])
  lines += ["Spearman rank correlation with alignment (bootstrap over members):", "",
            *_table(["attribute", "rho", "interval", "members"], corr_rows), ""]
  valued = [i for i in rows if i.value(attributes[0]) is not None]
  if len(valued) >= max(num_bins, 2) * 2:
    bins = binned_alignment(matrix, rows, attributes[0], num_bins=num_bins, alpha=alpha)
    lines += [f"Members binned by {_LABELS[attributes[0]]}, mean alignment within each bin:", "",
              *_table(["bin", "members", "pairs", "alignment", "interval", "null"], [[
                  f"{b.low_edge:.4g}–{b.high_edge:.4g}", ", ".join(b.members), str(b.num_pairs),
                  "—" if math.isnan(b.score) else
                  f"{b.score:.3f}{'' if b.separated else NOT_SEPARATED}",
                  "—" if math.isnan(b.low) else f"[{b.low:.3f}, {b.high:.3f}]",
                  "—" if math.isnan(b.null_mean) else f"{b.null_mean:.3f}"] for b in bins]), ""]
  for caption, image in (figures or {}).items():
    lines += [f"![{caption}]({image})", ""]
  return "\n".join(lines)


def write_zoo_report(matrices: Sequence[_alignment.AlignmentMatrix],
                     infos: Sequence[MemberInfo], out_dir, *, title: str = "Alignment across the zoo",
                     attributes: Sequence[str] = ("num_params", "accuracy"),
                     columns: Sequence[str] | None = None, num_bins: int = 3,
                     alpha: float = 0.05, num_resamples: int = 1000,
                     seed: int = 0) -> pathlib.Path:
  """Writes `<out_dir>/report.md` and its PNG figures under `<out_dir>/figures/`.

  One section per metric (`zoo_markdown`) with a heatmap, alignment against
  every attribute that at least two members have, and the competence bins
  of the first attribute when there are enough members. Files are written
  atomically; rerunning overwrites them.

  Args:
    matrices: one `AlignmentMatrix` per metric, over the same members.
    infos: the members' `MemberInfo` (members without one are left out of
      the attribute figures and tables, kept in the heatmaps).
    out_dir: the output folder (created if missing).
    title: the page's heading.
    attributes, columns, num_bins, alpha, num_resamples, seed: as `zoo_markdown`.

  Returns:
    The path of `report.md`.

  Raises:
    ValueError: no matrix, and what `zoo_markdown` raises.
  """
  if not matrices:
    raise ValueError("`matrices` is empty; pass at least one AlignmentMatrix.")
  out_dir = pathlib.Path(out_dir)
  lines = [f"# {title}", "", "## Members", "", members_markdown(infos), ""]
  for matrix in matrices:
    figures = {"heatmap": plot_heatmap(matrix, out_dir / "figures" / f"{matrix.metric}_heatmap.png",
                                       alpha=alpha)}
    present = [i for i in infos if i.name in matrix.members]
    for attribute in attributes:
      if sum(i.value(attribute) is not None for i in present) >= 2:
        figures[f"{matrix.metric} against {_LABELS[attribute]}"] = plot_alignment_vs(
            matrix, present, attribute,
            out_dir / "figures" / f"{matrix.metric}_vs_{attribute}.png", columns=columns,
            alpha=alpha)
    if sum(i.value(attributes[0]) is not None for i in present) >= max(num_bins, 2) * 2:
      figures[f"{matrix.metric} within {_LABELS[attributes[0]]} bins"] = plot_binned(
          binned_alignment(matrix, present, attributes[0], num_bins=num_bins, alpha=alpha),
          out_dir / "figures" / f"{matrix.metric}_bins.png", metric=matrix.metric,
          attribute=attributes[0])
    relative = {caption: path.relative_to(out_dir).as_posix() for caption, path in figures.items()}
    lines += [zoo_markdown(matrix, present, attributes=attributes, columns=columns,
                           num_bins=num_bins, alpha=alpha, num_resamples=num_resamples,
                           seed=seed, figures=relative), ""]
  return _files.write_text_atomic(out_dir / "report.md", "\n".join(lines).rstrip() + "\n")
