"""Benchmark records to Markdown tables and PNG plots (platonic_jax.bench reports)."""

import json
import pathlib
import random
import subprocess
import sys

import pytest

from platonic_jax import bench
from platonic_jax.bench import _format

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = {"jax": "0.10.2", "jaxlib": "0.10.2", "backend": "cpu", "device_kind": "cpu",
       "device_count": 1, "cpu": "AMD EPYC 7B13", "cpu_count": 2, "gemm_gflops": 180.0,
       "git_commit": "abc123", "python": "3.11.7", "hostname": "box"}
MIB = 2**20


def record(benchmark, implementation, n, *, status="ok", median=None, at="2026-11-26T04:00:00Z",
           params=None, **fields):
  params = {"n": n, "d": 64, "k": 10, "precision": "highest", **(params or {})}
  out = {"benchmark": benchmark, "implementation": implementation, "params": params,
         "status": status, "env": ENV, "recorded_at": at, "extrapolated_from": None,
         "alignment": None, "flops": None, "gflops_per_s": None, "floor_s": None,
         "floor_ratio": None, "peak_rss_bytes": None, "device_peak_bytes": None}
  if status == "ok":
    out.update(median_s=median, min_s=median, max_s=median, times_s=[median] * 3, repeats=3,
               compile_s=0.5)
  out.update(fields)
  return out


def synthetic_records():
  """Two benchmarks; baselines that are ok, skipped, out of memory and extrapolated."""
  knn = "knn/mutual"
  return [
      record(knn, "ours", 1024, median=0.010, flops=2e9, floor_s=0.02, peak_rss_bytes=300 * MIB,
             alignment={"mutual_knn": 0.41234}),
      record(knn, "ours", 2048, median=0.040, flops=8e9, floor_s=0.08, peak_rss_bytes=600 * MIB,
             alignment={"mutual_knn": 0.40}),
      record(knn, "ours", 4096, median=0.160, flops=32e9, floor_s=0.32,
             peak_rss_bytes=2 * 2**30, alignment={"mutual_knn": 0.39}),
      record(knn, "dense_reference", 1024, median=0.030),
      record(knn, "dense_reference", 2048, median=0.200),
      record(knn, "dense_reference", 4096, status="oom",
             reason="needs ~6.0 GiB beyond its inputs; 4.0 GiB available (not run)"),
      record(knn, "numpy_f64", 1024, median=0.5),
      record(knn, "numpy_f64", 2048, median=2.5),
      record(knn, "numpy_f64", 4096, status="skipped",
             reason="over time budget: estimated 400 s at the GEMM rate > 120 s"),
      record(knn, "recompute_per_pair", 4096, median=9000.0,
             extrapolated_from={"measured": 8, "total": 2304}),
      # An older measurement of a row measured again later: must lose, wherever it sits.
      record(knn, "ours", 1024, median=99.0, at="2026-11-20T04:00:00Z"),
      record("cka/linear", "ours", 1024, median=0.002, params={"precision": "highest"}),
      record("cka/linear", "ours", 1024, median=0.001, params={"precision": "default"}),
      record("cka/linear", "ours", 8192, median=0.050, params={"precision": "highest"}),
      record("cka/linear", "numpy_f64", 8192, median=0.250, params={"precision": "highest"}),
  ]


def write_jsonl(path, records, tail=""):
  path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
  return path


def table(markdown, heading):
  """The table under `heading` as (header cells, rows of cells)."""
  lines = markdown.splitlines()
  start = lines.index(heading)
  rows = []
  for line in lines[start + 1:]:
    if line.startswith("#"):
      break
    if line.startswith("|"):
      rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
  assert rows, f"no table under {heading!r}"
  return rows[0], rows[2:]


def cell(header, row, column, after=None):
  """The cell of `row` in `column`; `after` picks the column that follows a named one."""
  index = header.index(after) + 1 if after else header.index(column)
  if after:
    assert header[index] == column
  return row[index]


def by_n(rows, header):
  return {row[header.index("n")]: row for row in rows}


def test_load_records_skips_blank_lines_and_a_half_written_last_line(tmp_path):
  records = synthetic_records()[:3]
  path = write_jsonl(tmp_path / "r.jsonl", records[:2],
                     tail="\n   \n" + json.dumps(records[2]) + "\n" + '{"benchmark": "knn/mu')
  loaded = bench.load_records(path)
  assert loaded == records
  assert bench.load_records(write_jsonl(tmp_path / "empty.jsonl", [])) == []


def test_load_records_rejects_a_corrupt_complete_line(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text(json.dumps(synthetic_records()[0]) + "\n{not json\n")
  with pytest.raises(ValueError, match=r"r.jsonl:2"):
    bench.load_records(path)
  with pytest.warns(UserWarning, match="skipped"):
    assert len(bench.load_records(path, strict=False)) == 1


def test_table_cells_match_the_records():
  page = bench.render_markdown(synthetic_records(), title="Bench")
  assert page.startswith("# Bench\n")
  header, rows = table(page, "### knn/mutual")
  assert header[:2] == ["n", "`ours`"]  # d, k and precision are constant
  assert "d=64, k=10, precision=highest" in page
  assert [row[0] for row in rows] == ["1024", "2048", "4096"]
  assert header.index("`dense_reference`") < header.index("`numpy_f64`") < header.index(
      "`recompute_per_pair`")
  rows = by_n(rows, header)

  assert cell(header, rows["1024"], "`ours`") == "10.0 ms"
  assert cell(header, rows["4096"], "`ours`") == "160 ms"
  assert cell(header, rows["1024"], "GFLOP/s") == "200"
  assert cell(header, rows["1024"], "vs GEMM floor") == "0.500x"
  assert cell(header, rows["1024"], "peak mem") == "300 MiB"
  assert cell(header, rows["4096"], "peak mem") == "2.00 GiB"
  assert cell(header, rows["1024"], "mutual_knn") == "0.4123"

  assert cell(header, rows["1024"], "`dense_reference`") == "30.0 ms"
  assert cell(header, rows["1024"], "x ours", after="`dense_reference`") == "3.00x"
  assert cell(header, rows["2048"], "x ours", after="`dense_reference`") == "5.00x"
  assert cell(header, rows["4096"], "`dense_reference`") == "oom: needs ~6.0 GiB beyond its inputs"
  assert cell(header, rows["4096"], "x ours", after="`dense_reference`") == "-"
  assert cell(header, rows["2048"], "`numpy_f64`") == "2.50 s"
  assert cell(header, rows["2048"], "x ours", after="`numpy_f64`") == "62.5x"
  assert cell(header, rows["4096"], "`numpy_f64`").startswith("skipped: over time budget")
  assert cell(header, rows["4096"], "`numpy_f64`") == "skipped: over time budget"
  assert "`numpy_f64` at n=4096, skipped: over time budget: estimated 400 s" in page

  assert cell(header, rows["4096"], "`recompute_per_pair`") == "~2.50 h"
  assert cell(header, rows["4096"], "x ours", after="`recompute_per_pair`") == "~56200x"
  assert cell(header, rows["1024"], "`recompute_per_pair`") == "-"
  assert "`recompute_per_pair` at n=4096: timed 8 of 2304" in page

  header, rows = table(page, "### cka/linear")
  assert header[:3] == ["n", "precision", "`ours`"]
  assert [row[:3] for row in rows] == [["1024", "default", "1.00 ms"],
                                       ["1024", "highest", "2.00 ms"],
                                       ["8192", "highest", "50.0 ms"]]
  assert rows[2][header.index("x ours")] == "5.00x"
  assert page.index("## cka") < page.index("## knn")


def test_environment_section_comes_from_the_newest_record():
  records = synthetic_records()
  records[0] = {**records[0], "env": {**ENV, "git_commit": "def456", "gemm_gflops": 175.0},
                "recorded_at": "2026-11-27T10:30:00Z"}
  page = bench.render_markdown(records, title="Bench")
  environment = page[page.index("## Environment"):page.index("## cka")]
  for text in ("1 x cpu", "`cpu`", "jax 0.10.2, jaxlib 0.10.2", "AMD EPYC 7B13 (2 cores)",
               "180 GFLOP/s (13 records, `ours` among them); 175 GFLOP/s (1 record, `ours` "
               "among them): measured as each run that wrote them started",
               "`def456`", "2026-11-26 04:00 to 2026-11-27 10:30 UTC",
               "14 (12 ok, 1 oom, 1 skipped)", "git_commit: abc123, def456"):
    assert text in environment, text


def test_one_gemm_rate_is_stated_once():
  page = bench.render_markdown(synthetic_records(), title="Bench")
  assert "- **GEMM rate:** 180 GFLOP/s (the fastest of the runner's" in page


def test_a_resumed_run_at_another_gemm_rate_is_named_apart():
  records = [r if r["implementation"] == "ours" else {**r, "env": {**ENV, "gemm_gflops": 170.0}}
             for r in synthetic_records()]
  page = bench.render_markdown(records, title="Bench")
  assert ("- **GEMM rate:** 180 GFLOP/s (6 records, `ours` among them); 170 GFLOP/s (8 records): "
          in page), page[:1500]


def test_the_newest_duplicate_wins_and_the_page_is_deterministic():
  records = synthetic_records()
  page = bench.render_markdown(records, title="Bench")
  header, rows = table(page, "### knn/mutual")
  assert cell(header, by_n(rows, header)["1024"], "`ours`") == "10.0 ms"  # not the older 99 s
  assert "99.0 s" not in page

  newer = record("knn/mutual", "ours", 1024, median=0.020, at="2026-11-28T00:00:00Z")
  header, rows = table(bench.render_markdown(records + [newer], title="Bench"),
                       "### knn/mutual")
  assert cell(header, by_n(rows, header)["1024"], "`ours`") == "20.0 ms"

  shuffled = list(records)
  random.Random(0).shuffle(shuffled)
  assert bench.render_markdown(shuffled, title="Bench") == page


def test_records_from_two_machines_are_never_compared():
  gpu_env = {**ENV, "backend": "gpu", "device_kind": "NVIDIA H100", "device_count": 1}
  records = synthetic_records() + [
      {**record("knn/mutual", "ours", 1024, median=0.001), "env": gpu_env}]
  page = bench.render_markdown(records, title="Bench")
  assert "## 1 x cpu" in page and "## 1 x NVIDIA H100" in page
  gpu = page[page.index("## 1 x NVIDIA H100"):]
  header, rows = table(gpu, "#### knn/mutual")
  assert rows == [["1024", "1.00 ms"]]
  header, rows = table(page, "#### knn/mutual")  # the cpu table comes first
  assert cell(header, by_n(rows, header)["1024"], "`ours`") == "10.0 ms"


def test_plots_are_pngs(tmp_path):
  pytest.importorskip("matplotlib")
  paths = bench.render_plots(synthetic_records(), tmp_path / "plots")
  assert [p.name for p in paths] == ["cka_linear.png", "knn_mutual.png"]
  for path in paths:
    assert path.read_bytes()[:8] == PNG_MAGIC
  # A benchmark with a single n gets no plot.
  assert bench.render_plots(synthetic_records()[-1:], tmp_path / "none") == []


def test_plots_without_matplotlib_say_what_to_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(ImportError, match=r"pip install 'platonic_jax\[bench\]'"):
    bench.render_plots(synthetic_records(), tmp_path)


def test_render_report_embeds_plots_and_leaves_no_temporary_files(tmp_path):
  pytest.importorskip("matplotlib")
  records = write_jsonl(tmp_path / "r.jsonl", synthetic_records())
  page = tmp_path / "site" / "results.md"
  page.parent.mkdir()
  page.write_text("stale")
  written = bench.render_report(records, page, plots_dir=tmp_path / "site" / "plots",
                                  title="CPU results")
  assert written[0] == page and len(written) == 3
  text = page.read_text()
  assert text.startswith("# CPU results")
  assert "![knn/mutual: median time vs n](plots/knn_mutual.png)" in text
  assert sorted(p.name for p in page.parent.iterdir()) == ["plots", "results.md"]
  plain = tmp_path / "plain.md"
  plain.write_text("")
  assert page.stat().st_mode == plain.stat().st_mode  # not mkstemp's 0o600


def test_script_writes_the_report(tmp_path):
  records = write_jsonl(tmp_path / "r.jsonl", synthetic_records(), tail='{"half')
  out = tmp_path / "report.md"
  done = subprocess.run(
      [sys.executable, "scripts/report.py", f"--records={records}", f"--out={out}",
       "--title=Script run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-3000:]
  text = out.read_text()
  assert text.startswith("# Script run")
  assert "### knn/mutual" in text and "![" not in text


def test_formatting_helpers():
  assert _format.format_seconds(42e-6) == "42.0 µs"
  assert _format.format_seconds(0.5) == "500 ms"
  assert _format.format_seconds(119.0) == "119 s"
  assert _format.format_seconds(600.0) == "10.0 min"
  assert _format.format_bytes(512 * 2**10) == "512 KiB"
  assert _format.sig3(99.96) == "100"
  assert _format.sig3(0.012345) == "0.0123"
  assert _format.format_score([0.5, 0.25]) == "0.5000, 0.2500"
  assert _format.format_score([0.1, 0.2, 0.3, 0.4]) == "mean 0.2500 of 4"
  assert _format.format_counts([512, 2048]) == ["$2^{9}$", "$2^{11}$"]
  assert _format.format_counts([1000, 2048]) == ["1,000", "2,048"]


def test_rows_timed_fewer_times_than_asked_are_marked_with_a_count():
  records = synthetic_records()
  records[7] = {**records[7], "repeats": 1, "times_s": [2.5]}  # numpy_f64 at n=2048, old record
  records.append(record("knn/mutual", "faiss_flat_ip", 1024, median=0.02, repeats=2,
                        requested_repeats=5))
  page = bench.render_markdown(records, title="Bench")
  header, rows = table(page, "### knn/mutual")
  rows = by_n(rows, header)
  assert cell(header, rows["2048"], "`numpy_f64`") == "2.50 s†"  # 1 of the file's 3
  assert cell(header, rows["1024"], "`numpy_f64`") == "500 ms"
  assert cell(header, rows["1024"], "`faiss_flat_ip`") == "20.0 ms†"
  assert "`numpy_f64` at n=2048: 1 of 3." in page
  assert "`faiss_flat_ip` at n=1024: 2 of 5." in page
  plain = bench.render_markdown(synthetic_records(), title="Bench")
  assert "† |" not in plain and "timed fewer times than asked" not in plain


def test_the_page_says_which_gemm_figure_the_floor_column_uses(tmp_path):
  records = synthetic_records() + [record("knn/mutual", "gemm_floor", 1024, median=0.005)]
  path = write_jsonl(tmp_path / "old.jsonl", records)
  loaded = bench.load_records(path)
  assert {r["implementation"] for r in loaded} >= {"gemm_only"}
  assert "gemm_floor" not in {r["implementation"] for r in loaded}
  page = bench.render_markdown(loaded, title="Bench")
  assert "`vs GEMM floor` is ours' time over the *computed* GEMM floor" in page
  assert "The `gemm_only` rows are something else" in page
  header, rows = table(page, "### knn/mutual")
  assert cell(header, by_n(rows, header)["1024"], "`gemm_only`") == "5.00 ms"


def test_zoo_best_layers_are_a_matrix_not_a_mean_of_indices():
  best = [[[2, 2], [1, 2], [0, 1]], [[2, 1], [2, 2], [1, 1]], [[1, 0], [1, 1], [2, 2]]]
  zoo = record("zoo/all_pairs", "ours", 256, median=0.01, params={"m": 3, "l": 3},
               alignment={"best_layer_mutual_knn": [[1.0, 0.5, 0.25]] * 3, "best_layers": best,
                          "mean_off_diagonal": 0.375})
  page = bench.render_markdown([zoo], title="Bench")
  header, rows = table(page, "### zoo/all_pairs")
  assert "best_layers" not in header and "mean 0.5833 of 9" in rows[0]
  assert cell(header, rows[0], "mean_off_diagonal") == "0.3750"
  matrix = page[page.index("`best_layers` of `ours` at n=256"):]
  header, rows = table(matrix, matrix.splitlines()[0])
  assert header == ["model", "0", "1", "2"]
  assert rows == [["0", "-", "1, 2", "0, 1"], ["1", "2, 1", "-", "1, 1"],
                  ["2", "1, 0", "1, 1", "-"]]


def test_cpu_rows_show_the_compiled_footprint_beside_rss():
  records = synthetic_records()
  records[0] = {**records[0], "device_bytes": 3 * MIB, "temp_bytes": MIB}
  header, rows = table(bench.render_markdown(records, title="Bench"), "### knn/mutual")
  rows = by_n(rows, header)
  assert header.index("XLA mem") == header.index("peak mem") + 1
  assert cell(header, rows["1024"], "peak mem") == "300 MiB"
  assert cell(header, rows["1024"], "XLA mem") == "3.00 MiB"
  assert cell(header, rows["2048"], "XLA mem") == "-"
  gpu = {**ENV, "backend": "gpu", "device_kind": "NVIDIA H100"}
  header, _ = table(bench.render_markdown([{**r, "env": gpu} for r in records], title="Bench"),
                    "### knn/mutual")
  assert "XLA mem" not in header  # there `peak mem` is already the compiled footprint


def test_the_published_older_records_still_render():
  for name in ("records-cpu.jsonl", "records-gpu-nvidia-h200.jsonl"):
    records = bench.load_records(ROOT / "benchmarks" / "results" / name)
    page = bench.render_markdown(records, title="Published")
    assert "### knn/mutual" in page and "### zoo/all_pairs" in page
    assert "`gemm_only`" in page and "mean 1." not in page  # no mean of layer indices


def run_report(*flags):
  return subprocess.run([sys.executable, "scripts/report.py", *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_script_help_flags_and_errors(tmp_path):
  done = run_report("--help")
  assert done.returncode == 0 and "records-cpu.jsonl" in done.stdout
  assert "benchmarks/results/cpu.jsonl" not in done.stdout
  records = write_jsonl(tmp_path / "r.jsonl", synthetic_records())
  done = run_report(f"--records={records}", "extra")
  assert done.returncode != 0 and "unexpected positional arguments" in done.stderr, done.stderr
  assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2
