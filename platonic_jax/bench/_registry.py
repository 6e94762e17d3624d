"""Benchmarks registered by name: what to build, what to time, how much work it is."""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, Mapping, Sequence

from platonic_jax import _validation

Params = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Implementation:
  """One way of computing a benchmark's result, timed side by side with the others.

  Attributes:
    name: 'ours' for the platonic_jax path every other row is compared with;
      e.g. 'dense_reference', 'numpy_f64', 'faiss_flat_ip', 'gemm_floor'.
    build: `build(params) -> fn`, where `fn(*inputs)` computes the result.
    jit: compile `fn` with `jax.jit` (compile time is then measured apart);
      False for host code (NumPy, FAISS).
    unavailable: `unavailable(params) -> reason | None`, e.g. an optional
      package that is not installed, or more devices than the machine has.
    memory_bytes: `memory_bytes(params) -> int`, the peak working set this
      implementation needs beyond its inputs; rows that would not fit are
      recorded as 'oom' without being run.
    work_flops: `work_flops(params) -> float`, the arithmetic this
      implementation really does (used to estimate its time against the budget).
    sample: `sample(params) -> (measured, total)` for baselines too slow to run
      whole: `fn` does `measured` of `total` equal parts and the time is scaled
      (recorded as extrapolated).
  """
  name: str
  build: Callable[[Params], Callable[..., Any]]
  jit: bool = True
  unavailable: Callable[[Params], str | None] = lambda params: None
  memory_bytes: Callable[[Params], float] = lambda params: 0
  work_flops: Callable[[Params], float] | None = None
  sample: Callable[[Params], tuple[int, int]] | None = None


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A named benchmark: a parameter grid, inputs, implementations and a work model.

  Attributes:
    name: 'family/what', e.g. 'knn/mutual'.
    description: what is measured, the command that runs it and what to expect.
    sizes: preset name ('small', 'cpu', 'gpu', ...) -> list of parameter dicts.
    setup: `setup(params) -> tuple of arrays` on the default device (materialised).
    implementations: the first is 'ours'.
    floor_flops: `floor_flops(params)`: FLOPs of the GEMMs that bound this
      computation (e.g. two full Grams for mutual kNN); with the machine's
      GEMM rate it gives each row's floor time.
    flops: `flops(params)`: model FLOPs of the result, for achieved FLOP/s
      (defaults to `floor_flops`).
    alignment: `alignment(output, params) -> dict` of scores to record, or None.
  """
  name: str
  description: str
  sizes: Mapping[str, Sequence[Params]]
  setup: Callable[[Params], tuple]
  implementations: Sequence[Implementation]
  floor_flops: Callable[[Params], float] | None = None
  flops: Callable[[Params], float] | None = None
  alignment: Callable[[Any, Params], Mapping[str, Any]] | None = None

  def __post_init__(self):
    names = [impl.name for impl in self.implementations]
    if not names or names[0] != "ours":
      raise ValueError(f"benchmark {self.name!r}: the first implementation must be 'ours'.")
    if len(set(names)) != len(names):
      raise ValueError(f"benchmark {self.name!r}: implementation names repeat: {names}.")

  def model_flops(self, params: Params) -> float | None:
    model = self.flops or self.floor_flops
    return None if model is None else float(model(params))


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
  if benchmark.name in _BENCHMARKS:
    raise ValueError(f"benchmark {benchmark.name!r} is already registered.")
  _BENCHMARKS[benchmark.name] = benchmark
  return benchmark


def benchmark_names() -> tuple[str, ...]:
  return tuple(sorted(_BENCHMARKS))


def get_benchmark(name: str) -> Benchmark:
  """The registered benchmark `name`; unknown names raise with the close matches."""
  return _validation.lookup(_BENCHMARKS, name, "benchmark")


def select_benchmarks(pattern: str) -> list[Benchmark]:
  """Benchmarks whose name matches any of the comma-separated shell globs in `pattern`."""
  globs = [g.strip() for g in pattern.split(",") if g.strip()]
  chosen = [b for name, b in sorted(_BENCHMARKS.items())
            if any(fnmatch.fnmatchcase(name, g) for g in globs)]
  if not chosen:
    raise ValueError(f"no benchmark matches {pattern!r}; registered: "
                     f"{', '.join(benchmark_names())}.")
  return chosen
