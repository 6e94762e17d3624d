"""Text for benchmark records: numbers, times, sizes, and the grouping tables and plots share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import json
import math
import re
from typing import Any

from platonic_jax.bench import _records

REFERENCE = "ours"  # the implementation every other one is compared with
MISSING = object()
_REASON_CHARS = 32


def group(items, key) -> dict:
  groups = {}
  for item in items:
    groups.setdefault(key(item), []).append(item)
  return groups


def newest(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
  return max(enumerate(records), key=lambda item: (_records.recorded_at(item[1]), item[0]))[1]


def implementations(records: Iterable[Mapping[str, Any]]) -> list[str]:
  """Ours first, then the others alphabetically."""
  names = {str(r.get("implementation", "")) for r in records}
  return sorted(names, key=lambda name: (name != REFERENCE, name))


def split_params(records: Sequence[Mapping[str, Any]]):
  """(varying keys with 'n' first, [(key, value)] of the constant ones)."""
  params = _records.params_of
  keys = sorted({key for r in records for key in params(r)})
  varying, constants = [], []
  for key in keys:
    values = {_records.params_key(params(r).get(key, "\0missing")) for r in records}
    if key == "n" or len(values) > 1:
      varying.append(key)
    else:
      constants.append((key, params(records[0])[key]))
  varying.sort(key=lambda key: (key != "n", key))
  return varying, constants


def sort_value(value):
  if value is MISSING or value is None:
    return (0, 0, "")
  if isinstance(value, bool):
    return (1, int(value), "")
  if isinstance(value, (int, float)):
    return (2, value, "") if math.isfinite(value) else (2, math.inf, str(value))
  if isinstance(value, str):
    return (3, 0, value)
  return (4, 0, json.dumps(value, sort_keys=True, default=str))


def row_sort_key(record, varying):
  return tuple(sort_value(_records.params_of(record).get(key, MISSING)) for key in varying)


def variant(record, keys) -> str:
  """The values of `keys` in a record's params (absent keys left out), as a sortable key."""
  params = _records.params_of(record)
  return _records.params_key({key: params[key] for key in keys if key in params})


def variant_sort_key(text: str):
  return tuple((key, sort_value(value)) for key, value in json.loads(text).items())


def variant_label(text: str) -> str:
  return ", ".join(f"{key}={format_value(value)}" for key, value in json.loads(text).items())


def row_label(record, varying) -> str:
  return ", ".join(f"{key}={format_value(_records.params_of(record).get(key, MISSING))}"
                   for key in varying)


def positive(value) -> bool:
  number = _records.number(value)
  return number is not None and number > 0


def extrapolation(record) -> tuple[Any, Any] | None:
  if record is None:
    return None
  info = record.get("extrapolated_from")
  if not info:
    return None
  if isinstance(info, dict):
    return info.get("measured", "?"), info.get("total", "?")
  return "?", "?"


def ratio(other, ours) -> float | None:
  if other is None or ours is None:
    return None
  if other.get("status") != "ok" or ours.get("status") != "ok":
    return None
  a, b = _records.number(other.get("median_s")), _records.number(ours.get("median_s"))
  if a is None or b is None or b <= 0:
    return None
  return a / b


def reason(record) -> str:
  """The first line of a record's reason, whitespace collapsed ('' if none)."""
  lines = str(record.get("reason") or "").strip().splitlines()
  return " ".join(lines[0].split()) if lines else ""


def status_text(record) -> tuple[str, bool]:
  """('skipped: over time budget', whether the reason was shortened) for a table cell.

  The reason is cut at its first clause ('over time budget: estimated 400 s'
  -> 'over time budget'), then to `_REASON_CHARS` characters.
  """
  status = str(record.get("status") or "unknown")
  full = reason(record)
  short = re.split(r": |; | \(|, ", full, maxsplit=1)[0].strip()
  if len(short) > _REASON_CHARS:
    short = short[:_REASON_CHARS - 1].rstrip() + "…"
  return escape(f"{status}: {short}" if short else status), short != full


def flatten(value) -> list:
  flat, stack = [], [value]
  while stack:
    item = stack.pop()
    if isinstance(item, (list, tuple)):
      stack.extend(reversed(item))
    else:
      flat.append(item)
  return flat


def is_index_array(value) -> bool:
  """A nested list of integers (e.g. best layer indices): positions, not scores."""
  if not isinstance(value, (list, tuple)):
    return False
  flat = flatten(value)
  return bool(flat) and all(isinstance(v, int) and not isinstance(v, bool) for v in flat)


def format_score(value) -> str:
  """0.4123; several scores (arrays) as a short list or their mean."""
  if isinstance(value, (list, tuple)):
    numbers = [_records.number(v) for v in flatten(value)]
    finite = [v for v in numbers if v is not None]
    if not finite:
      return "-"
    if len(numbers) <= 3:
      return ", ".join("-" if v is None else f"{v:.4f}" for v in numbers)
    return f"mean {sum(finite) / len(finite):.4f} of {len(finite)}"
  number = _records.number(value)
  return "-" if number is None else f"{number:.4f}"


def sig3(x: float) -> str:
  """Three significant figures, never scientific: 0.0123, 1.23, 12.3, 123, 12300."""
  if x == 0:
    return "0"
  digits = 2 - math.floor(math.log10(abs(x)))
  rounded = round(x, digits)
  if rounded:
    digits = 2 - math.floor(math.log10(abs(rounded)))
  return f"{round(x, digits):.{max(digits, 0)}f}"


def format_seconds(seconds: float | None) -> str:
  if seconds is None or seconds < 0:
    return "-"
  if seconds < 1e-3:
    return f"{sig3(seconds * 1e6)} µs"
  if seconds < 1:
    return f"{sig3(seconds * 1e3)} ms"
  if seconds < 120:
    return f"{sig3(seconds)} s"
  if seconds < 7200:
    return f"{sig3(seconds / 60)} min"
  return f"{sig3(seconds / 3600)} h"


def format_bytes(size: float) -> str:
  if size < 2**20:
    return f"{sig3(size / 2**10)} KiB"
  if size < 2**30:
    return f"{sig3(size / 2**20)} MiB"
  return f"{sig3(size / 2**30)} GiB"


def format_counts(counts: Sequence[Any]) -> list[str]:
  """Axis labels for n: '$2^{14}$' when every n is a power of two, else '16,000'."""
  counts = [int(n) for n in counts]
  if all(n >= 2 and n & (n - 1) == 0 for n in counts):
    return [f"$2^{{{n.bit_length() - 1}}}$" for n in counts]
  return [f"{n:,}" for n in counts]


def format_value(value) -> str:
  if value is MISSING or value is None:
    return "-"
  if isinstance(value, str):
    return escape(value)
  if isinstance(value, (bool, int, float)):
    return json.dumps(value)
  return escape(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")))


def escape(text: str, code_ok: bool = False) -> str:
  """Keeps free text from breaking a table row (pipes, newlines) or turning into markup."""
  text = " ".join(str(text).split())
  text = text.replace("|", r"\|")
  return text if code_ok else text.replace("`", "'")


def slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "benchmark"
