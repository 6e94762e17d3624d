"""Runs registered benchmarks side by side and records every measurement."""

from __future__ import annotations

import math
import statistics
import sys
import time
import traceback
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from platonic_jax.bench import _records, _timing
from platonic_jax.bench._registry import Benchmark, Implementation

_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM")


class Progress:
  """A one-line progress bar on stderr (a line per step when not a terminal)."""

  def __init__(self, total: int, stream=sys.stderr, width: int = 24):
    self.total, self.done, self.stream, self.width = total, 0, stream, width
    self.tty = hasattr(stream, "isatty") and stream.isatty()

  def step(self, label: str, outcome: str) -> None:
    self.done += 1
    filled = int(self.width * self.done / max(self.total, 1))
    bar = "#" * filled + "." * (self.width - filled)
    text = f"[{bar}] {self.done}/{self.total} {label}: {outcome}"
    if self.tty:
      self.stream.write("\r\x1b[2K" + text + ("\n" if self.done == self.total else ""))
    else:
      self.stream.write(text + "\n")
    self.stream.flush()


def _input_bytes(inputs) -> int:
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(inputs)
             if hasattr(x, "shape"))


def _gib(n: float) -> str:
  return f"{n / 2**30:.1f} GiB"


def _is_oom(error: BaseException) -> bool:
  return isinstance(error, MemoryError) or any(m in str(error) for m in _OOM_MARKERS)


def _measure(impl: Implementation, params, inputs, *, repeats: int, time_budget: float):
  """Compiles (if jitted), warms up and times one implementation. Returns fields + output."""
  fields: dict[str, Any] = {}
  fn = impl.build(params)
  _timing.reset_peak_rss()
  before = _timing.device_memory()
  peak_before = (before or {}).get("peak_bytes_in_use", 0)
  if impl.jit:
    fn, fields["compile_s"], memory = _timing.compile_jitted(fn, inputs)
    fields.update(memory)
  else:
    fields.update(compile_s=None, temp_bytes=None, device_bytes=None)
  start = time.perf_counter()
  output = jax.block_until_ready(fn(*inputs))
  first = time.perf_counter() - start
  if first * 2 > time_budget:
    # Too slow to repeat inside the budget: the warm-up run is the one sample.
    times = [first]
  else:
    count = max(1, min(repeats, int(time_budget // max(first, 1e-9)) - 1))
    times = _timing.timed_calls(fn, inputs, repeats=count, warmup=0)
  fields["peak_rss_bytes"] = _timing.peak_rss_bytes()
  memory = _timing.device_memory()
  # The allocator's peak cannot be reset: keep it only when this row raised it.
  peak = None if memory is None else memory.get("peak_bytes_in_use")
  fields["device_peak_bytes"] = peak if peak is not None and peak > peak_before else None
  if impl.sample is not None:
    measured, total = impl.sample(params)
    times = [t * total / measured for t in times]
    fields["extrapolated_from"] = {"measured": measured, "total": total}
  fields.update(times_s=times, repeats=len(times), median_s=statistics.median(times),
                min_s=min(times), max_s=max(times))
  return fields, output


def _skip_reason(impl: Implementation, params, inputs, gemm_gflops: float, time_budget: float):
  """(status, reason) when the row must not run, else None."""
  reason = impl.unavailable(params)
  if reason:
    return "skipped", reason
  needed = impl.memory_bytes(params)
  available = _timing.available_memory_bytes()
  if needed > 0.85 * available:
    return "oom", (f"needs ~{_gib(needed)} beyond its inputs; {_gib(available)} available "
                   f"(not run)")
  if impl.work_flops is not None:
    work = impl.work_flops(params)
    if impl.sample is not None:
      measured, total = impl.sample(params)
      work *= measured / total
    estimate = work / (gemm_gflops * 1e9)
    if estimate > time_budget:
      return "skipped", (f"over time budget: estimated {estimate:.0f} s at the GEMM rate > "
                         f"{time_budget:.0f} s")
  return None


def plan(benchmarks: Sequence[Benchmark], preset: str) -> list[tuple[Benchmark, Mapping]]:
  rows = []
  for b in benchmarks:
    if preset not in b.sizes:
      raise ValueError(f"benchmark {b.name!r} has no size preset {preset!r}; it has "
                       f"{sorted(b.sizes)}.")
    rows.extend((b, p) for p in b.sizes[preset])
  return rows


def run_benchmarks(
    benchmarks: Sequence[Benchmark],
    *,
    preset: str,
    output,
    repeats: int = 3,
    time_budget: float = 120.0,
    resume: bool = False,
    implementations: Sequence[str] | None = None,
    gemm_gflops: float | None = None,
    stream=sys.stderr,
) -> dict[str, int]:
  """Runs every (benchmark, params, implementation) row and appends a record for each.

  Args:
    benchmarks: what to run (see `select_benchmarks`).
    preset: size preset name, e.g. 'small'.
    output: JSONL path. Must not exist unless `resume` is set.
    repeats: timed calls per row after the warm-up (fewer when over budget).
    time_budget: seconds one row may take; rows estimated to exceed it are
      recorded as skipped, slow ones are timed once.
    resume: skip rows already recorded in `output` (same machine kind).
    implementations: only these implementation names (None: all).
    gemm_gflops: the machine's GEMM rate; measured now when None.
    stream: where progress goes.

  Returns:
    Counts of rows by outcome: {'ok': .., 'skipped': .., 'oom': .., 'error': .., 'resumed': ..}.
  """
  rows = plan(benchmarks, preset)
  existing = _records.load_records(output)
  if existing and not resume:
    raise FileExistsError(f"{output} already holds {len(existing)} records; pass resume=True "
                          f"(--resume) to continue it, or choose another output.")
  writer = _records.RecordWriter(output)
  rate = gemm_gflops or _timing.gemm_gflops()
  env = _records.environment(rate)
  done = _records.existing_keys(existing)
  counts = {"ok": 0, "skipped": 0, "oom": 0, "error": 0, "resumed": 0}
  chosen = lambda b: [i for i in b.implementations
                      if implementations is None or i.name in implementations]
  progress = Progress(sum(len(chosen(b)) for b, _ in rows), stream)
  for benchmark, params in rows:
    impls = chosen(benchmark)
    pending = [i for i in impls if _records.record_key(benchmark.name, i.name, params, env)
               not in done]
    for _ in range(len(impls) - len(pending)):
      counts["resumed"] += 1
      progress.step(f"{benchmark.name} {dict(params)}", "already recorded")
    if not pending:
      continue
    inputs = jax.block_until_ready(benchmark.setup(params))
    floor_flops = benchmark.floor_flops(params) if benchmark.floor_flops else None
    flops = benchmark.model_flops(params)
    for impl in pending:
      record: dict[str, Any] = {
          "benchmark": benchmark.name, "implementation": impl.name, "params": dict(params),
          "flops": flops, "floor_s": None if floor_flops is None else floor_flops / (rate * 1e9),
          "env": env, "alignment": None, "extrapolated_from": None,
      }
      skip = _skip_reason(impl, params, inputs, rate, time_budget)
      if skip:
        record["status"], record["reason"] = skip
      else:
        try:
          fields, output_value = _measure(impl, params, inputs, repeats=repeats,
                                          time_budget=time_budget)
          record.update(fields, status="ok")
          if benchmark.alignment is not None:
            record["alignment"] = {k: _plain(v) for k, v in
                                   benchmark.alignment(output_value, params).items()}
          del output_value
        except Exception as error:  # noqa: BLE001 - every failure becomes a record
          record["status"] = "oom" if _is_oom(error) else "error"
          record["reason"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
          if record["status"] == "error":
            record["traceback"] = traceback.format_exc(limit=6)[-2000:]
      if record["status"] == "ok":
        median = record["median_s"]
        record["gflops_per_s"] = None if flops is None else flops / median / 1e9
        record["floor_ratio"] = None if record["floor_s"] is None else median / record["floor_s"]
      record["recorded_at"] = _records.now()
      writer.write(record)
      counts[record["status"]] += 1
      outcome = (f"{record['median_s']:.3g} s" if record["status"] == "ok"
                 else f"{record['status']}: {record['reason']}")
      progress.step(f"{benchmark.name} {impl.name} {dict(params)}", outcome)
    del inputs
  return counts


def _plain(value):
  """JSON-ready copy of a score (arrays become nested lists, NaN becomes None)."""
  value = np.asarray(value)
  if value.ndim == 0:
    v = float(value)
    return None if math.isnan(v) else v
  return value.tolist()
