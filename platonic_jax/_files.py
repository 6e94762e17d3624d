"""Durable file writes: a reader sees the old file or the new one, whole, never a torn one.

Every file the library writes (feature stores, manifests, records summaries,
reports, figures) goes through here, so an interrupted run loses nothing that
was written and leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
from typing import Any


def fsync_directory(directory: str | os.PathLike) -> None:
  """Makes the directory's entries (a rename into it) durable."""
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to a temporary file beside `path`, fsyncs it, renames it over `path`.

  Parent directories are created. The temporary file is created with mode
  0o666 less the umask, as `open` would create `path` itself, and removed if
  anything fails. Returns `path`.
  """
  path = pathlib.Path(path)
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
    temp.unlink(missing_ok=True)
    raise
  fsync_directory(path.parent)
  return path


def write_text_atomic(path: str | os.PathLike, text: str) -> pathlib.Path:
  """`write_atomic` of UTF-8 text."""
  return write_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, payload: Any, *,
                      allow_nan: bool = False) -> pathlib.Path:
  """`payload` as indented, key-sorted JSON, written atomically (NaN refused unless allowed)."""
  return write_text_atomic(
      path, json.dumps(payload, indent=1, sort_keys=True, allow_nan=allow_nan) + "\n")
