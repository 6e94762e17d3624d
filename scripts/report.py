r"""Benchmark records (JSONL) to a Markdown results page, with optional plots.

One table per benchmark, grouped by family, after the environment the
records were measured in; every other implementation is compared with ours
(`x ours` above 1: ours is faster). With `--plots_dir`, a log-log PNG of
median time against n per benchmark is written there and embedded in the
page (needs matplotlib: pip install 'platonic_jax[bench]'). Records written
by older versions render too.

  python scripts/report.py --records=benchmarks/results/records-cpu.jsonl \
      --out=benchmarks/results/cpu.md --plots_dir=benchmarks/results/plots-cpu \
      --title="platonic_jax on CPU"

Each file is written to a temporary file beside it and renamed into place,
so a page open in a viewer is never half written. The records file may still
be growing: its half-written last line is ignored.
"""

import pathlib

from absl import app
from absl import flags

from platonic_jax import bench

FLAGS = flags.FLAGS
flags.DEFINE_string("records", None, "Benchmark records, JSONL (one JSON object per line).")
flags.DEFINE_string("out", None, "Markdown page to write; default: the records path with .md.")
flags.DEFINE_string("plots_dir", None, "Directory for PNG plots, embedded in the page; none if "
                    "unset.")
flags.DEFINE_string("title", bench.DEFAULT_TITLE, "Page title.")
flags.mark_flag_as_required("records")
flags.register_validator("records", lambda path: path is None or pathlib.Path(path).is_file(),
                         message="--records must name an existing JSONL file.")


def main(argv):
  bench.reject_arguments(argv)
  records = pathlib.Path(FLAGS.records)
  out = pathlib.Path(FLAGS.out) if FLAGS.out else records.with_suffix(".md")
  try:
    written = bench.render_report(records, out, plots_dir=FLAGS.plots_dir, title=FLAGS.title)
  except (ImportError, ValueError) as error:
    raise app.UsageError(str(error)) from None
  for path in written:
    print(f"wrote {path}")


if __name__ == "__main__":
  bench.run_script(main)
