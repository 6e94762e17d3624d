"""Benchmark records: the one record type, its derived fields, and durable JSONL files.

Each record is written with a single `write` of a complete line, then flushed
and `fsync`ed, so a run killed at any moment leaves every finished record
intact. A line cut short by a crash is ignored when reading and trimmed before
the next append. Records written by older versions read back unchanged except
for implementation names that were renamed since (`LEGACY_IMPLEMENTATIONS`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import platform
import socket
import subprocess
from typing import Any, Iterable, Literal, Mapping, TypedDict
import warnings

import jax
import jaxlib

# The fields of the environment that name the hardware: measurements are
# resumed, compared and grouped only within one machine.
MACHINE_FIELDS = ("backend", "device_kind", "device_count")
# Implementation names that records written before a rename still carry.
LEGACY_IMPLEMENTATIONS = {"gemm_floor": "gemm_only"}
_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)

Status = Literal["ok", "skipped", "oom", "error"]


class Environment(TypedDict, total=False):
  """Where and with what a measurement was taken (see `environment`)."""
  jax: str
  jaxlib: str
  backend: str
  device_kind: str
  device_count: int
  process_count: int
  cpu: str
  cpu_count: int | None
  python: str
  hostname: str
  git_commit: str | None
  gemm_gflops: float | None  # the machine's measured float32 GEMM rate


class Record(TypedDict, total=False):
  """One measurement: a JSON object per line of a records file.

  Every record has the identity and outcome fields; the timing and memory
  fields are present when `status` is 'ok' (older records may lack the newer
  ones: `requested_repeats`, `device_bytes`). `gflops_per_s` and
  `floor_ratio` are derived (`derived_fields`) and stored for readers of the
  raw JSON; the report recomputes them with the same functions.
  """
  benchmark: str  # 'family/what', e.g. 'knn/mutual'
  implementation: str  # 'ours' or a baseline, e.g. 'numpy_f64'
  params: dict[str, Any]
  env: Environment
  status: Status
  reason: str  # why a row is not 'ok'
  traceback: str  # the last frames of an 'error'
  recorded_at: str  # ISO 8601, UTC
  flops: float | None  # model FLOPs of the result
  floor_s: float | None  # the computed GEMM floor: floor FLOPs at the measured GEMM rate
  alignment: dict[str, Any] | None  # scores the output gave, as JSON
  extrapolated_from: dict[str, int] | None  # {'measured': m, 'total': t} parts
  compile_s: float | None  # lowering + compilation (None for host code)
  temp_bytes: int | None  # XLA memory analysis: temporaries
  device_bytes: int | None  # XLA memory analysis: arguments + outputs + temporaries
  peak_rss_bytes: int | None  # process peak resident set during the row
  device_peak_bytes: int | None  # allocator peak, when this row raised it
  times_s: list[float]
  repeats: int  # timed calls actually made
  requested_repeats: int  # timed calls asked for (`--repeats`)
  median_s: float
  min_s: float
  max_s: float
  gflops_per_s: float | None
  floor_ratio: float | None


def number(value) -> float | None:
  """A finite float, or None for anything else (missing, bool, NaN, text)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value) if math.isfinite(value) else None


def gflops_per_s(record: Mapping[str, Any]) -> float | None:
  """Achieved model GFLOP/s of an ok record (None without a FLOP model)."""
  if record.get("status") != "ok":
    return None
  flops, median = number(record.get("flops")), number(record.get("median_s"))
  if flops is not None and median:
    return flops / median / 1e9
  return number(record.get("gflops_per_s"))


def floor_ratio(record: Mapping[str, Any]) -> float | None:
  """Median time over the computed GEMM floor `floor_s` (None without a floor)."""
  if record.get("status") != "ok":
    return None
  floor, median = number(record.get("floor_s")), number(record.get("median_s"))
  if floor and median is not None:
    return median / floor
  return number(record.get("floor_ratio"))


def derived_fields(record: Mapping[str, Any]) -> dict[str, float | None]:
  return {"gflops_per_s": gflops_per_s(record), "floor_ratio": floor_ratio(record)}


def machine_key(env: Mapping[str, Any] | None) -> str:
  """Which machine, as a sortable string: the environment's `MACHINE_FIELDS`."""
  env = env or {}
  return json.dumps([env.get(field) for field in MACHINE_FIELDS], default=str)


def machine_label(env: Mapping[str, Any] | None) -> str:
  """'1 x cpu', '8 x NVIDIA H100 80GB HBM3', ..."""
  env = env or {}
  kind = env.get("device_kind") or env.get("backend")
  if kind is None:
    return "unknown machine"
  count = env.get("device_count")
  return f"{count} x {kind}" if count is not None else str(kind)


def record_key(benchmark: str, implementation: str, params: Mapping[str, Any],
               env: Mapping[str, Any] | None) -> str:
  """Identity of a measurement: what was run, with what, on which machine."""
  return json.dumps([benchmark, implementation, dict(sorted(params.items())),
                     machine_key(env)], sort_keys=True)


def key_of(record: Mapping[str, Any]) -> str:
  return record_key(record["benchmark"], record["implementation"], record["params"],
                    record.get("env"))


def params_of(record: Mapping[str, Any]) -> dict:
  params = record.get("params")
  return params if isinstance(params, dict) else {}


def params_key(params) -> str:
  return json.dumps(params if params is not None else {}, sort_keys=True, default=str)


def recorded_at(record: Mapping[str, Any]) -> datetime.datetime:
  """When a record was written (the earliest datetime when missing or unreadable)."""
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


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[Record]:
  """One record per (benchmark, implementation, params, machine): the newest.

  Newest is by `recorded_at`; ties (or missing timestamps) go to the record
  that comes later in the input. The result is sorted by machine, benchmark,
  implementation and params, so it does not depend on the input order beyond
  those ties.
  """
  newest = {}
  for index, record in enumerate(records):
    key = (machine_key(record.get("env")), str(record.get("benchmark", "")),
           str(record.get("implementation", "")), params_key(record.get("params")))
    rank = (recorded_at(record), index)
    if key not in newest or rank >= newest[key][0]:
      newest[key] = (rank, dict(record))
  return [newest[key][1] for key in sorted(newest)]


def _upgrade(record: dict) -> Record:
  """An older record under today's names (the record itself when nothing changed)."""
  renamed = LEGACY_IMPLEMENTATIONS.get(record.get("implementation"))
  return {**record, "implementation": renamed} if renamed else record


def load_records(path, *, strict: bool = True) -> list[Record]:
  """Reads a JSONL records file, one JSON object per line.

  Blank lines are skipped. A last line without a trailing newline is a record
  still being written (or cut short by a crash) and is ignored.

  Args:
    path: The JSONL file.
    strict: If True, a complete line that is not a JSON object raises; if
      False it is skipped with a warning.

  Returns:
    The records, in file order ([] when the file does not exist).

  Raises:
    ValueError: A complete line is not a JSON object and `strict` is True.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return []
  text = path.read_text(encoding="utf-8")
  lines = text.split("\n")
  lines.pop()  # '' after a final newline, else the half-written last line
  records = []
  for line_number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    except ValueError as error:
      message = f"{path}:{line_number}: not a benchmark record ({error})"
      if strict:
        raise ValueError(message) from error
      warnings.warn(message + "; skipped", stacklevel=2)
      continue
    records.append(_upgrade(record))
  return records


class RecordWriter:
  """Appends records to a JSONL file, durably, one complete line at a time."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._trim_partial_line()

  def _trim_partial_line(self) -> None:
    if not self.path.exists():
      return
    data = self.path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
      with open(self.path, "r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())

  def write(self, record: Mapping[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      written = os.write(fd, line)
      if written != len(line):
        raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
      os.fsync(fd)
    finally:
      os.close(fd)


def _cpu_model() -> str:
  try:
    described = cpu_description(pathlib.Path("/proc/cpuinfo").read_text())
  except OSError:
    described = None
  return described or platform.processor() or platform.machine()


def cpu_description(cpuinfo: str) -> str | None:
  """The model name in `/proc/cpuinfo` text, with its x86 family, model and widest vector unit.

  A virtual machine may report only 'AMD EPYC': family 25 (Zen 3/4) and 26
  (Zen 5) differ 2.5x in float32 GEMM rate on the 2-core development machine,
  so a page must say which one ran. None without a model name.
  """
  fields = {}
  for line in cpuinfo.splitlines():
    if not line.strip():
      break  # the first processor's block describes them all
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  name = fields.get("model name")
  if not name:
    return None
  flags = set(fields.get("flags", "").split())
  details = [f"family {fields['cpu family']} model {fields['model']}"
             if "cpu family" in fields and "model" in fields else None,
             "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None]
  details = [d for d in details if d]
  return f"{name} ({', '.join(details)})" if details else name


def _git_commit() -> str | None:
  root = pathlib.Path(__file__).resolve().parents[2]
  try:
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root,
                          capture_output=True, text=True, timeout=10)
    if head.returncode != 0 or len(head.stdout.strip()) != 40:
      return None  # not a git checkout (e.g. a copied tree)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head.stdout.strip() + ("-dirty" if dirty else "")


def environment(gemm_gflops: float | None = None) -> Environment:
  """Where and with what the measurements are taken (this process, now)."""
  devices = jax.devices()
  return {
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "process_count": jax.process_count(),
      "cpu": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "hostname": socket.gethostname(),
      "git_commit": _git_commit(),
      "gemm_gflops": gemm_gflops,
  }


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
