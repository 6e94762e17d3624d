"""Benchmark records (JSONL) to a Markdown page with embedded plots, written atomically.

  records = bench.load_records("benchmarks/results/records-cpu.jsonl")
  page = bench.render_markdown(records, title="platonic_jax on CPU")     # _tables
  bench.render_plots(records, "benchmarks/results/plots-cpu")           # _plots
  bench.render_report("benchmarks/results/records-cpu.jsonl", "benchmarks/results/cpu.md",
                      plots_dir="benchmarks/results/plots-cpu")
"""

from __future__ import annotations

import os
import pathlib

from platonic_jax import _files
from platonic_jax.bench import _plots
from platonic_jax.bench import _records
from platonic_jax.bench import _tables

DEFAULT_TITLE = "platonic_jax benchmarks"

PathLike = str | os.PathLike


def render_report(records_path: PathLike, markdown_path: PathLike,
                  plots_dir: PathLike | None = None, title: str = DEFAULT_TITLE
                  ) -> list[pathlib.Path]:
  """Reads the records and writes the Markdown page (and plots), each file atomically.

  Args:
    records_path: The JSONL records file.
    markdown_path: Where the page goes; its directory is created if missing.
    plots_dir: If given, PNG plots are written there and embedded in the page
      through links relative to the page.
    title: The page title.

  Returns:
    The written files: the Markdown page, then the plots.
  """
  records = _records.load_records(records_path)
  markdown_path = pathlib.Path(markdown_path)
  plots, link = [], None
  if plots_dir is not None:
    plots = _plots.render_plots(records, plots_dir)
    link = pathlib.Path(os.path.relpath(pathlib.Path(plots_dir).resolve(),
                                        markdown_path.resolve().parent)).as_posix()
    link = "" if link == "." else link
  page = _tables.render_markdown(records, title=title, plots_link=link)
  _files.write_atomic(markdown_path, page.encode("utf-8"))
  return [markdown_path, *plots]
