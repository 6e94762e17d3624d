"""Benchmark records to a Markdown page: the environment, then one table per benchmark.

The implementation `"ours"` is the reference every other one is compared
with: for the same benchmark, parameters and machine, `x ours = other median
time / ours median time`, so above 1 means ours is faster. Records from
several machines get one part of the page each and are never compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from platonic_jax.bench import _format as fmt
from platonic_jax.bench import _plots
from platonic_jax.bench import _records

Record = _records.Record
REFERENCE = fmt.REFERENCE
FEWER_REPEATS = "†"  # marks a time from fewer timed calls than were asked for
# Fields that should agree within one machine's records (the measured GEMM
# rate wobbles from run to run and is left out).
_ENV_IDENTITY = ("cpu", "jax", "jaxlib", "python", "git_commit")

INTRODUCTION = (
    "Times are medians over the timed repeats, compile time excluded. `x ours` is an "
    "implementation's time divided by ours for the same parameters: above 1 means ours is "
    "faster. `vs GEMM floor` is ours' time over the *computed* GEMM floor: the benchmark's "
    "GEMM work (for mutual kNN two Grams, computed in row tiles with no N x N output) at this "
    "machine's measured GEMM rate; the plots draw it as the dashed line. The `gemm_only` rows "
    "are something else: those GEMMs *measured* as plain products with their full outputs "
    "written, which is slower than the computed floor where writing the output dominates "
    "(small n). Peak memory is the process's peak RSS on CPU (JAX runtime and inputs "
    "included), with the compiled computation's own footprint from XLA's memory analysis "
    "(arguments, outputs and temporaries) beside it as `XLA mem`; on accelerators `peak mem` "
    "is that XLA footprint (temporaries only where older records lack the rest). `~` marks a "
    f"time extrapolated from a timed sample, `{FEWER_REPEATS}` a time from fewer timed calls "
    "than the run asked for (a slow row inside its time budget).")


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
  records = _records.latest_records(records)
  out = [f"# {' '.join(title.split())}", ""]
  if not records:
    return "\n".join(out + ["No benchmark records.", ""])
  out += [INTRODUCTION, ""]
  machines = fmt.group(records, lambda r: _records.machine_key(r.get("env")))
  plot_files = _plots.plot_files(records)
  level = 2 if len(machines) == 1 else 3
  for machine in sorted(machines):
    group = machines[machine]
    if len(machines) > 1:
      out += [f"## {fmt.escape(_records.machine_label(group[0].get('env')))}", ""]
    out += _environment_section(group, level)
    # Older records do not say how many calls were asked for: the most any row got.
    requested = max((r.get("repeats") for r in group
                     if r.get("status") == "ok" and isinstance(r.get("repeats"), int)),
                    default=None)
    by_benchmark = fmt.group(group, lambda r: str(r.get("benchmark", "")))
    by_family = fmt.group(sorted(by_benchmark), lambda name: name.split("/", 1)[0])
    for family in sorted(by_family):
      out += [f"{'#' * level} {fmt.escape(family)}", ""]
      for name in by_family[family]:
        image = None
        if plots_link is not None and (machine, name) in plot_files:
          image = f"{plots_link.rstrip('/')}/{plot_files[machine, name]}" if plots_link else (
              plot_files[machine, name])
        out += _benchmark_section(name, by_benchmark[name], level + 1, image, requested)
  return "\n".join(out).rstrip("\n") + "\n"


def _gemm_rate_lines(records: Sequence[Record], newest: float | None) -> list[str]:
  """The GEMM rate line: every rate the records were measured at, where they differ.

  Each run (each `scripts/bench.py` process, resumed ones included) measures
  the rate when it starts and computes its rows' floors with it, so a page
  made of several runs says which rate the `ours` rows used.
  """
  about = ("the fastest of the runner's square float32 GEMMs; with each benchmark's GEMM work "
           "it gives the computed GEMM floor")
  rates = fmt.group([r for r in records
                     if _records.number((r.get("env") or {}).get("gemm_gflops")) is not None],
                    lambda r: float(r["env"]["gemm_gflops"]))
  if len(rates) <= 1:
    return [] if newest is None else [f"- **GEMM rate:** {fmt.sig3(newest)} GFLOP/s ({about})"]
  parts = []
  for rate in sorted(rates, reverse=True):
    group = rates[rate]
    ours = any(r.get("implementation") == "ours" for r in group)
    parts.append(f"{fmt.sig3(rate)} GFLOP/s ({len(group)} record{'s' * (len(group) != 1)}"
                 + (", `ours` among them" if ours else "") + ")")
  return [f"- **GEMM rate:** {'; '.join(parts)}: measured as each run that wrote them started; "
          f"each row's floor uses its own run's rate ({about})"]


def _environment_section(records: Sequence[Record], level: int) -> list[str]:
  env = fmt.newest(records).get("env") or {}
  lines = [f"{'#' * level} Environment", ""]
  if env.get("device_kind") is not None:
    text = fmt.escape(_records.machine_label(env))
    if env.get("backend") is not None:
      text += f" (backend `{fmt.escape(str(env['backend']))}`)"
    lines.append(f"- **Devices:** {text}")
  versions = [f"{name} {env[name]}" for name in ("jax", "jaxlib") if env.get(name) is not None]
  if versions:
    lines.append(f"- **JAX:** {fmt.escape(', '.join(versions))}")
  if env.get("python") is not None:
    lines.append(f"- **Python:** {fmt.escape(str(env['python']))}")
  if env.get("cpu") is not None:
    cores = f" ({env['cpu_count']} cores)" if env.get("cpu_count") is not None else ""
    lines.append(f"- **CPU:** {fmt.escape(str(env['cpu']) + cores)}")
  lines += _gemm_rate_lines(records, _records.number(env.get("gemm_gflops")))
  if env.get("git_commit") is not None:
    lines.append(f"- **Commit:** `{fmt.escape(str(env['git_commit']))}`")
  statuses = fmt.group(records, lambda r: str(r.get("status", "unknown")))
  counts = ", ".join(f"{len(statuses[s])} {fmt.escape(s)}" for s in sorted(statuses))
  epoch = _records.recorded_at({})
  dates = sorted(_records.recorded_at(r) for r in records if _records.recorded_at(r) != epoch)
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
                 + fmt.escape("; ".join(mixed)) + "); the details above are from the newest.")
  return lines + [""]


def peak_bytes(record) -> float | None:
  """Process peak RSS on CPU; on accelerators the compiled footprint (the allocator's
  own peak spans the whole process, so it cannot be attributed to one row)."""
  if record.get("env", {}).get("backend", "cpu") == "cpu":
    return _records.number(record.get("peak_rss_bytes"))
  return compiled_bytes(record)


def compiled_bytes(record) -> float | None:
  """XLA's memory analysis of the compiled computation (temporaries only in older records)."""
  compiled = _records.number(record.get("device_bytes"))
  return compiled if compiled is not None else _records.number(record.get("temp_bytes"))


def _cpu_compiled_bytes(record) -> float | None:
  if record.get("env", {}).get("backend", "cpu") != "cpu":
    return None
  return compiled_bytes(record)


def _benchmark_section(name: str, records: Sequence[Record], level: int, image: str | None,
                       requested: int | None) -> list[str]:
  varying, constants = fmt.split_params(records)
  by_params = fmt.group(records, lambda r: _records.params_key(r.get("params")))
  rows = [{str(r.get("implementation", "")): r for r in by_params[key]}
          for key in sorted(by_params, key=lambda key: fmt.row_sort_key(by_params[key][0],
                                                                        varying))]
  ours = [r for r in records if r.get("implementation") == REFERENCE]
  notes, fewer, failures = [], [], []

  def param_column(key):
    return key, lambda row: fmt.format_value(
        _records.params_of(next(iter(row.values()))).get(key, fmt.MISSING))

  def time_column(implementation):
    def cell(row):
      record = row.get(implementation)
      if record is None:
        return "-"
      if record.get("status") != "ok":
        text, shortened = fmt.status_text(record)
        if shortened:
          failures.append(f"`{implementation}` at {fmt.row_label(record, varying)}, "
                          f"{record.get('status')}: {fmt.reason(record)}")
        return text
      text = fmt.format_seconds(_records.number(record.get("median_s")))
      extrapolated = fmt.extrapolation(record)
      if extrapolated:
        notes.append(f"`{implementation}` at {fmt.row_label(record, varying)}: timed "
                     f"{extrapolated[0]} of {extrapolated[1]} equal parts and scaled to the "
                     "whole.")
        text = "~" + text
      asked = record.get("requested_repeats", requested)
      timed = record.get("repeats")
      if isinstance(asked, int) and isinstance(timed, int) and timed < asked:
        fewer.append(f"`{implementation}` at {fmt.row_label(record, varying)}: {timed} of "
                     f"{asked}.")
        text += FEWER_REPEATS
      return text
    return f"`{fmt.escape(implementation)}`", cell

  def ratio_column(implementation):
    def cell(row):
      ratio = fmt.ratio(row.get(implementation), row.get(REFERENCE))
      if ratio is None:
        return "-"
      approximate = fmt.extrapolation(row[implementation]) or fmt.extrapolation(row[REFERENCE])
      return ("~" if approximate else "") + f"{fmt.sig3(ratio)}x"
    return "x ours", cell

  def ours_column(header, value, formatter):
    def cell(row):
      record = row.get(REFERENCE)
      number = None if record is None else value(record)
      return "-" if number is None else formatter(number)
    return header, cell

  scores = sorted({key for r in ours for key in (r.get("alignment") or {})})
  indices = [s for s in scores if any(fmt.is_index_array((r.get("alignment") or {}).get(s))
                                      for r in ours)]
  columns = [param_column(key) for key in varying]
  for implementation in fmt.implementations(records):
    columns.append(time_column(implementation))
    if implementation == REFERENCE:
      for header, value, formatter in (
          ("GFLOP/s", _records.gflops_per_s, fmt.sig3),
          ("vs GEMM floor", _records.floor_ratio, lambda v: f"{fmt.sig3(v)}x"),
          ("peak mem", peak_bytes, fmt.format_bytes),
          ("XLA mem", _cpu_compiled_bytes, fmt.format_bytes)):
        if any(value(r) is not None for r in ours):
          columns.append(ours_column(header, value, formatter))
      for score in scores:
        if score not in indices:
          columns.append(ours_column(
              fmt.escape(score), lambda r, score=score: (r.get("alignment") or {}).get(score),
              fmt.format_score))
    elif ours:
      columns.append(ratio_column(implementation))

  table = [[header for header, _ in columns]]
  table += [[cell(row) for _, cell in columns] for row in rows]
  out = [f"{'#' * level} {fmt.escape(name)}", ""]
  if constants:
    out += [", ".join(f"{fmt.escape(key)}={fmt.format_value(value)}" for key, value in constants),
            ""]
  out += markdown_table(table, left=len(varying)) + [""]
  for score in indices:
    for row in rows:
      record = row.get(REFERENCE)
      value = None if record is None else (record.get("alignment") or {}).get(score)
      if fmt.is_index_array(value):
        out += _index_section(score, value, fmt.row_label(record, varying))
  for heading, items in (("`~` extrapolated:", notes),
                         (f"`{FEWER_REPEATS}` timed fewer times than asked (timed calls of "
                          "requested):", fewer),
                         ("Not run or failed:", failures)):
    if items:
      out += [heading, ""] + [f"- {fmt.escape(item, code_ok=True)}" for item in items] + [""]
  if image:
    out += [f"![{fmt.escape(name)}: median time vs n]({image})", ""]
  return out


def _index_section(score: str, value, label: str) -> list[str]:
  """Index arrays of ours (e.g. `best_layers`) below the table; [M, M, 2] as a matrix."""
  heading = f"`{fmt.escape(score)}` of `ours` at {label}"
  square = (len(value) > 0 and all(isinstance(row, list) and len(row) == len(value)
                                   and all(isinstance(p, list) and len(p) == 2 for p in row)
                                   for row in value))
  if not square:
    return [heading + ": " + fmt.format_value(value), ""]
  size = len(value)
  table = [["model"] + [str(j) for j in range(size)]]
  table += [[str(i)] + ["-" if i == j else f"{value[i][j][0]}, {value[i][j][1]}"
                        for j in range(size)] for i in range(size)]
  return [heading + " (the best layer pair of model i and model j, as layer of i, layer of j):",
          ""] + markdown_table(table, left=1) + [""]


def markdown_table(rows: Sequence[Sequence[str]], left: int) -> list[str]:
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
