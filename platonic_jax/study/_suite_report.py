"""The suite's report: the five questions of the study, each with tables, figures and a
rank correlation, built from the alignment records of `run_suite`.

Every table lists the trained members and the baselines (raw inputs, the same
architecture at random init, and the shuffled pairing: the mean of the
permutation nulls); a score whose p-value against its null is >= alpha is
marked `NOT_SEPARATED`. A rank correlation is Spearman's rho over the trained
members with a bootstrap interval over members; its verdict says whether the
interval excludes 0. Built on `platonic_jax.study._report`.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from platonic_jax import _files
from platonic_jax.study import _alignment, _report

_MARK = _report.NOT_SEPARATED
_ATTRIBUTES = ("accuracy", "num_params", "width", "depth")
_LABELS = {"accuracy": "held-out accuracy", "num_params": "parameters", "width": "width",
           "depth": "depth", "steps": "training steps", "tasks": "label tasks"}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _num(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  if isinstance(value, (int, np.integer)):
    return f"{value:,}"
  return f"{value:.{digits}f}"


def _verdict(corr: _report.RankCorrelation | None, what: str) -> str:
  if corr is None or math.isnan(corr.rho):
    return "not enough members"
  if corr.low > 0:
    return f"alignment rises with {what}"
  if corr.high < 0:
    return f"alignment falls with {what}"
  return f"no clear relation with {what} (interval covers 0)"


def _corr(x: Sequence[float | None], y: Sequence[float],
          seed: int) -> _report.RankCorrelation | None:
  x = np.array([np.nan if v is None else float(v) for v in x])
  y = np.asarray(y, np.float64)
  keep = ~(np.isnan(x) | np.isnan(y))
  if keep.sum() < 3 or np.unique(x[keep]).size < 2:
    return None
  return _report.rank_correlation(x, y, num_resamples=1000, seed=seed)


def _corr_cell(corr: _report.RankCorrelation | None) -> list[str]:
  if corr is None:
    return ["—", "—", "—"]
  return [f"{corr.rho:+.2f}", f"[{corr.low:+.2f}, {corr.high:+.2f}]", str(corr.num_members)]


class _Context:
  """Records, member metadata and output paths shared by the sections."""

  def __init__(self, records, infos, comparisons, out_dir: pathlib.Path, metrics, alpha, seed):
    self.records, self.infos, self.out_dir = records, infos, out_dir
    self.comparisons = {c.name: c for c in comparisons}
    self.metrics, self.alpha, self.seed = metrics, alpha, seed
    self.findings: list[str] = []

  def matrix(self, comparison: str, metric: str) -> _alignment.AlignmentMatrix:
    chosen = [r for r in self.records if r.get("comparison") == comparison
              and r["metric"] == metric]
    return _alignment.alignment_matrix(chosen, metric, list(self.comparisons[comparison].members))

  def figure(self, path: pathlib.Path) -> str:
    return path.relative_to(self.out_dir).as_posix()


def _trained(ctx: _Context, comparison: str, modality: str | None = None) -> list[str]:
  return [n for n in ctx.comparisons[comparison].members
          if "@" in n and ctx.infos[n].steps and (modality is None or
                                                  ctx.infos[n].modality == modality)]


def _baselines(ctx: _Context, comparison: str, modality: str | None) -> list[str]:
  return [n for n in ctx.comparisons[comparison].members
          if ("@" not in n or not ctx.infos[n].steps) and ctx.infos[n].family != "latent"
          and (modality is None or ctx.infos[n].modality == modality)]


def _alignment_table(ctx: _Context, matrix, rows: Sequence[str], baselines: Sequence[str],
                     columns: Sequence[str], title: str, question: str,
                     figure_stem: str) -> list[str]:
  """Per-member mean alignment with `columns`, baselines, the null, correlations, bins, figures."""
  lines = [f"#### {matrix.metric}", ""]
  rows = [r for r in rows if [c for c in columns if c != r]]
  baselines = [b for b in baselines if [c for c in columns if c != b]]
  if not rows:
    return lines + ["No member to compare.", ""]
  aligned = _report.member_alignment(matrix, rows=list(rows) + list(baselines), columns=columns,
                                     alpha=ctx.alpha)
  body = []
  for m, name in enumerate(aligned.members):
    info = ctx.infos[name]
    kind = "member" if name in rows else ("random init" if "@" in name else "raw input")
    body.append([name, kind, info.objective or "—", _num(info.width), _num(info.depth),
                 _num(info.num_params), _num(info.accuracy),
                 f"{aligned.score[m]:.3f}{'' if aligned.separated[m] else _MARK}",
                 f"[{aligned.low[m]:.3f}, {aligned.high[m]:.3f}]", f"{aligned.null_mean[m]:.3f}",
                 f"{aligned.num_separated[m]}/{aligned.num_pairs[m]}"])
  count = len(rows)
  body.append(["shuffled pairing (null)", "baseline", "—", "—", "—", "—", "—",
               f"{np.mean(aligned.null_mean[:count]):.3f}", "—", "—", "—"])
  lines += [f"Mean alignment with {title} ({_MARK}: some pair has p >= {ctx.alpha}):", ""]
  lines += _table(["member", "kind", "objective", "width", "depth", "params", "accuracy",
                   "alignment", "interval", "null", "separated"], body)
  corr_rows, corrs = [], {}
  for attribute in _ATTRIBUTES:
    corr = _corr([ctx.infos[r].value(attribute) for r in rows], aligned.score[:count], ctx.seed)
    corrs[attribute] = corr
    corr_rows.append([_LABELS[attribute], *_corr_cell(corr), _verdict(corr, _LABELS[attribute])])
  lines += ["Spearman rank correlation over the members (bootstrap over members):", ""]
  lines += _table(["attribute", "rho", "interval", "members", "reading"], corr_rows)
  trained_mean = float(np.mean(aligned.score[:count]))
  base_text = ", ".join(f"{name} {aligned.score[count + b]:.3f}"
                        for b, name in enumerate(baselines))
  ctx.findings.append(
      f"{question}, {matrix.metric}: members {trained_mean:.3f} (mean), baselines: "
      f"{base_text or 'none'}, shuffled pairing {np.mean(aligned.null_mean[:count]):.3f}; "
      f"{_verdict(corrs['accuracy'], 'accuracy')}"
      + (f" (rho {corrs['accuracy'].rho:+.2f} [{corrs['accuracy'].low:+.2f}, "
         f"{corrs['accuracy'].high:+.2f}])" if corrs["accuracy"] else "")
      + f"; {_verdict(corrs['num_params'], 'parameters')}"
      + (f" (rho {corrs['num_params'].rho:+.2f} [{corrs['num_params'].low:+.2f}, "
         f"{corrs['num_params'].high:+.2f}])" if corrs["num_params"] else "") + ".")
  infos = [ctx.infos[r] for r in rows]
  figures = ctx.out_dir / "figures"
  for attribute in ("accuracy", "num_params"):
    if sum(i.value(attribute) is not None for i in infos) >= 2:
      path = _report.plot_alignment_vs(matrix, infos, attribute,
                                       figures / f"{figure_stem}_{matrix.metric}_{attribute}.png",
                                       columns=columns, alpha=ctx.alpha)
      lines += [f"![{matrix.metric} against {_LABELS[attribute]}]({ctx.figure(path)})", ""]
  same = set(columns) == set(rows)
  valued = [i for i in infos if i.accuracy is not None]
  if same and len(valued) >= 6:
    bins = _report.binned_alignment(matrix, valued, "accuracy", num_bins=3, alpha=ctx.alpha)
    lines += [("Members binned by held-out accuracy, mean alignment within each bin "
              "(the hypothesis' vision-vision figure):"), ""]
    lines += _table(["accuracy bin", "members", "pairs", "alignment", "interval", "null"], [[
        f"{b.low_edge:.3f}–{b.high_edge:.3f}", str(len(b.members)), str(b.num_pairs),
        "—" if math.isnan(b.score) else f"{b.score:.3f}{'' if b.separated else _MARK}",
        "—" if math.isnan(b.low) else f"[{b.low:.3f}, {b.high:.3f}]",
        "—" if math.isnan(b.null_mean) else f"{b.null_mean:.3f}"] for b in bins])
    path = _report.plot_binned(bins, figures / f"{figure_stem}_{matrix.metric}_bins.png",
                               metric=matrix.metric, attribute="accuracy")
    lines += [f"![{matrix.metric} within accuracy bins]({ctx.figure(path)})", ""]
  return lines


def _heatmaps(ctx: _Context, comparison: str) -> list[str]:
  lines = []
  for metric in ctx.metrics:
    path = _report.plot_heatmap(ctx.matrix(comparison, metric),
                                ctx.out_dir / "figures" / f"{comparison}_{metric}_heatmap.png",
                                alpha=ctx.alpha)
    lines += [f"![{metric} heatmap, {comparison}]({ctx.figure(path)})", ""]
  return lines


def _within(ctx: _Context, comparison: str, modality: str, question: str) -> list[str]:
  rows = _trained(ctx, comparison, modality)
  lines = [f"### {question}: {comparison} {modality} members", ""]
  if len(rows) < 2:
    return lines + [f"Fewer than two trained {modality} members of {comparison}.", ""]
  for metric in ctx.metrics:
    lines += _alignment_table(ctx, ctx.matrix(comparison, metric), rows,
                              _baselines(ctx, comparison, modality), rows,
                              f"the other trained {modality} members",
                              f"{question} ({comparison} {modality})",
                              f"{question.split()[0].lower()}_{comparison}_{modality}")
  return lines


def _steps_section(ctx: _Context, dataset: str, question: str) -> list[str]:
  """Base members at every checkpoint: mean alignment among them and with the latent."""
  steps = sorted((c.step, c.name) for c in ctx.comparisons.values()
                 if c.dataset == dataset and c.kind == "steps")
  if not steps:
    return []
  lines = [(f"### {question}: training length ({dataset}, mid-sized members of each family and "
           "their other seeds, at each checkpoint)"), ""]
  for metric in ctx.metrics:
    points: list[tuple[int, str, float, float]] = []  # (step, kind, score, null)
    body = []
    for step, name in steps:
      matrix = ctx.matrix(name, metric)
      at = [n for n in matrix.members if "@" in n]
      index = {n: i for i, n in enumerate(matrix.members)}
      latent = [n for n in matrix.members if ctx.infos[n].family == "latent"]
      kinds: dict[str, list[tuple[float, float]]] = {"same modality": [], "cross-modal": [],
                                                      "with latent": []}
      for x, a in enumerate(at):
        for b in at[x + 1:]:
          kind = ("same modality" if ctx.infos[a].modality == ctx.infos[b].modality
                  else "cross-modal")
          kinds[kind].append((matrix.scores[index[a], index[b]],
                              matrix.null_mean[index[a], index[b]]))
        for l in latent:
          kinds["with latent"].append((matrix.scores[index[a], index[l]],
                                       matrix.null_mean[index[a], index[l]]))
      for kind, values in kinds.items():
        points += [(step, kind, s, n) for s, n in values]
      accuracy = [ctx.infos[n].accuracy for n in at if ctx.infos[n].accuracy is not None]
      body.append([str(step), str(len(at)), _num(float(np.mean(accuracy)) if accuracy else None)]
                  + [(f"{np.mean([s for s, _ in v]):.3f} (null {np.mean([n for _, n in v]):.3f})"
                      if v else "—") for v in kinds.values()])
    lines += [f"#### {metric}", ""]
    lines += _table(["step", "members", "mean accuracy", "same modality", "cross-modal",
                     "with latent"], body)
    corr_rows = []
    for kind in ("same modality", "cross-modal", "with latent"):
      chosen = [(s, v) for s, k, v, _ in points if k == kind]
      corr = _corr([s for s, _ in chosen], [v for _, v in chosen], ctx.seed) if chosen else None
      corr_rows.append([kind, *_corr_cell(corr), _verdict(corr, "training steps")])
      if corr is not None:
        ctx.findings.append(f"{question} training length ({dataset}, {kind}), {metric}: "
                            f"rho {corr.rho:+.2f} [{corr.low:+.2f}, {corr.high:+.2f}]: "
                            f"{_verdict(corr, 'training steps')}.")
    lines += [("Spearman rank correlation of pair scores with training steps (bootstrap over "
              "pairs and steps):"), ""]
    lines += _table(["pairs", "rho", "interval", "points", "reading"], corr_rows)
    path = _plot_steps(points, ctx.out_dir / "figures" / f"steps_{dataset}_{metric}.png", metric)
    lines += [f"![{metric} against training steps]({ctx.figure(path)})", ""]
  return lines


def _plot_steps(points, path, metric: str) -> pathlib.Path:
  fig = _report._figure(5.0, 3.5)  # pylint: disable=protected-access
  ax = fig.add_subplot()
  for number, kind in enumerate(("same modality", "cross-modal", "with latent")):
    chosen = [(s, v, n) for s, k, v, n in points if k == kind]
    if not chosen:
      continue
    steps = sorted({s for s, _, _ in chosen})
    mean = [np.mean([v for s2, v, _ in chosen if s2 == s]) for s in steps]
    null = [np.mean([n for s2, _, n in chosen if s2 == s]) for s in steps]
    ax.scatter([s for s, _, _ in chosen], [v for _, v, _ in chosen], color=f"C{number}",
               alpha=0.4, s=12)
    ax.plot(steps, mean, color=f"C{number}", marker="o", label=kind)
    ax.plot(steps, null, color=f"C{number}", linestyle="--", alpha=0.6)
  ax.set_xlabel("training steps")
  ax.set_ylabel(metric)
  ax.set_title(f"{metric} against training steps (dashed: null)", fontsize=9)
  ax.legend(fontsize=7)
  return _report._save(fig, path)  # pylint: disable=protected-access


def _cross(ctx: _Context, comparison: str, question: str) -> list[str]:
  images, captions = _trained(ctx, comparison, "image"), _trained(ctx, comparison, "caption")
  lines = [f"### {question}: {comparison} caption members against image members", ""]
  if not images or not captions:
    return lines + ["The zoo has no image and caption members of one dataset.", ""]
  for metric in ctx.metrics:
    matrix = ctx.matrix(comparison, metric)
    lines += _alignment_table(ctx, matrix, captions, _baselines(ctx, comparison, "caption"),
                              images, "every trained image member",
                              f"{question} ({comparison} captions vs images)",
                              f"q2_{comparison}_captions")
    lines += _alignment_table(ctx, matrix, images, _baselines(ctx, comparison, "image"),
                              captions, "every trained caption member",
                              f"{question} ({comparison} images vs captions)",
                              f"q2_{comparison}_images")
  return lines


def _latent(ctx: _Context, comparison: str, question: str) -> list[str]:
  latent = [n for n in ctx.comparisons[comparison].members if ctx.infos[n].family == "latent"]
  lines = [f"### {question}: {comparison} members against the true latent", ""]
  if not latent:
    return lines + ["This dataset has no latent.", ""]
  for metric in ctx.metrics:
    lines += _alignment_table(ctx, ctx.matrix(comparison, metric), _trained(ctx, comparison),
                              _baselines(ctx, comparison, None), latent, latent[0],
                              f"{question} ({comparison} vs {latent[0]})",
                              f"q3_{comparison}")
  return lines


def _tasks(info: _report.MemberInfo, targets: Mapping[str, int]) -> int | None:
  if info.objective == "contrastive":
    return 0
  if info.objective == "supervised":
    return 1
  return targets.get(info.name)


def _objectives(ctx: _Context, comparison: str, question: str,
                targets: Mapping[str, int]) -> list[str]:
  members = _trained(ctx, comparison)
  objectives = sorted({ctx.infos[n].objective for n in members})
  lines = [f"### {question}: objectives ({comparison})", ""]
  if len(objectives) < 2:
    return lines + ["Only one objective in this comparison.", ""]
  latent = [n for n in ctx.comparisons[comparison].members if ctx.infos[n].family == "latent"]
  lines += [("Label tasks: contrastive (self-supervised) 0, supervised 1, multi-task one per "
             "attribute. Within modality: mean alignment with the other trained members of its "
             "modality; cross-modal: with the trained members of the other modality."), ""]
  for metric in ctx.metrics:
    matrix = ctx.matrix(comparison, metric)
    measures: dict[str, dict[str, float]] = {}
    for modality in ("image", "caption"):
      rows = [n for n in members if ctx.infos[n].modality == modality]
      others = [n for n in members if ctx.infos[n].modality != modality]
      if len(rows) >= 2:
        aligned = _report.member_alignment(matrix, rows=rows, columns=rows, alpha=ctx.alpha)
        for n, s in zip(rows, aligned.score):
          measures.setdefault("within modality", {})[n] = float(s)
      if rows and others:
        aligned = _report.member_alignment(matrix, rows=rows, columns=others, alpha=ctx.alpha)
        for n, s in zip(rows, aligned.score):
          measures.setdefault("cross-modal", {})[n] = float(s)
    if latent:
      aligned = _report.member_alignment(matrix, rows=members, columns=latent, alpha=ctx.alpha)
      measures["with latent"] = {n: float(s) for n, s in zip(members, aligned.score)}
    body, corr_rows = [], []
    rng = np.random.default_rng(ctx.seed)
    for objective in objectives:
      chosen = [n for n in members if ctx.infos[n].objective == objective]
      cells = []
      for values in measures.values():
        v = np.array([values[n] for n in chosen if n in values])
        if v.size == 0:
          cells.append("—")
          continue
        boot = rng.choice(v, size=(1000, v.size)).mean(axis=1)
        low, high = np.quantile(boot, [0.025, 0.975])
        cells.append(f"{v.mean():.3f} [{low:.3f}, {high:.3f}] (n={v.size})")
      body.append([objective, str(len(chosen))] + cells)
    lines += [f"#### {metric}", ""]
    lines += _table(["objective", "members", *measures], body)
    for kind, values in measures.items():
      names = list(values)
      corr = _corr([_tasks(ctx.infos[n], targets) for n in names], [values[n] for n in names],
                   ctx.seed)
      corr_rows.append([kind, *_corr_cell(corr), _verdict(corr, "the number of label tasks")])
      if corr is not None:
        means = {o: [values[n] for n in names if ctx.infos[n].objective == o]
                 for o in objectives}
        ctx.findings.append(f"{question} ({comparison}, {kind}), {metric}: mean by objective "
                            + ", ".join(f"{o} {np.mean(v):.3f}" for o, v in means.items() if v)
                            + f"; rho with label tasks {corr.rho:+.2f} [{corr.low:+.2f}, "
                            f"{corr.high:+.2f}].")
    lines += ["Spearman rank correlation with the number of label tasks:", ""]
    lines += _table(["alignment", "rho", "interval", "members", "reading"], corr_rows)
    path = _plot_objectives(measures, {n: ctx.infos[n].objective for n in members}, objectives,
                            ctx.out_dir / "figures" / f"q4_{comparison}_{metric}.png", metric)
    lines += [f"![{metric} by objective]({ctx.figure(path)})", ""]
  return lines


def _plot_objectives(measures, objective_of, objectives, path, metric: str) -> pathlib.Path:
  fig = _report._figure(5.5, 3.5)  # pylint: disable=protected-access
  ax = fig.add_subplot()
  width = 0.8 / max(len(objectives), 1)
  for number, objective in enumerate(objectives):
    for x, values in enumerate(measures.values()):
      v = [s for n, s in values.items() if objective_of[n] == objective]
      if not v:
        continue
      position = x + (number - (len(objectives) - 1) / 2) * width
      ax.bar(position, np.mean(v), width=width * 0.9, color=f"C{number}", alpha=0.7,
             label=objective if x == 0 else None)
      ax.scatter([position] * len(v), v, color="black", s=8, zorder=3)
  ax.set_xticks(range(len(measures)), list(measures), fontsize=8)
  ax.set_ylabel(metric)
  ax.set_title(f"{metric} by training objective (dots: members)", fontsize=9)
  ax.legend(fontsize=7)
  return _report._save(fig, path)  # pylint: disable=protected-access


def write_suite_report(records: Sequence[Mapping[str, Any]],
                       infos: Mapping[str, _report.MemberInfo], comparisons: Sequence[Any],
                       out_dir, *, config, summary: Mapping[str, Any],
                       bench_page: pathlib.Path | None = None,
                       targets: Mapping[str, int] | None = None) -> pathlib.Path:
  """Writes `<out_dir>/report.md`, its figures and `<out_dir>/tables/<comparison>.md`.

  Args:
    records: alignment records, each with a `comparison` name.
    infos: feature-set name -> `MemberInfo`.
    comparisons: the suite's `Comparison`s.
    out_dir: the results folder.
    config: the `SuiteConfig` (metrics, alpha, seed, ...).
    summary: N per dataset, stage times and the like, shown in the header.
    bench_page: the kernel-timing page to link.
    targets: member feature-set name -> number of label tasks of multi-task members.

  Returns:
    The path of report.md (written atomically; figures are rewritten).
  """
  out_dir = pathlib.Path(out_dir)
  ctx = _Context(list(records), dict(infos), comparisons, out_dir, list(config.metrics),
                 config.alpha, config.seed)
  targets = dict(targets or {})
  for c in comparisons:
    chosen = [r for r in records if r.get("comparison") == c.name]
    if chosen:
      _files.write_text_atomic(out_dir / "tables" / f"{c.name.replace('@', '_at_')}.md",
                                   _report.alignment_markdown(
                                       chosen, alpha=config.alpha,
                                       title=f"Alignment within comparison {c.name}"))
  datasets = list(dict.fromkeys(c.dataset for c in comparisons))
  within = {d: [c for c in comparisons if c.dataset == d and c.kind == "within"]
            for d in datasets}
  multimodal = [d for d in datasets if len(within[d]) > 1]
  single = [d for d in datasets if d not in multimodal]
  body: list[str] = []
  body += [("## Question 1: within a modality, do more competent and larger members align more "
           "with each other?"), ""]
  for dataset in multimodal:
    for c in within[dataset]:
      body += _heatmaps(ctx, c.name)
      body += _within(ctx, c.name, c.modality, "Q1")
    body += _steps_section(ctx, dataset, "Q1/Q3")
  if not multimodal:
    body += ["The zoo has no dataset with two modalities; see Question 5.", ""]
  body += [("## Question 2: across modalities, does image-caption alignment grow with "
           "competence and size?"), ""]
  for c in comparisons:
    if c.kind == "cross":
      body += _heatmaps(ctx, c.name)
      body += _cross(ctx, c.name, "Q2")
  if not multimodal:
    body += ["The zoo has no dataset with image and caption members.", ""]
  body += [("## Question 3: does alignment with the true latent grow with competence and "
           "scale?"), ""]
  for dataset in datasets:
    for c in within[dataset]:
      if any(ctx.infos[n].family == "latent" for n in c.members):
        body += _latent(ctx, c.name, "Q3")
  body += [("(Training length against the latent: the 'with latent' columns of the training-length "
           "tables under Question 1.)"), ""]
  body += [("## Question 4: does training on more tasks, or a self-supervised objective, change "
           "alignment?"), ""]
  for dataset in datasets:
    for c in within[dataset]:
      body += _objectives(ctx, c.name, "Q4", targets)
  body += ["## Question 5: on real images (digits), the same as Question 1", ""]
  for dataset in single:
    for c in within[dataset]:
      body += _heatmaps(ctx, c.name)
      body += _within(ctx, c.name, c.modality, "Q5")
    body += _steps_section(ctx, dataset, "Q5")
  if not single:
    body += ["The zoo has no single-modality dataset.", ""]
  header = _header(config, summary, records, bench_page, out_dir)
  findings = ["## Findings", "",
              ("Each line: the mean alignment of the trained members, the baselines and the "
               "shuffled pairing, and what the rank correlations say (an interval covering 0 is "
               "no evidence either way). A null result is a result."), ""]
  findings += [f"- {line}" for line in ctx.findings] + [""]
  members = ["## Members", "", _report.members_markdown(
      [infos[n] for n in dict.fromkeys(n for c in comparisons for n in c.members)]), ""]
  text = "\n".join(header + findings + body + members).rstrip() + "\n"
  return _files.write_text_atomic(out_dir / "report.md", text)


def _header(config, summary, records, bench_page, out_dir: pathlib.Path) -> list[str]:
  seconds = summary.get("stage_seconds", {})
  lines = ["# Alignment across the zoo: the suite's report", "",
           (f"Zoo `{config.zoo_spec().name}`; metrics {', '.join(config.metrics)} (k = "
            f"{config.k}); N = " + ", ".join(f"{n} ({d})" for d, n in
                                             summary.get("num_examples", {}).items())
            + f" test samples; {config.num_permutations} permutations per null; "
            f"{config.num_resamples} half-samples per {config.confidence:.0%} interval; seed "
            f"{config.seed}; {len(records)} alignment records."), "",
           ("Every score: the best layer pair (maximum over all layer pairs, biased upward; its "
            "null is the same maximum under shuffled correspondence), features clamped and "
            "L2-normalised as the reference does. Members are compared at their last "
            "checkpoint; baselines are the raw inputs, the same architecture at random init "
            f"(step 0) and the shuffled pairing. {_MARK} marks a score that does not separate "
            f"from its null (p >= {config.alpha}). Fixed-layer (last layer) scores, every pair "
            "and every null are in [tables/](tables/) and `records.jsonl`."), ""]
  if seconds:
    lines += ["Stage times of the run that wrote this page (s): "
              + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ".", ""]
  if bench_page is not None:
    link = pathlib.Path(bench_page).relative_to(out_dir).as_posix()
    lines += [f"Kernel timings: [{bench_page.name}]({link}).", ""]
  return lines
