r"""Runs registered benchmarks and appends one JSON record per measurement.

  python scripts/bench.py                                   # every benchmark, small sizes
  python scripts/bench.py --filter='knn/*' --sizes=small
  python scripts/bench.py --filter='knn/*,cka/*' --sizes=cpu --output=runs/cpu.jsonl
  python scripts/bench.py --output=runs/cpu.jsonl --resume      # continue a killed run
  python scripts/bench.py --list
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python scripts/bench.py --filter='knn/mutual' --devices=8   # sharded over 8 CPU devices

Size presets: `small` (seconds on a laptop), `cpu` (the published 2-core CPU
tables: hours), `gpu` (the published GPU tables, `scripts/device_bench.sh`).

Each (benchmark, parameters, implementation) row is timed side by side with
the others in the same process: inputs are built and materialised first,
compilation is timed apart, then a warm-up and `--repeats` timed calls with
`block_until_ready` (more where they would take under `--min_time` seconds). The machine's GEMM rate is measured at the start; the row
count and an estimate of the total time are printed before the first row, and
the progress bar gives an ETA. Rows that would not fit in memory or the time
budget are recorded as such. At the end the records are rendered as Markdown
next to the output (and printed); `scripts/report.py` adds plots.

Expected: the default run (all benchmarks, small sizes) takes about a minute
on a 2-core CPU, offline, and writes runs/bench-small-<time>.jsonl and .md;
every implementation's alignment column agrees with ours, and FAISS rows read
'skipped: faiss is not installed' unless `pip install -e ".[bench]"`.
"""

import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from platonic_jax import bench
import platonic_jax.bench.definitions  # noqa: F401  (registers the built-in benchmarks)

FLAGS = flags.FLAGS
flags.DEFINE_string("filter", "*", "Comma-separated globs of benchmark names, e.g. 'knn/*'.")
flags.DEFINE_enum("sizes", "small", bench.PRESETS,
                  "Size preset: small (seconds), cpu (the CPU tables), gpu (the GPU tables).")
flags.DEFINE_string("output", None, "JSONL file to append records to "
                    "(default runs/bench-<sizes>-<UTC time>.jsonl).")
flags.DEFINE_bool("resume", False, "Continue an existing output file, skipping recorded rows.")
flags.DEFINE_integer("repeats", 3, "Timed calls per row after the warm-up.", lower_bound=1)
flags.DEFINE_float("min_time", 0.0, "Seconds of timed calls per row at least: faster rows get "
                   "more than --repeats calls (within --time_budget).", lower_bound=0.0)
flags.DEFINE_float("time_budget", 120.0, "Seconds one row may take; slower rows are skipped "
                   "(estimated) or timed once.", lower_bound=1e-3)
flags.DEFINE_list("implementations", None, "Only these implementations (default: all).")
flags.DEFINE_integer("devices", None, "Shard over this many devices: only the benchmarks with "
                     "a `devices` parameter run, with this value (default: the presets', 1).",
                     lower_bound=1)
flags.DEFINE_bool("list", False, "List the registered benchmarks and their presets, then exit.")
flags.DEFINE_bool("report", True, "Render the records as Markdown next to the output and print it.")


def _select(pattern: str) -> bool:
  try:
    bench.select_benchmarks(pattern)
  except ValueError as error:
    raise flags.ValidationError(str(error)) from None
  return True


flags.register_validator("filter", _select)


def main(argv):
  bench.reject_arguments(argv)
  logging.set_verbosity(logging.WARNING)
  if FLAGS.list:
    for name in bench.benchmark_names():
      b = bench.get_benchmark(name)
      impls = ", ".join(i.name for i in b.implementations)
      print(f"{name:22s} presets: {', '.join(sorted(b.sizes))}; implementations: {impls}")
    return
  if FLAGS.output:
    output = pathlib.Path(FLAGS.output)
  else:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    output = pathlib.Path(__file__).resolve().parents[1] / "runs" / f"bench-{FLAGS.sizes}-{stamp}.jsonl"
  try:
    counts = bench.run_benchmarks(
        bench.select_benchmarks(FLAGS.filter), preset=FLAGS.sizes, output=output,
        repeats=FLAGS.repeats, min_time=FLAGS.min_time, time_budget=FLAGS.time_budget,
        resume=FLAGS.resume,
        implementations=FLAGS.implementations, devices=FLAGS.devices)
  except (FileExistsError, ValueError) as error:
    raise app.UsageError(str(error)) from None
  print(f"records in {output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  if FLAGS.report:
    page = output.with_suffix(".md")
    bench.render_report(output, page, title=f"platonic_jax benchmarks ({FLAGS.sizes} sizes)")
    print(page.read_text())
    print(f"report in {page}")


if __name__ == "__main__":
  bench.run_script(main)
