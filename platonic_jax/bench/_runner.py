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


def format_duration(seconds: float) -> str:
  """'42 s', '7 min 30 s', '2 h 05 min'."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60:02d} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
  """A one-line progress bar on stderr (a line per step when not a terminal).

  Each line ends with the elapsed time and an ETA for the rows left: the
  mean time of the rows measured so far (resumed rows cost nothing) times the
  rows still to measure.
  """

  def __init__(self, total: int, stream=sys.stderr, width: int = 24, clock=time.monotonic):
    self.total, self.done, self.stream, self.width = total, 0, stream, width
    self.tty = hasattr(stream, "isatty") and stream.isatty()
    self.clock, self.start, self.measured = clock, clock(), 0

  def step(self, label: str, outcome: str, *, measured: bool = True) -> None:
    self.done += 1
    self.measured += measured
    filled = int(self.width * self.done / max(self.total, 1))
    bar = "#" * filled + "." * (self.width - filled)
    elapsed = self.clock() - self.start
    timing = f"elapsed {format_duration(elapsed)}"
    if self.measured and self.done < self.total:
      timing += f", ETA {format_duration(elapsed / self.measured * (self.total - self.done))}"
    text = f"[{bar}] {self.done}/{self.total} {label}: {outcome} ({timing})"
    if self.tty:
      self.stream.write("\r\x1b[2K" + text + ("\n" if self.done == self.total else ""))
    else:
      self.stream.write(text + "\n")
    self.stream.flush()


def _gib(n: float) -> str:
  return f"{n / 2**30:.1f} GiB"


def _is_oom(error: BaseException) -> bool:
  return isinstance(error, MemoryError) or any(m in str(error) for m in _OOM_MARKERS)


def _calls_within_budget(call: float, time_budget: float) -> int:
  """Timed calls of `call` seconds that fit in `time_budget` beside a warm-up call (at least 1)."""
  return max(1, int(time_budget // max(call, 1e-9)) - 1)


def timed_call_count(call: float, *, repeats: int, min_time: float, time_budget: float) -> int:
  """How many calls `_measure` times when every call takes `call` seconds (the estimate).

  At least `repeats`, more where that many would take under `min_time`
  seconds (a median over 5 calls of 10 ms moves with every hiccup of a
  shared host), never more than fit in `time_budget` beside the warm-up.
  `_measure` applies the same rule to the measured times.
  """
  wanted = max(repeats, math.ceil(min_time / max(call, 1e-9)))
  return min(wanted, _calls_within_budget(call, time_budget))


def _measure(impl: Implementation, params, inputs, *, repeats: int, min_time: float,
             time_budget: float):
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
    cap = _calls_within_budget(first, time_budget)
    times = _timing.timed_calls(fn, inputs, repeats=min(repeats, cap), warmup=0,
                                min_time=min_time, max_time=time_budget - first)
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


def call_seconds(impl: Implementation, params, gemm_gflops: float) -> float | None:
  """One call's time at the GEMM rate from the work model (sampled part only); None without one."""
  if impl.work_flops is None:
    return None
  work = impl.work_flops(params)
  if impl.sample is not None:
    measured, total = impl.sample(params)
    work *= measured / total
  return work / (gemm_gflops * 1e9)


def row_seconds(impl: Implementation, params, gemm_gflops: float, *, repeats: int,
                time_budget: float, min_time: float = 0.0) -> float | None:
  """Estimated wall time of a row as `_measure` runs it: warm-up plus timed calls.

  0 for rows that will be skipped as over budget; None without a work model.
  Compilation and input set-up are not included.
  """
  call = call_seconds(impl, params, gemm_gflops)
  if call is None:
    return None
  if call > time_budget:
    return 0.0
  if call * 2 > time_budget:
    return call
  return call * (1 + timed_call_count(call, repeats=repeats, min_time=min_time,
                                      time_budget=time_budget))


def _skip_reason(impl: Implementation, params, gemm_gflops: float, time_budget: float):
  """(status, reason) when the row must not run, else None."""
  reason = impl.unavailable(params)
  if reason:
    return "skipped", reason
  needed = impl.memory_bytes(params)
  available = _timing.available_memory_bytes()
  if needed > 0.85 * available:
    return "oom", (f"needs ~{_gib(needed)} beyond its inputs; {_gib(available)} available "
                   f"(not run)")
  estimate = call_seconds(impl, params, gemm_gflops)
  if estimate is not None and estimate > time_budget:
    return "skipped", (f"over time budget: estimated {estimate:.0f} s at the GEMM rate > "
                       f"{time_budget:.0f} s")
  return None


def plan(benchmarks: Sequence[Benchmark], preset: str,
         devices: int | None = None) -> list[tuple[Benchmark, Mapping]]:
  """The (benchmark, params) rows of `preset`, with `devices` set where a row has it.

  Raises:
    ValueError: a benchmark lacks the preset, or `devices` is more than the
      machine has or no selected benchmark takes a `devices` parameter.
  """
  if devices is not None and devices > jax.device_count():
    raise ValueError(
        f"devices={devices} but {jax.device_count()} {jax.default_backend()} devices are "
        "present (on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N).")
  rows = []
  for b in benchmarks:
    if preset not in b.sizes:
      raise ValueError(f"benchmark {b.name!r} has no size preset {preset!r}; it has "
                       f"{sorted(b.sizes)}.")
    for params in b.sizes[preset]:
      if devices is None:
        rows.append((b, params))
      elif "devices" in params:
        rows.append((b, {**params, "devices": devices}))
  if devices is not None and not rows:
    raise ValueError(f"devices={devices}: none of {[b.name for b in benchmarks]} takes a "
                     "`devices` parameter.")
  return rows


def run_benchmarks(
    benchmarks: Sequence[Benchmark],
    *,
    preset: str,
    output,
    repeats: int = 3,
    min_time: float = 0.0,
    time_budget: float = 120.0,
    resume: bool = False,
    implementations: Sequence[str] | None = None,
    gemm_gflops: float | None = None,
    devices: int | None = None,
    stream=sys.stderr,
) -> dict[str, int]:
  """Runs every (benchmark, params, implementation) row and appends a record for each.

  Before the first row it prints the row count and an estimate of the total
  time (the implementations' work models at the measured GEMM rate, as the
  rows will be timed; compilation and set-up not included).

  Args:
    benchmarks: what to run (see `select_benchmarks`).
    preset: size preset name, e.g. 'small'.
    output: JSONL path. Must not exist unless `resume` is set.
    repeats: timed calls per row after the warm-up (fewer when over budget).
    min_time: seconds of timed calls per row at least: fast rows get more
      than `repeats` calls (within `time_budget`), so that their medians
      do not rest on a few calls of a few milliseconds.
    time_budget: seconds one row may take; rows estimated to exceed it are
      recorded as skipped, slow ones are timed once.
    resume: skip rows already recorded in `output` (same machine).
    implementations: only these implementation names (None: all); each must
      belong to some selected benchmark.
    gemm_gflops: the machine's GEMM rate; measured now when None.
    devices: shard over this many devices: rows with a `devices` parameter
      get this value, the others are left out (None: the presets' values).
    stream: where progress goes.

  Returns:
    Counts of rows by outcome: {'ok': .., 'skipped': .., 'oom': .., 'error': .., 'resumed': ..}.
  """
  rows = plan(benchmarks, preset, devices)
  if implementations is not None:
    known = {i.name for b in benchmarks for i in b.implementations}
    unknown = sorted(set(implementations) - known)
    if unknown:
      raise ValueError(f"unknown implementations {unknown}; the selected benchmarks have "
                       f"{sorted(known)}.")
  existing = _records.load_records(output)
  if existing and not resume:
    raise FileExistsError(f"{output} already holds {len(existing)} records; pass resume=True "
                          f"(--resume) to continue it, or choose another output.")
  writer = _records.RecordWriter(output)
  rate = gemm_gflops or _timing.gemm_gflops()
  env = _records.environment(rate)
  done = {_records.key_of(r) for r in existing}
  counts = {"ok": 0, "skipped": 0, "oom": 0, "error": 0, "resumed": 0}
  work = [(b, p, [i for i in b.implementations
                  if implementations is None or i.name in implementations]) for b, p in rows]
  pending = [(b, p, [i for i in impls if _records.record_key(b.name, i.name, p, env) not in done])
             for b, p, impls in work]
  _announce(work, pending, rate, repeats=repeats, min_time=min_time, time_budget=time_budget,
            stream=stream)
  progress = Progress(sum(len(impls) for _, _, impls in work), stream)
  for (benchmark, params, impls), (_, _, todo) in zip(work, pending):
    for impl in impls:
      if impl not in todo:
        counts["resumed"] += 1
        progress.step(f"{benchmark.name} {impl.name} {dict(params)}", "already recorded",
                      measured=False)
    if not todo:
      continue
    inputs = jax.block_until_ready(benchmark.setup(params))
    floor_flops = benchmark.floor_flops(params) if benchmark.floor_flops else None
    for impl in todo:
      record = _run_row(benchmark, impl, params, inputs, env=env, rate=rate,
                        floor_flops=floor_flops, repeats=repeats, min_time=min_time,
                        time_budget=time_budget)
      writer.write(record)
      counts[record["status"]] += 1
      outcome = (f"{record['median_s']:.3g} s" if record["status"] == "ok"
                 else f"{record['status']}: {record['reason']}")
      progress.step(f"{benchmark.name} {impl.name} {dict(params)}", outcome)
    del inputs
  return counts


def _announce(work, pending, rate, *, repeats, min_time, time_budget, stream) -> None:
  """Prints how many rows there are and how long the pending ones should take."""
  total = sum(len(impls) for _, _, impls in work)
  todo = [(i, p) for _, p, impls in pending for i in impls]
  estimates = [row_seconds(i, p, rate, repeats=repeats, min_time=min_time,
                           time_budget=time_budget)
               for i, p in todo]
  known = [e for e in estimates if e is not None]
  text = f"{total} rows, {len(todo)} to measure ({total - len(todo)} already recorded)"
  if todo:
    text += (f"; estimated {format_duration(sum(known))} of timed calls at "
             f"{rate:.0f} GFLOP/s (compilation and set-up not included")
    unknown = len(estimates) - len(known)
    text += f"; {unknown} rows without a work model)" if unknown else ")"
  stream.write(text + "\n")
  stream.flush()


def _run_row(benchmark: Benchmark, impl: Implementation, params, inputs, *, env, rate,
             floor_flops, repeats, min_time, time_budget) -> _records.Record:
  """Measures one row (or records why it was not run) as a complete record."""
  record: _records.Record = {
      "benchmark": benchmark.name, "implementation": impl.name, "params": dict(params),
      "flops": benchmark.model_flops(params),
      "floor_s": None if floor_flops is None else floor_flops / (rate * 1e9),
      "env": env, "alignment": None, "extrapolated_from": None,
  }
  skip = _skip_reason(impl, params, rate, time_budget)
  if skip:
    record["status"], record["reason"] = skip
  else:
    try:
      fields, output = _measure(impl, params, inputs, repeats=repeats, min_time=min_time,
                                time_budget=time_budget)
      record.update(fields, status="ok", requested_repeats=repeats)
      if benchmark.alignment is not None:
        record["alignment"] = {k: _plain(v) for k, v in
                               benchmark.alignment(output, params, impl.name).items()}
      del output
    except Exception as error:  # noqa: BLE001 - every failure becomes a record
      record["status"] = "oom" if _is_oom(error) else "error"
      record["reason"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
      if record["status"] == "error":
        record["traceback"] = traceback.format_exc(limit=6)[-2000:]
  if record["status"] == "ok":
    record.update(_records.derived_fields(record))
  record["recorded_at"] = _records.now()
  return record


def _plain(value):
  """JSON-ready copy of a score (arrays become nested lists, NaN becomes None)."""
  value = np.asarray(value)
  if value.ndim == 0:
    v = float(value)
    return None if math.isnan(v) else v
  return value.tolist()
