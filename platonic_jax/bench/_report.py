"""Benchmark records (JSONL) to Markdown tables and PNG plots.

Each record is one measurement: a benchmark (`"knn/mutual"`; its family is
the part before the first `/`), an implementation, its parameters and a
status, plus timings, work and memory figures and the environment it ran in.
The implementation `"ours"` is the reference every other one is compared
with: for the same benchmark, parameters and machine,
`x ours = other median time / ours median time`, so above 1 means ours is
faster.

A machine is the environment's (backend, device_kind, device_count). A
records file that holds several machines (a run resumed on other hardware)
gets one part of the page per machine, and measurements are never compared
across machines.

This module reads the records itself and needs only the standard library;
`render_plots` imports matplotlib when called.

  records = load_records("benchmarks/results/cpu.jsonl")
  page = render_markdown(records, title="platonic_jax on CPU")
  render_plots(records, "benchmarks/results/plots")
  render_report("benchmarks/results/cpu.jsonl", "benchmarks/results/cpu.md",
                plots_dir="benchmarks/results/plots")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import datetime
import io
import json
import math
import os
import pathlib
import re
import secrets
from typing import Any
from platonic_jax.bench._records import load_records

REFERENCE = "ours"
DEFAULT_TITLE = "platonic_jax benchmarks"
MATPLOTLIB_MISSING = "matplotlib is needed for plots: pip install 'platonic_jax[bench]'"

# Environment fields that name the hardware measurements are compared on.
_MACHINE_FIELDS = ("backend", "device_kind", "device_count")
# Fields that should agree within one machine's records (the measured GEMM
# rate wobbles from run to run and is left out).
_ENV_IDENTITY = ("cpu", "jax", "jaxlib", "python", "git_commit")
_REASON_CHARS = 32
_MAX_XTICKS = 9
_MISSING = object()
_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)

Record = dict[str, Any]
PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- reading


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[Record]:
  """One record per (benchmark, implementation, params, machine): the newest.

  Newest is by `recorded_at`; ties (or missing timestamps) go to the record
  that comes later in the input. The result is sorted by machine, benchmark,
  implementation and params, so it does not depend on the input order beyond
  those ties.
  """
  newest = {}
  for index, record in enumerate(records):
    key = (_machine_key(record), str(record.get("benchmark", "")),
           str(record.get("implementation", "")), _params_key(record.get("params")))
    rank = (_recorded_at(record), index)
    if key not in newest or rank >= newest[key][0]:
      newest[key] = (rank, dict(record))
  return [newest[key][1] for key in sorted(newest)]


# ----------------------------------------------------------------------------- Markdown


def render_markdown(records: Iterable[Mapping[str, Any]], *, title: str,
                    plots_link: str | None = None) -> str:
  """A Markdown page: the environment, then one table per benchmark by family.

  Args:
    records: Benchmark records; duplicates are reduced to the newest.
    title: The page title.
    plots_link: If given, the directory `render_plots` wrote to, as a link
      relative to the page (e.g. 'plots'); each benchmark that has a plot
      embeds it under its table.

  Returns:
    GitHub-flavoured Markdown; identical records give identical text.
  """
  records = latest_records(records)
  out = [f"# {' '.join(title.split())}", ""]
  if not records:
    return "\n".join(out + ["No benchmark records.", ""])
  out += [
      "Times are medians over the timed repeats, compile time excluded. `x ours` is an "
      "implementation's time divided by ours for the same parameters: above 1 means ours is "
      "faster. `vs GEMM floor` is ours' time over the time this machine's GEMM rate needs for "
      "the benchmark's reference GEMM work. Peak memory is the process's peak RSS on CPU "
      "(JAX runtime and inputs included); on accelerators it is the compiled computation's "
      "footprint from XLA's memory analysis (arguments, outputs and temporaries; temporaries "
      "only where older records lack the rest). `~` marks a time extrapolated from a timed "
      "sample.",
      "",
  ]
  machines = _group(records, _machine_key)
  plot_files = _plot_files(records)
  level = 2 if len(machines) == 1 else 3
  for machine in sorted(machines):
    group = machines[machine]
    if len(machines) > 1:
      out += [f"## {_escape(_machine_label(group[0]))}", ""]
    out += _environment_section(group, level)
    by_benchmark = _group(group, lambda r: str(r.get("benchmark", "")))
    by_family = _group(sorted(by_benchmark), lambda name: name.split("/", 1)[0])
    for family in sorted(by_family):
      out += [f"{'#' * level} {_escape(family)}", ""]
      for name in by_family[family]:
        image = None
        if plots_link is not None and (machine, name) in plot_files:
          image = f"{plots_link.rstrip('/')}/{plot_files[machine, name]}" if plots_link else (
              plot_files[machine, name])
        out += _benchmark_section(name, by_benchmark[name], level + 1, image)
  return "\n".join(out).rstrip("\n") + "\n"


def _environment_section(records: Sequence[Record], level: int) -> list[str]:
  env = _newest(records).get("env") or {}
  lines = [f"{'#' * level} Environment", ""]
  if env.get("device_kind") is not None:
    text = _escape(_machine_label({"env": env}))
    if env.get("backend") is not None:
      text += f" (backend `{_escape(str(env['backend']))}`)"
    lines.append(f"- **Devices:** {text}")
  versions = [f"{name} {env[name]}" for name in ("jax", "jaxlib") if env.get(name) is not None]
  if versions:
    lines.append(f"- **JAX:** {_escape(', '.join(versions))}")
  if env.get("python") is not None:
    lines.append(f"- **Python:** {_escape(str(env['python']))}")
  if env.get("cpu") is not None:
    cores = f" ({env['cpu_count']} cores)" if env.get("cpu_count") is not None else ""
    lines.append(f"- **CPU:** {_escape(str(env['cpu']) + cores)}")
  gemm = _number(env.get("gemm_gflops"))
  if gemm is not None:
    lines.append(f"- **GEMM rate:** {_sig3(gemm)} GFLOP/s (measured by the runner; sets the "
                 "floor)")
  if env.get("git_commit") is not None:
    lines.append(f"- **Commit:** `{_escape(str(env['git_commit']))}`")
  statuses = _group(records, lambda r: str(r.get("status", "unknown")))
  counts = ", ".join(f"{len(statuses[s])} {_escape(s)}" for s in sorted(statuses))
  dates = sorted(_recorded_at(r) for r in records if _recorded_at(r) != _EPOCH)
  when = ""
  if dates:
    first, last = (d.strftime("%Y-%m-%d %H:%M") for d in (dates[0], dates[-1]))
    when = f"; recorded {first} UTC" if first == last else f"; recorded {first} to {last} UTC"
  lines.append(f"- **Records:** {len(records)} ({counts}){when}")
  mixed = []
  for field in _ENV_IDENTITY:
    values = sorted({str((r.get("env") or {}).get(field)) for r in records
                     if (r.get("env") or {}).get(field) is not None})
    if len(values) > 1:
      mixed.append(f"{field}: {', '.join(values)}")
  if mixed:
    lines.append("- **Warning:** these records come from more than one setup ("
                 + _escape("; ".join(mixed)) + "); the details above are from the newest.")
  return lines + [""]


def _benchmark_section(name: str, records: Sequence[Record], level: int,
                       image: str | None) -> list[str]:
  implementations = _implementations(records)
  varying, constants = _split_params(records)
  by_params = _group(records, lambda r: _params_key(r.get("params")))
  rows = [{str(r.get("implementation", "")): r for r in by_params[key]}
          for key in sorted(by_params, key=lambda key: _row_sort_key(by_params[key][0], varying))]
  ours = [r for r in records if r.get("implementation") == REFERENCE]
  notes, failures = [], []

  def param_column(key):
    return key, lambda row: _format_value(_params(next(iter(row.values()))).get(key, _MISSING))

  def time_column(implementation):
    def cell(row):
      record = row.get(implementation)
      if record is None:
        return "-"
      if record.get("status") != "ok":
        text, shortened = _status_text(record)
        if shortened:
          failures.append(f"`{implementation}` at {_row_label(record, varying)}, "
                          f"{record.get('status')}: {_reason(record)}")
        return text
      text = _format_seconds(_number(record.get("median_s")))
      extrapolated = _extrapolation(record)
      if extrapolated:
        notes.append(f"`{implementation}` at {_row_label(record, varying)}: timed "
                     f"{extrapolated[0]} of {extrapolated[1]} equal parts and scaled to the "
                     "whole.")
        text = "~" + text
      return text
    return f"`{_escape(implementation)}`", cell

  def ratio_column(implementation):
    def cell(row):
      ratio = _ratio(row.get(implementation), row.get(REFERENCE))
      if ratio is None:
        return "-"
      approximate = _extrapolation(row[implementation]) or _extrapolation(row[REFERENCE])
      return ("~" if approximate else "") + f"{_sig3(ratio)}x"
    return "x ours", cell

  def ours_column(header, value, formatter):
    def cell(row):
      record = row.get(REFERENCE)
      number = None if record is None else value(record)
      return "-" if number is None else formatter(number)
    return header, cell

  columns = [param_column(key) for key in varying]
  for implementation in implementations:
    columns.append(time_column(implementation))
    if implementation == REFERENCE:
      for header, value, formatter in (
          ("GFLOP/s", _gflops, _sig3),
          ("vs GEMM floor", _floor_ratio, lambda v: f"{_sig3(v)}x"),
          ("peak mem", _peak_bytes, _format_bytes)):
        if any(value(r) is not None for r in ours):
          columns.append(ours_column(header, value, formatter))
      for score in sorted({key for r in ours for key in (r.get("alignment") or {})}):
        columns.append(ours_column(
            _escape(score), lambda r, score=score: (r.get("alignment") or {}).get(score),
            _format_score))
    elif ours:
      columns.append(ratio_column(implementation))

  table = [[header for header, _ in columns]]
  table += [[cell(row) for _, cell in columns] for row in rows]
  out = [f"{'#' * level} {_escape(name)}", ""]
  if constants:
    out += [", ".join(f"{_escape(key)}={_format_value(value)}" for key, value in constants), ""]
  out += _markdown_table(table, left=len(varying)) + [""]
  for heading, items in (("`~` extrapolated:", notes), ("Not run or failed:", failures)):
    if items:
      out += [heading, ""] + [f"- {_escape(item, code_ok=True)}" for item in items] + [""]
  if image:
    out += [f"![{_escape(name)}: median time vs n]({image})", ""]
  return out


def _markdown_table(rows: Sequence[Sequence[str]], left: int) -> list[str]:
  """A padded GFM table: the first `left` columns left-aligned, the rest right-aligned."""
  widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
  lines = []
  for index, row in enumerate(rows):
    cells = [cell.ljust(width) if i < left or index == 0 else cell.rjust(width)
             for i, (cell, width) in enumerate(zip(row, widths))]
    lines.append("| " + " | ".join(cells) + " |")
    if index == 0:
      rules = ["-" * width if i < left else "-" * (width - 1) + ":"
               for i, width in enumerate(widths)]
      lines.append("| " + " | ".join(rules) + " |")
  return lines


# ----------------------------------------------------------------------------- plots


def render_plots(records: Iterable[Mapping[str, Any]], out_dir: PathLike) -> list[pathlib.Path]:
  """One log-log PNG of median time against n per benchmark.

  A benchmark gets a plot when some implementation has ok rows at two or more
  distinct n. Each implementation is a line with markers (one per combination
  of the benchmark's other varying parameters), ours' `floor_s` is the dashed
  GEMM floor, and extrapolated times have open markers.

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

  records = latest_records(records)
  out_dir = pathlib.Path(out_dir)
  groups = _group(records, lambda r: (_machine_key(r), str(r.get("benchmark", ""))))
  written = []
  for key, file_name in sorted(_plot_files(records).items()):
    rows = groups[key]
    name = key[1]
    implementations = _implementations(rows)
    varying, constants = _split_params(rows)
    others = [k for k in varying if k != "n"]
    plotted = _plotted(rows)
    floors = [r for r in rows if r.get("implementation") == REFERENCE
              and _positive(r.get("floor_s")) and _positive(_params(r).get("n"))]
    variants = sorted({_variant(r, others) for r in plotted + floors}, key=_variant_sort_key)
    marker = {v: "os^Dv<>PX"[i % 9] for i, v in enumerate(variants)}

    def series(points, variant):
      return sorted((r for r in points if _variant(r, others) == variant),
                    key=lambda r: _params(r)["n"])

    def label(text, variant):
      return text + (f" ({_variant_label(variant)})" if others else "")

    fig = mpl_figure.Figure(figsize=(8.0, 4.4), dpi=150)
    backend_agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles = []
    for index, implementation in enumerate(implementations):
      color = f"C{index % 10}"
      for variant in variants:
        points = series([r for r in plotted if r.get("implementation") == implementation],
                        variant)
        if not points:
          continue
        xs = [_params(r)["n"] for r in points]
        ys = [float(r["median_s"]) for r in points]
        ours = implementation == REFERENCE
        (line,) = ax.plot(xs, ys, color=color, marker=marker[variant], markersize=5,
                          linewidth=2.2 if ours else 1.4, zorder=2.5 if ours else 2,
                          label=label(implementation, variant))
        handles.append(line)
        sampled = [(x, y) for x, y, r in zip(xs, ys, points) if _extrapolation(r)]
        if sampled:
          ax.plot(*zip(*sampled), linestyle="none", marker=marker[variant], markersize=5,
                  markerfacecolor="white", markeredgecolor=color, zorder=3)
    for variant in variants:
      points = series(floors, variant)
      if points:
        (line,) = ax.plot([_params(r)["n"] for r in points], [float(r["floor_s"]) for r in points],
                          color="0.3", linestyle="--", linewidth=1.2,
                          marker=marker[variant] if others else None, markersize=3,
                          label=label("GEMM floor", variant))
        handles.append(line)
    if any(_extrapolation(r) for r in plotted):
      handles.append(mpl_lines.Line2D([], [], color="0.4", linestyle="none", marker="o",
                                      markerfacecolor="white", label="open: extrapolated"))

    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({_params(r)["n"] for r in plotted + floors})
    ticks = ticks[::math.ceil(len(ticks) / _MAX_XTICKS)]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter(_format_counts(ticks)))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("samples n")
    ax.set_ylabel("median time (s)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="y", alpha=0.12)
    subtitle = " | ".join(part for part in (
        ", ".join(f"{k}={_format_value(v)}" for k, v in constants),
        _machine_label(rows[0])) if part)
    ax.set_title(name + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    # Beside the axes: inside, the legend would hide lines wherever it went.
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    path = out_dir / file_name
    _write_atomic(path, buffer.getvalue())
    written.append(path)
  return written


def _plotted(records: Sequence[Record]) -> list[Record]:
  """The ok rows with a positive time at a positive n."""
  return [r for r in records if r.get("status") == "ok" and _positive(r.get("median_s"))
          and _positive(_params(r).get("n"))]


def _plot_files(records: Sequence[Record]) -> dict[tuple[str, str], str]:
  """(machine, benchmark) -> PNG file name, for every benchmark that gets a plot."""
  groups = _group(records, lambda r: (_machine_key(r), str(r.get("benchmark", ""))))
  several = len({machine for machine, _ in groups}) > 1
  files, taken = {}, set()
  for key in sorted(groups):
    by_impl = _group(_plotted(groups[key]), lambda r: str(r.get("implementation", "")))
    if not any(len({_params(r)["n"] for r in rows}) >= 2 for rows in by_impl.values()):
      continue
    stem = _slug(key[1])
    if several:
      stem += "__" + _slug(_machine_label(groups[key][0]))
    name, suffix = f"{stem}.png", 2
    while name in taken:
      name, suffix = f"{stem}_{suffix}.png", suffix + 1
    taken.add(name)
    files[key] = name
  return files


# ----------------------------------------------------------------------------- report


def render_report(records_path: PathLike, markdown_path: PathLike,
                  plots_dir: PathLike | None = None, title: str = DEFAULT_TITLE
                  ) -> list[pathlib.Path]:
  """Reads the records and writes the Markdown page (and plots), each file atomically.

  Args:
    records_path: The JSONL records file.
    markdown_path: Where the page goes; its directory is created if missing.
    plots_dir: If given, PNG plots are written there and embedded in the page
      through links relative to the page.
    title: The page title.

  Returns:
    The written files: the Markdown page, then the plots.
  """
  records = load_records(records_path)
  markdown_path = pathlib.Path(markdown_path)
  plots, link = [], None
  if plots_dir is not None:
    plots = render_plots(records, plots_dir)
    link = pathlib.Path(os.path.relpath(pathlib.Path(plots_dir).resolve(),
                                        markdown_path.resolve().parent)).as_posix()
    link = "" if link == "." else link
  page = render_markdown(records, title=title, plots_link=link)
  _write_atomic(markdown_path, page.encode("utf-8"))
  return [markdown_path, *plots]


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to a temporary file beside `path`, then renames it over `path`.

  The temporary file is created with mode 0o666 less the umask, as `open`
  would create `path` itself (`tempfile.mkstemp` would leave it 0o600).
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    try:
      os.unlink(temp)
    except FileNotFoundError:
      pass
    raise


# ----------------------------------------------------------------------------- helpers


def _machine_key(record: Mapping[str, Any]) -> str:
  env = record.get("env") or {}
  return json.dumps([str(env.get(field, "")) for field in _MACHINE_FIELDS])


def _machine_label(record: Mapping[str, Any]) -> str:
  """'1 x cpu', '8 x NVIDIA H100 80GB HBM3', ..."""
  env = record.get("env") or {}
  kind = env.get("device_kind") or env.get("backend")
  if kind is None:
    return "unknown machine"
  count = env.get("device_count")
  return f"{count} x {kind}" if count is not None else str(kind)


def _newest(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
  return max(enumerate(records), key=lambda item: (_recorded_at(item[1]), item[0]))[1]


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "benchmark"


def _group(items, key) -> dict:
  groups = {}
  for item in items:
    groups.setdefault(key(item), []).append(item)
  return groups


def _params(record: Mapping[str, Any]) -> dict:
  params = record.get("params")
  return params if isinstance(params, dict) else {}


def _params_key(params) -> str:
  return json.dumps(params if params is not None else {}, sort_keys=True, default=str)


def _recorded_at(record: Mapping[str, Any]) -> datetime.datetime:
  value = record.get("recorded_at")
  if not isinstance(value, str):
    return _EPOCH
  try:
    stamp = datetime.datetime.fromisoformat(value.strip())
  except ValueError:
    return _EPOCH
  if stamp.tzinfo is None:
    stamp = stamp.replace(tzinfo=datetime.timezone.utc)
  return stamp.astimezone(datetime.timezone.utc)


def _implementations(records: Iterable[Mapping[str, Any]]) -> list[str]:
  """Ours first, then the others alphabetically."""
  names = {str(r.get("implementation", "")) for r in records}
  return sorted(names, key=lambda name: (name != REFERENCE, name))


def _split_params(records: Sequence[Mapping[str, Any]]):
  """(varying keys with 'n' first, [(key, value)] of the constant ones)."""
  keys = sorted({key for r in records for key in _params(r)})
  varying, constants = [], []
  for key in keys:
    values = {_params_key(_params(r).get(key, "\0missing")) for r in records}
    if key == "n" or len(values) > 1:
      varying.append(key)
    else:
      constants.append((key, _params(records[0])[key]))
  varying.sort(key=lambda key: (key != "n", key))
  return varying, constants


def _sort_value(value):
  if value is _MISSING or value is None:
    return (0, 0, "")
  if isinstance(value, bool):
    return (1, int(value), "")
  if isinstance(value, (int, float)):
    return (2, value, "") if math.isfinite(value) else (2, math.inf, str(value))
  if isinstance(value, str):
    return (3, 0, value)
  return (4, 0, json.dumps(value, sort_keys=True, default=str))


def _row_sort_key(record, varying):
  return tuple(_sort_value(_params(record).get(key, _MISSING)) for key in varying)


def _variant(record, keys) -> str:
  """The values of `keys` in a record's params (absent keys left out), as a sortable key."""
  params = _params(record)
  return _params_key({key: params[key] for key in keys if key in params})


def _variant_sort_key(variant: str):
  return tuple((key, _sort_value(value)) for key, value in json.loads(variant).items())


def _variant_label(variant: str) -> str:
  return ", ".join(f"{key}={_format_value(value)}" for key, value in json.loads(variant).items())


def _row_label(record, varying) -> str:
  return ", ".join(f"{key}={_format_value(_params(record).get(key, _MISSING))}"
                   for key in varying)


def _number(value) -> float | None:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value) if math.isfinite(value) else None


def _positive(value) -> bool:
  number = _number(value)
  return number is not None and number > 0


def _extrapolation(record) -> tuple[Any, Any] | None:
  if record is None:
    return None
  info = record.get("extrapolated_from")
  if not info:
    return None
  if isinstance(info, dict):
    return info.get("measured", "?"), info.get("total", "?")
  return "?", "?"


def _ratio(other, ours) -> float | None:
  if other is None or ours is None:
    return None
  if other.get("status") != "ok" or ours.get("status") != "ok":
    return None
  a, b = _number(other.get("median_s")), _number(ours.get("median_s"))
  if a is None or b is None or b <= 0:
    return None
  return a / b


def _gflops(record) -> float | None:
  if record.get("status") != "ok":
    return None
  flops, median = _number(record.get("flops")), _number(record.get("median_s"))
  if flops is not None and median:
    return flops / median / 1e9
  return _number(record.get("gflops_per_s"))


def _floor_ratio(record) -> float | None:
  if record.get("status") != "ok":
    return None
  floor, median = _number(record.get("floor_s")), _number(record.get("median_s"))
  if floor and median is not None:
    return median / floor
  return _number(record.get("floor_ratio"))


def _peak_bytes(record) -> float | None:
  """Process peak RSS on CPU; on accelerators the compiled footprint (the allocator's
  own peak spans the whole process, so it cannot be attributed to one row)."""
  if record.get("env", {}).get("backend", "cpu") == "cpu":
    return _number(record.get("peak_rss_bytes"))
  compiled = _number(record.get("device_bytes"))
  return compiled if compiled is not None else _number(record.get("temp_bytes"))


def _reason(record) -> str:
  """The first line of a record's reason, whitespace collapsed ('' if none)."""
  lines = str(record.get("reason") or "").strip().splitlines()
  return " ".join(lines[0].split()) if lines else ""


def _status_text(record) -> tuple[str, bool]:
  """('skipped: over time budget', whether the reason was shortened) for a table cell.

  The reason is cut at its first clause ('over time budget: estimated 400 s'
  -> 'over time budget'), then to `_REASON_CHARS` characters.
  """
  status = str(record.get("status") or "unknown")
  reason = _reason(record)
  short = re.split(r": |; | \(|, ", reason, maxsplit=1)[0].strip()
  if len(short) > _REASON_CHARS:
    short = short[:_REASON_CHARS - 1].rstrip() + "…"
  return _escape(f"{status}: {short}" if short else status), short != reason


def _format_score(value) -> str:
  """0.4123; several scores (arrays) as a short list or their mean."""
  if isinstance(value, (list, tuple)):
    flat, stack = [], [value]
    while stack:
      item = stack.pop()
      if isinstance(item, (list, tuple)):
        stack.extend(reversed(item))
      else:
        flat.append(item)
    numbers = [_number(v) for v in flat]
    finite = [v for v in numbers if v is not None]
    if not finite:
      return "-"
    if len(numbers) <= 3:
      return ", ".join("-" if v is None else f"{v:.4f}" for v in numbers)
    return f"mean {sum(finite) / len(finite):.4f} of {len(finite)}"
  number = _number(value)
  return "-" if number is None else f"{number:.4f}"


def _sig3(x: float) -> str:
  """Three significant figures, never scientific: 0.0123, 1.23, 12.3, 123, 12300."""
  if x == 0:
    return "0"
  digits = 2 - math.floor(math.log10(abs(x)))
  rounded = round(x, digits)
  if rounded:
    digits = 2 - math.floor(math.log10(abs(rounded)))
  return f"{round(x, digits):.{max(digits, 0)}f}"


def _format_seconds(seconds: float | None) -> str:
  if seconds is None or seconds < 0:
    return "-"
  if seconds < 1e-3:
    return f"{_sig3(seconds * 1e6)} µs"
  if seconds < 1:
    return f"{_sig3(seconds * 1e3)} ms"
  if seconds < 120:
    return f"{_sig3(seconds)} s"
  if seconds < 7200:
    return f"{_sig3(seconds / 60)} min"
  return f"{_sig3(seconds / 3600)} h"


def _format_bytes(size: float) -> str:
  if size < 2**20:
    return f"{_sig3(size / 2**10)} KiB"
  if size < 2**30:
    return f"{_sig3(size / 2**20)} MiB"
  return f"{_sig3(size / 2**30)} GiB"


def _format_counts(counts: Sequence[Any]) -> list[str]:
  """Axis labels for n: '$2^{14}$' when every n is a power of two, else '16,000'."""
  counts = [int(n) for n in counts]
  if all(n >= 2 and n & (n - 1) == 0 for n in counts):
    return [f"$2^{{{n.bit_length() - 1}}}$" for n in counts]
  return [f"{n:,}" for n in counts]


def _format_value(value) -> str:
  if value is _MISSING or value is None:
    return "-"
  if isinstance(value, str):
    return _escape(value)
  if isinstance(value, (bool, int, float)):
    return json.dumps(value)
  return _escape(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")))


def _escape(text: str, code_ok: bool = False) -> str:
  """Keeps free text from breaking a table row (pipes, newlines) or turning into markup."""
  text = " ".join(str(text).split())
  text = text.replace("|", r"\|")
  return text if code_ok else text.replace("`", "'")
