"""Benchmark registry, runner, records and the bench script (tiny sizes)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from platonic_jax import bench
from platonic_jax.bench import _runner
import platonic_jax.bench.definitions  # noqa: F401  (registers the built-in benchmarks)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _toy(name, **overrides):
  impls = overrides.pop("implementations", [
      bench.Implementation("ours", lambda p: lambda x: jnp.sum(x) * p["scale"]),
      bench.Implementation("slow_baseline", lambda p: lambda x: jnp.sum(jnp.sort(x)) * p["scale"]),
  ])
  return bench.Benchmark(
      name=name, description="toy", sizes={"small": [{"n": 8, "scale": 2.0},
                                                     {"n": 16, "scale": 2.0}]},
      setup=lambda p: (jnp.arange(p["n"], dtype=jnp.float32),), implementations=impls,
      floor_flops=lambda p: float(p["n"]), alignment=lambda out, p, impl: {"total": out},
      **overrides)


def test_registry_by_name_and_glob():
  names = bench.benchmark_names()
  assert {"knn/mutual", "knn/precision", "cka/linear/unbiased", "cka/linear/biased", "cknna",
          "zoo/all_pairs"} <= set(names)
  assert [b.name for b in bench.select_benchmarks("knn/*")] == ["knn/mutual", "knn/precision"]
  assert [b.name for b in bench.select_benchmarks("cknna,zoo/*")] == ["cknna", "zoo/all_pairs"]
  with pytest.raises(ValueError, match=r"no benchmark matches 'nope/\*'"):
    bench.select_benchmarks("nope/*")
  with pytest.raises(ValueError, match=r"unknown benchmark 'knn/mutal'\. Did you mean 'knn/mutual'"):
    bench.get_benchmark("knn/mutal")
  for name in names:
    b = bench.get_benchmark(name)
    assert b.implementations[0].name == "ours" and "small" in b.sizes and b.description


def test_benchmark_definition_checks():
  with pytest.raises(ValueError, match="first implementation must be 'ours'"):
    _toy("x", implementations=[bench.Implementation("other", lambda p: lambda x: x)])
  with bench.registered(_toy("test/registered_once")):
    with pytest.raises(ValueError, match="already registered"):
      bench.register_benchmark(_toy("test/registered_once"))


def test_runner_records_every_row_with_statistics_and_environment(tmp_path):
  out = tmp_path / "r.jsonl"
  counts = bench.run_benchmarks([_toy("test/toy")], preset="small", output=out, repeats=4,
                                gemm_gflops=100.0)
  assert counts["ok"] == 4
  records = bench.load_records(out)
  assert len(records) == 4
  for r in records:
    assert r["status"] == "ok" and r["repeats"] == 4 and len(r["times_s"]) == 4
    assert r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["compile_s"] > 0 and r["recorded_at"]
    assert r["alignment"]["total"] == pytest.approx(2.0 * sum(range(r["params"]["n"])))
    assert r["floor_s"] == pytest.approx(r["params"]["n"] / 100e9)
    assert r["floor_ratio"] == pytest.approx(r["median_s"] / r["floor_s"])
    env = r["env"]
    for field in ("jax", "jaxlib", "backend", "device_kind", "device_count", "cpu", "git_commit"):
      assert field in env
    assert env["gemm_gflops"] == 100.0


def test_output_is_not_overwritten_without_resume(tmp_path):
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([_toy("test/toy2")], preset="small", output=out, gemm_gflops=1.0)
  with pytest.raises(FileExistsError, match="pass resume=True"):
    bench.run_benchmarks([_toy("test/toy2")], preset="small", output=out, gemm_gflops=1.0)
  counts = bench.run_benchmarks([_toy("test/toy2")], preset="small", output=out, resume=True,
                                gemm_gflops=1.0)
  assert counts["resumed"] == 4 and counts["ok"] == 0
  assert len(bench.load_records(out)) == 4


def test_rows_that_cannot_run_are_recorded_not_dropped(tmp_path):
  impls = [
      bench.Implementation("ours", lambda p: lambda x: jnp.sum(x)),
      bench.Implementation("needs_a_terabyte", lambda p: lambda x: x, memory_bytes=lambda p: 2**50),
      bench.Implementation("too_slow", lambda p: lambda x: x, work_flops=lambda p: 1e18),
      bench.Implementation("not_installed", lambda p: lambda x: x,
                           unavailable=lambda p: "nothing is installed"),
      bench.Implementation("broken", lambda p: lambda x: x[None] @ x[None]),
  ]
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([_toy("test/toy3", implementations=impls)], preset="small", output=out,
                       time_budget=10.0, gemm_gflops=100.0)
  by_impl = {(r["implementation"], r["params"]["n"]): r for r in bench.load_records(out)}
  assert len(by_impl) == 10
  assert by_impl[("needs_a_terabyte", 8)]["status"] == "oom"
  assert "not run" in by_impl[("needs_a_terabyte", 8)]["reason"]
  assert by_impl[("too_slow", 8)]["status"] == "skipped"
  assert "over time budget" in by_impl[("too_slow", 8)]["reason"]
  assert by_impl[("not_installed", 16)]["reason"] == "nothing is installed"
  assert by_impl[("broken", 8)]["status"] == "error"
  assert "TypeError" in by_impl[("broken", 8)]["reason"]


def test_sampled_baselines_are_scaled_and_marked(tmp_path):
  impls = [bench.Implementation("ours", lambda p: lambda x: jnp.sum(x)),
           bench.Implementation("sampled", lambda p: lambda x: jnp.sum(x), sample=lambda p: (2, 10))]
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([_toy("test/toy4", implementations=impls)], preset="small", output=out,
                       gemm_gflops=1.0)
  sampled = [r for r in bench.load_records(out) if r["implementation"] == "sampled"]
  assert all(r["extrapolated_from"] == {"measured": 2, "total": 10} for r in sampled)


def test_partial_last_line_is_ignored_and_trimmed(tmp_path):
  out = tmp_path / "r.jsonl"
  writer = bench.RecordWriter(out)
  writer.write({"benchmark": "b", "implementation": "ours", "params": {"n": 1}, "env": {}})
  with open(out, "ab") as f:
    f.write(b'{"benchmark": "b", "implem')  # a crash in the middle of a write
  assert len(bench.load_records(out)) == 1
  bench.RecordWriter(out).write({"benchmark": "b", "implementation": "x", "params": {},
                                "env": {}})
  lines = out.read_text().splitlines()
  assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_progress_bar_counts_every_row():
  class Stream:
    text = ""
    def write(self, s):
      self.text += s
    def flush(self):
      pass
  stream = Stream()
  progress = _runner.Progress(2, stream, width=4)
  progress.step("a", "1 s")
  progress.step("b", "oom")
  assert "[##..] 1/2 a: 1 s" in stream.text and "[####] 2/2 b: oom" in stream.text


def _bench(*flags, **popen):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench.py"), *flags], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def test_bench_script_resumes_a_killed_run_without_losing_or_repeating(tmp_path):
  out = tmp_path / "knn.jsonl"
  first = _bench("--filter=knn/*", "--sizes=small", f"--output={out}", "--repeats=2")
  deadline = time.time() + 240
  while time.time() < deadline and len(bench.load_records(out)) < 3:
    time.sleep(0.05)
  first.send_signal(signal.SIGKILL)
  first.wait()
  before = bench.load_records(out)
  assert 3 <= len(before)
  second = _bench("--filter=knn/*", "--sizes=small", f"--output={out}", "--repeats=2", "--resume")
  log = second.communicate(timeout=300)[0]
  assert second.returncode == 0, log[-3000:]
  after = bench.load_records(out)
  keys = [bench.record_key(r["benchmark"], r["implementation"], r["params"], r["env"])
          for r in after]
  assert len(keys) == len(set(keys)), "a row was measured twice"
  assert after[: len(before)] == before, "a completed record changed"
  expected = sum(len(b.sizes["small"]) * len(b.implementations)
                 for b in bench.select_benchmarks("knn/*"))
  assert len(after) == expected
  assert f"resumed {len(before)}" in log
  page = out.with_suffix(".md").read_text()
  assert "### knn/mutual" in page and "### knn/precision" in page
