"""Benchmark registry, runner, records and reports.

Definitions live in the repository's `benchmarks/` package; `scripts/bench.py`
runs them and `scripts/report.py` renders their records.
"""

from platonic_jax.bench._records import RecordWriter
from platonic_jax.bench._records import environment
from platonic_jax.bench._records import load_records
from platonic_jax.bench._registry import Benchmark
from platonic_jax.bench._registry import Implementation
from platonic_jax.bench._registry import benchmark_names
from platonic_jax.bench._registry import get_benchmark
from platonic_jax.bench._registry import register_benchmark
from platonic_jax.bench._registry import select_benchmarks
from platonic_jax.bench._runner import run_benchmarks
from platonic_jax.bench._timing import gemm_gflops

__all__ = (
    "Benchmark",
    "Implementation",
    "RecordWriter",
    "benchmark_names",
    "environment",
    "gemm_gflops",
    "get_benchmark",
    "load_records",
    "register_benchmark",
    "run_benchmarks",
    "select_benchmarks",
)
