"""Benchmark registry, runner, records and reports.

The built-in definitions register on import of `platonic_jax.bench.definitions`;
`scripts/bench.py` runs them and `scripts/report.py` renders their records.

  from platonic_jax import bench
  import platonic_jax.bench.definitions  # noqa: F401  (registers knn/*, cka/*, cknna, zoo/*)
  bench.run_benchmarks(bench.select_benchmarks("knn/*"), preset="small", output="runs/knn.jsonl")
  bench.render_report("runs/knn.jsonl", "runs/knn.md", plots_dir="runs/plots")
"""

from platonic_jax.bench._cli import reject_arguments
from platonic_jax.bench._cli import run_script
from platonic_jax.bench._plots import render_plots
from platonic_jax.bench._records import Environment
from platonic_jax.bench._records import Record
from platonic_jax.bench._records import RecordWriter
from platonic_jax.bench._records import environment
from platonic_jax.bench._records import latest_records
from platonic_jax.bench._records import load_records
from platonic_jax.bench._records import machine_label
from platonic_jax.bench._records import record_key
from platonic_jax.bench._registry import PRESETS
from platonic_jax.bench._registry import Benchmark
from platonic_jax.bench._registry import Implementation
from platonic_jax.bench._registry import benchmark_names
from platonic_jax.bench._registry import get_benchmark
from platonic_jax.bench._registry import register_benchmark
from platonic_jax.bench._registry import registered
from platonic_jax.bench._registry import select_benchmarks
from platonic_jax.bench._report import DEFAULT_TITLE
from platonic_jax.bench._report import render_report
from platonic_jax.bench._runner import run_benchmarks
from platonic_jax.bench._tables import render_markdown
from platonic_jax.bench._timing import gemm_gflops

__all__ = (
    "DEFAULT_TITLE",
    "PRESETS",
    "Benchmark",
    "Environment",
    "Implementation",
    "Record",
    "RecordWriter",
    "benchmark_names",
    "environment",
    "gemm_gflops",
    "get_benchmark",
    "latest_records",
    "load_records",
    "machine_label",
    "record_key",
    "register_benchmark",
    "registered",
    "reject_arguments",
    "render_markdown",
    "render_plots",
    "render_report",
    "run_benchmarks",
    "run_script",
    "select_benchmarks",
)
