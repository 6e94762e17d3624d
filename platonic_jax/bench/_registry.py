"""Benchmarks registered by name: what to build, what to time, how much work it is."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from typing import Any, Callable, Iterator, Mapping, Sequence

from platonic_jax import _validation

Params = Mapping[str, Any]

# Size presets, smallest first: seconds on a laptop, the 2-core CPU tables,
# the GPU tables (`scripts/device_bench.sh`).
PRESETS = ("small", "cpu", "gpu")


@dataclasses.dataclass(frozen=True)
class Implementation:
  """One way of computing a benchmark's result, timed side by side with the others.

  Attributes:
    name: 'ours' for the platonic_jax path every other row is compared with;
      e.g. 'dense_reference', 'numpy_f64', 'faiss_flat_ip', 'gemm_only' (the
      benchmark's GEMMs alone, timed).
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
    sizes: preset name (one of `PRESETS`) -> list of parameter dicts. A
      `devices` parameter, where present, is the number of devices the rows
      are sharded over (`run_benchmarks(devices=...)` overrides it).
    setup: `setup(params) -> tuple of arrays` on the default device (materialised).
    implementations: the first is 'ours'.
    floor_flops: `floor_flops(params)`: FLOPs of the GEMMs that bound this
      computation (e.g. two Grams for mutual kNN, computed in row tiles with
      no N x N output); at the machine's measured GEMM rate it gives each
      row's computed GEMM floor `floor_s`.
    flops: `flops(params)`: model FLOPs of the result, for achieved FLOP/s
      (defaults to `floor_flops`).
    alignment: `alignment(output, params, implementation) -> dict` of scores
      to record (`implementation` is the name of the one that produced
      `output`), or None.
  """
  name: str
  description: str
  sizes: Mapping[str, Sequence[Params]]
  setup: Callable[[Params], tuple]
  implementations: Sequence[Implementation]
  floor_flops: Callable[[Params], float] | None = None
  flops: Callable[[Params], float] | None = None
  alignment: Callable[[Any, Params, str], Mapping[str, Any]] | None = None

  def __post_init__(self):
    names = [impl.name for impl in self.implementations]
    if not names or names[0] != "ours":
      raise ValueError(f"benchmark {self.name!r}: the first implementation must be 'ours'.")
    if len(set(names)) != len(names):
      raise ValueError(f"benchmark {self.name!r}: implementation names repeat: {names}.")
    unknown = sorted(set(self.sizes) - set(PRESETS))
    if unknown:
      raise ValueError(f"benchmark {self.name!r}: unknown size presets {unknown}; the presets "
                       f"are {list(PRESETS)}.")

  def model_flops(self, params: Params) -> float | None:
    model = self.flops or self.floor_flops
    return None if model is None else float(model(params))


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
  """Adds `benchmark` to the registry under its name (once: names are unique)."""
  if benchmark.name in _BENCHMARKS:
    raise ValueError(f"benchmark {benchmark.name!r} is already registered.")
  _BENCHMARKS[benchmark.name] = benchmark
  return benchmark


@contextlib.contextmanager
def registered(*benchmarks: Benchmark) -> Iterator[tuple[Benchmark, ...]]:
  """Registers `benchmarks` for the duration of a `with` block, then removes them.

    with bench.registered(toy):
      bench.select_benchmarks("test/*")

  Nothing is left behind, also when the block raises or a name is taken.
  """
  added = []
  try:
    for benchmark in benchmarks:
      added.append(register_benchmark(benchmark))
    yield benchmarks
  finally:
    for benchmark in added:
      del _BENCHMARKS[benchmark.name]


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
