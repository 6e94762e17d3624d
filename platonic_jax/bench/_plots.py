"""Benchmark records to log-log PNG plots of median time against n (matplotlib, imported on use)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import io
import math
import os
import pathlib
from typing import Any

from platonic_jax import _files
from platonic_jax.bench import _format as fmt
from platonic_jax.bench import _records

MATPLOTLIB_MISSING = "matplotlib is needed for plots: pip install 'platonic_jax[bench]'"
FLOOR_LABEL = "GEMM floor (computed)"
_MAX_XTICKS = 9

PathLike = str | os.PathLike


def render_plots(records: Iterable[Mapping[str, Any]], out_dir: PathLike) -> list[pathlib.Path]:
  """One log-log PNG of median time against n per benchmark.

  A benchmark gets a plot when some implementation has ok rows at two or more
  distinct n. Each implementation is a line with markers (one per combination
  of the benchmark's other varying parameters), ours' `floor_s` is the dashed
  computed GEMM floor, and extrapolated times have open markers.

  Args:
    records: Benchmark records; duplicates are reduced to the newest.
    out_dir: Directory for the PNGs, created if missing. 'knn/mutual' goes to
      'knn_mutual.png' (with the machine appended when the records hold
      several machines).

  Returns:
    The written files, sorted by machine and benchmark.

  Raises:
    ImportError: matplotlib is not installed.
  """
  try:
    # pylint: disable=g-import-not-at-top
    from matplotlib import figure as mpl_figure
    from matplotlib import lines as mpl_lines
    from matplotlib import ticker
    from matplotlib.backends import backend_agg
    # pylint: enable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(MATPLOTLIB_MISSING) from error

  records = _records.latest_records(records)
  out_dir = pathlib.Path(out_dir)
  groups = fmt.group(records, _plot_key)
  params = _records.params_of
  written = []
  for key, file_name in sorted(plot_files(records).items()):
    rows = groups[key]
    name = key[1]
    varying, constants = fmt.split_params(rows)
    others = [k for k in varying if k != "n"]
    plotted = _plotted(rows)
    floors = [r for r in rows if r.get("implementation") == fmt.REFERENCE
              and fmt.positive(r.get("floor_s")) and fmt.positive(params(r).get("n"))]
    variants = sorted({fmt.variant(r, others) for r in plotted + floors},
                      key=fmt.variant_sort_key)
    marker = {v: "os^Dv<>PX"[i % 9] for i, v in enumerate(variants)}

    def series(points, variant):
      return sorted((r for r in points if fmt.variant(r, others) == variant),
                    key=lambda r: params(r)["n"])

    def label(text, variant):
      return text + (f" ({fmt.variant_label(variant)})" if others else "")

    fig = mpl_figure.Figure(figsize=(8.0, 4.4), dpi=150)
    backend_agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles = []
    for index, implementation in enumerate(fmt.implementations(rows)):
      color = f"C{index % 10}"
      for variant in variants:
        points = series([r for r in plotted if r.get("implementation") == implementation],
                        variant)
        if not points:
          continue
        xs = [params(r)["n"] for r in points]
        ys = [float(r["median_s"]) for r in points]
        ours = implementation == fmt.REFERENCE
        (line,) = ax.plot(xs, ys, color=color, marker=marker[variant], markersize=5,
                          linewidth=2.2 if ours else 1.4, zorder=2.5 if ours else 2,
                          label=label(implementation, variant))
        handles.append(line)
        sampled = [(x, y) for x, y, r in zip(xs, ys, points) if fmt.extrapolation(r)]
        if sampled:
          ax.plot(*zip(*sampled), linestyle="none", marker=marker[variant], markersize=5,
                  markerfacecolor="white", markeredgecolor=color, zorder=3)
    for variant in variants:
      points = series(floors, variant)
      if points:
        (line,) = ax.plot([params(r)["n"] for r in points], [float(r["floor_s"]) for r in points],
                          color="0.3", linestyle="--", linewidth=1.2,
                          marker=marker[variant] if others else None, markersize=3,
                          label=label(FLOOR_LABEL, variant))
        handles.append(line)
    if any(fmt.extrapolation(r) for r in plotted):
      handles.append(mpl_lines.Line2D([], [], color="0.4", linestyle="none", marker="o",
                                      markerfacecolor="white", label="open: extrapolated"))

    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({params(r)["n"] for r in plotted + floors})
    ticks = ticks[::math.ceil(len(ticks) / _MAX_XTICKS)]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter(fmt.format_counts(ticks)))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("samples n")
    ax.set_ylabel("median time (s)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="y", alpha=0.12)
    subtitle = " | ".join(part for part in (
        ", ".join(f"{k}={fmt.format_value(v)}" for k, v in constants),
        _records.machine_label(rows[0].get("env"))) if part)
    ax.set_title(name + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    # Beside the axes: inside, the legend would hide lines wherever it went.
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    path = out_dir / file_name
    _files.write_atomic(path, buffer.getvalue())
    written.append(path)
  return written


def _plot_key(record) -> tuple[str, str]:
  return _records.machine_key(record.get("env")), str(record.get("benchmark", ""))


def _plotted(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """The ok rows with a positive time at a positive n."""
  return [r for r in records if r.get("status") == "ok" and fmt.positive(r.get("median_s"))
          and fmt.positive(_records.params_of(r).get("n"))]


def plot_files(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
  """(machine key, benchmark) -> PNG file name, for every benchmark that gets a plot."""
  groups = fmt.group(records, _plot_key)
  several = len({machine for machine, _ in groups}) > 1
  files, taken = {}, set()
  for key in sorted(groups):
    by_impl = fmt.group(_plotted(groups[key]), lambda r: str(r.get("implementation", "")))
    if not any(len({_records.params_of(r)["n"] for r in rows}) >= 2
               for rows in by_impl.values()):
      continue
    stem = fmt.slug(key[1])
    if several:
      stem += "__" + fmt.slug(_records.machine_label(groups[key][0].get("env")))
    name, suffix = f"{stem}.png", 2
    while name in taken:
      name, suffix = f"{stem}_{suffix}.png", suffix + 1
    taken.add(name)
    files[key] = name
  return files
