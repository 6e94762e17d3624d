"""Honest timing: inputs materialised first, compile timed apart, warm-up, medians."""

from __future__ import annotations

import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp


def reset_peak_rss() -> bool:
  """Resets the process's peak RSS (Linux `clear_refs` 5); False where unsupported."""
  try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
    return True
  except OSError:
    return False


def peak_rss_bytes() -> int | None:
  """Peak resident set size since the last reset (VmHWM), or None off Linux."""
  try:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def device_memory() -> dict[str, int] | None:
  """The default device's allocator statistics (accelerators; None on CPU)."""
  stats = jax.devices()[0].memory_stats()
  return dict(stats) if stats else None


def available_memory_bytes() -> int:
  """Memory the computation may use: device limit on accelerators, MemAvailable on CPU."""
  stats = device_memory()
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  try:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 2**63


def gemm_gflops(size: int | None = None, repeats: int = 15) -> float:
  """The machine's float32 GEMM rate: the fastest of `repeats` [size, size] @ [size, size].

  The fastest call, not the median: noise on a shared machine only slows a
  call down, and the floor built on this rate should be the machine's
  capability (a low rate would make every floor ratio look better).
  """
  size = size or (2048 if jax.default_backend() == "cpu" else 8192)
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
  times = timed_calls(f.lower(a, b).compile(), (a, b), repeats=repeats, warmup=1)
  return 2.0 * size**3 / min(times) / 1e9


def timed_calls(fn: Callable[..., Any], inputs: Sequence[Any], *, repeats: int,
                warmup: int = 1, min_time: float = 0.0, max_time: float | None = None
                ) -> list[float]:
  """Wall times of calls, each ended by `block_until_ready`, after warm-up.

  `repeats` calls, then more while their times add up to less than
  `min_time` seconds; past `repeats`, a call starts only when the times so
  far plus one more like the last stay within `max_time` seconds (no limit
  when None). The limit is in seconds, not calls, so that one slow call
  (the first after compiling, a hiccup of the host) does not cut the rest.
  """
  for _ in range(warmup):
    jax.block_until_ready(fn(*inputs))
  times = []
  elapsed = 0.0
  while len(times) < repeats or (
      elapsed < min_time and (max_time is None or elapsed + times[-1] <= max_time)):
    start = time.perf_counter()
    jax.block_until_ready(fn(*inputs))
    times.append(time.perf_counter() - start)
    elapsed += times[-1]
  return times


def compile_jitted(fn: Callable[..., Any], inputs: Sequence[Any]):
  """(compiled executable, seconds to lower and compile, memory fields).

  The memory fields come from XLA's `memory_analysis`: `temp_bytes`
  (temporaries) and `device_bytes` (arguments + outputs + temporaries), None
  where the backend does not report them.
  """
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*inputs).compile()
  seconds = time.perf_counter() - start
  memory = {"temp_bytes": None, "device_bytes": None}
  try:
    analysis = compiled.memory_analysis()
  except (AttributeError, NotImplementedError):
    analysis = None
  if analysis is not None:
    memory["temp_bytes"] = int(analysis.temp_size_in_bytes)
    memory["device_bytes"] = int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                                 + analysis.temp_size_in_bytes)
  return compiled, seconds, memory
