"""Benchmark records: one JSON object per line, appended durably.

Each record is written with a single `write` of a complete line, then flushed
and `fsync`ed, so a run killed at any moment leaves every finished record
intact. A line cut short by a crash is ignored when reading and trimmed before
the next append.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import socket
import subprocess
import warnings
from typing import Any, Iterable, Mapping

import jax
import jaxlib


def load_records(path, *, strict: bool = True) -> list[dict]:
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
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    except ValueError as error:
      message = f"{path}:{number}: not a benchmark record ({error})"
      if strict:
        raise ValueError(message) from error
      warnings.warn(message + "; skipped", stacklevel=2)
      continue
    records.append(record)
  return records


def record_key(benchmark: str, implementation: str, params: Mapping[str, Any],
               env: Mapping[str, Any]) -> str:
  """Identity of a measurement: what was run, with what, on which kind of machine."""
  return json.dumps([benchmark, implementation, dict(sorted(params.items())), env.get("backend"),
                     env.get("device_kind"), env.get("device_count")], sort_keys=True)


def key_of(record: Mapping[str, Any]) -> str:
  return record_key(record["benchmark"], record["implementation"], record["params"],
                    record.get("env", {}))


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
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


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


def environment(gemm_gflops: float | None = None) -> dict[str, Any]:
  """Where and with what the measurements were taken."""
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


def existing_keys(records: Iterable[Mapping[str, Any]]) -> set[str]:
  return {key_of(r) for r in records}
