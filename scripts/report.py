r"""Benchmark records (JSONL) to a Markdown results page, with optional plots.

One table per benchmark, grouped by family, after the environment the
records were measured in; every other implementation is compared with ours
(`x ours` above 1: ours is faster). With `--plots_dir`, a log-log PNG of
median time against n per benchmark is written there and embedded in the
page (needs matplotlib: pip install 'platonic_jax[bench]').

  python scripts/report.py --records=benchmarks/results/cpu.jsonl \
      --out=benchmarks/results/cpu.md --plots_dir=benchmarks/results/plots \
      --title="platonic_jax on CPU"

Each file is written to a temporary file beside it and renamed into place,
so a page open in a viewer is never half written. The records file may still
be growing: its half-written last line is ignored.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top

from platonic_jax.bench import _report  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("records", None, "Benchmark records, JSONL (one JSON object per line).")
flags.DEFINE_string("out", None, "Markdown page to write; default: the records path with .md.")
flags.DEFINE_string("plots_dir", None, "Directory for PNG plots, embedded in the page; none if "
                    "unset.")
flags.DEFINE_string("title", _report.DEFAULT_TITLE, "Page title.")
flags.mark_flag_as_required("records")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  records = pathlib.Path(FLAGS.records)
  out = pathlib.Path(FLAGS.out) if FLAGS.out else records.with_suffix(".md")
  for path in _report.render_report(records, out, plots_dir=FLAGS.plots_dir, title=FLAGS.title):
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
