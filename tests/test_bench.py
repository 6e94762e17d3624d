"""Benchmark registry, runner, records and the bench script (tiny sizes)."""

import dataclasses
import json
import pathlib
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from platonic_jax import bench
from platonic_jax.bench import _runner, _timing
import platonic_jax.bench.definitions  # noqa: F401  (registers the built-in benchmarks)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _toy(name, **overrides):
  impls = overrides.pop("implementations", [
      bench.Implementation("ours", lambda p: lambda x: jnp.sum(x) * p["scale"]),
      bench.Implementation("slow_baseline", lambda p: lambda x: jnp.sum(jnp.sort(x)) * p["scale"]),
  ])
  fields = dict(
      name=name, description="toy", sizes={"small": [{"n": 8, "scale": 2.0},
                                                     {"n": 16, "scale": 2.0}]},
      setup=lambda p: (jnp.arange(p["n"], dtype=jnp.float32),), implementations=impls,
      floor_flops=lambda p: float(p["n"]), alignment=lambda out, p, impl: {"total": out})
  return bench.Benchmark(**{**fields, **overrides})


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


def test_cpu_description_names_family_model_and_vector_unit():
  from platonic_jax.bench import _records
  block = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
           "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
  second = block.replace("processor\t: 0", "processor\t: 1").replace("25", "26")
  assert _records.cpu_description(block + "\n" + second) == "AMD EPYC (family 25 model 17, AVX-512)"
  assert _records.cpu_description(block.replace(" avx512f avx512bw", "")) == (
      "AMD EPYC (family 25 model 17, AVX2)")
  arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n"
  assert _records.cpu_description(arm) is None
  assert _records.cpu_description("model name\t: Some CPU\n") == "Some CPU"


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
  return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench.py"), *flags],
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


class _Stream:
  def __init__(self):
    self.text = ""

  def write(self, s):
    self.text += s

  def flush(self):
    pass


def test_registered_adds_for_the_block_only_and_leaves_nothing_behind():
  before = bench.benchmark_names()
  with bench.registered(_toy("test/temp_a"), _toy("test/temp_b")):
    assert [b.name for b in bench.select_benchmarks("test/temp_*")] == ["test/temp_a",
                                                                        "test/temp_b"]
  assert bench.benchmark_names() == before
  with pytest.raises(RuntimeError, match="inside"):
    with bench.registered(_toy("test/temp_a")):
      raise RuntimeError("inside")
  with pytest.raises(ValueError, match="already registered"):
    with bench.registered(_toy("test/temp_c"), _toy("test/temp_c")):
      pass
  assert bench.benchmark_names() == before


def test_lookup_suggests_names_case_insensitively():
  with pytest.raises(ValueError, match=r"'KNN/Mutual'\. Did you mean 'knn/mutual'"):
    bench.get_benchmark("KNN/Mutual")


def test_presets_are_one_fixed_set():
  with pytest.raises(ValueError, match=r"unknown size presets \['approx'\]"):
    _toy("x", sizes={"small": [{"n": 8, "scale": 1.0}], "approx": []})
  for name in bench.benchmark_names():
    assert set(bench.get_benchmark(name).sizes) == set(bench.PRESETS), name
  approx = [p for p in bench.get_benchmark("knn/precision").sizes["gpu"] if "approx_recall" in p]
  assert approx == [{"n": 262144, "d": 1024, "k": 10, "precision": "highest",
                     "approx_recall": 0.95}]


def test_alignment_is_told_which_implementation_produced_the_output(tmp_path):
  toy = _toy("test/told", alignment=lambda out, p, impl: {"by": len(impl), "total": out})
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([toy], preset="small", output=out, gemm_gflops=1.0, stream=_Stream())
  for r in bench.load_records(out):
    assert r["alignment"]["by"] == len(r["implementation"])


def test_builtin_alignment_hooks_skip_the_gemm_only_rows():
  for name in ("knn/mutual", "cka/linear/biased"):
    benchmark = bench.get_benchmark(name)
    params = benchmark.sizes["small"][0]
    assert benchmark.alignment((1.0, 2.0), params, "gemm_only") == {}
    assert list(benchmark.alignment(0.5, params, "ours").values()) == [0.5]


def test_pallas_row_matches_ours_and_is_not_timed_in_interpret_mode():
  benchmark = bench.get_benchmark("knn/mutual")
  impls = {impl.name: impl for impl in benchmark.implementations}
  params = {"n": 96, "d": 24, "k": 5, "precision": "highest", "devices": 1}
  assert "interpret mode" in impls["pallas"].unavailable(params)  # the tests run on CPU
  a, b = benchmark.setup(params)
  fused = float(impls["pallas"].build(params)(a, b))
  assert fused == pytest.approx(float(impls["ours"].build(params)(a, b)), abs=1e-6)
  assert 0.0 < fused < 1.0


def test_run_prints_rows_and_estimate_first_and_names_implementations_on_resume(tmp_path):
  impls = [bench.Implementation("ours", lambda p: lambda x: jnp.sum(x),
                                work_flops=lambda p: 2e9 * p["n"]),
           bench.Implementation("other", lambda p: lambda x: jnp.sum(x))]
  toy = _toy("test/told2", implementations=impls)
  out, stream = tmp_path / "r.jsonl", _Stream()
  bench.run_benchmarks([toy], preset="small", output=out, repeats=3, gemm_gflops=1000.0,
                       stream=stream)
  first = stream.text.splitlines()[0]
  # ours: (1 warm-up + 3 timed) x 2e9 n / 1e12 s at n = 8 and 16: 0.064 + 0.128 s.
  assert first.startswith("4 rows, 4 to measure (0 already recorded); estimated 0 s of timed "
                          "calls at 1000 GFLOP/s"), first
  assert "2 rows without a work model" in first
  with pytest.raises(ValueError, match=r"unknown implementations \['nope'\]; .* \['other', 'ours'\]"):
    bench.run_benchmarks([toy], preset="small", output=tmp_path / "x.jsonl",
                         implementations=["ours", "nope"], gemm_gflops=1.0, stream=_Stream())
  assert "ETA" in stream.text
  records = bench.load_records(out)
  assert {r["requested_repeats"] for r in records} == {3}
  stream = _Stream()
  bench.run_benchmarks([toy], preset="small", output=out, resume=True, gemm_gflops=1.0,
                       stream=stream)
  assert stream.text.splitlines()[0] == "4 rows, 0 to measure (4 already recorded)"
  for impl in ("ours", "other"):
    for n in (8, 16):
      assert f"test/told2 {impl} {{'n': {n}, 'scale': 2.0}}: already recorded" in stream.text


def test_row_time_estimate_follows_the_timing_rules():
  impl = bench.Implementation("ours", lambda p: None, work_flops=lambda p: p["flops"])
  estimate = lambda flops, budget: _runner.row_seconds(impl, {"flops": flops}, 1.0, repeats=3,
                                                       time_budget=budget)
  assert estimate(1e9, 120.0) == pytest.approx(4.0)  # warm-up + 3 repeats of 1 s
  assert estimate(1e9, 3.5) == pytest.approx(3.0)  # budget allows warm-up + 2
  assert estimate(50e9, 60.0) == pytest.approx(50.0)  # slow: the warm-up is the sample
  assert estimate(200e9, 60.0) == 0.0  # skipped as over budget
  assert _runner.row_seconds(bench.Implementation("x", lambda p: None), {}, 1.0, repeats=3,
                             time_budget=1.0) is None
  # min_time: 0.125 s calls get 16 timed calls to fill 2 s, within the budget.
  assert _runner.row_seconds(impl, {"flops": 0.125e9}, 1.0, repeats=3, time_budget=120.0,
                             min_time=2.0) == pytest.approx(2.125)
  assert _runner.row_seconds(impl, {"flops": 0.125e9}, 1.0, repeats=3, time_budget=1.0,
                             min_time=2.0) == pytest.approx(1.0)  # budget: warm-up + 7


def test_timed_call_count_fills_min_time_within_the_budget():
  count = _runner.timed_call_count
  assert count(0.015625, repeats=5, min_time=0.0, time_budget=100.0) == 5
  assert count(0.015625, repeats=5, min_time=1.0, time_budget=100.0) == 64
  assert count(0.015625, repeats=5, min_time=1.0, time_budget=0.5) == 31
  assert count(0.5, repeats=5, min_time=1.0, time_budget=100.0) == 5  # repeats already fill it
  assert count(30.0, repeats=5, min_time=1.0, time_budget=100.0) == 2
  assert count(0.0, repeats=3, min_time=0.0, time_budget=1.0) == 3


def test_fast_rows_are_timed_for_min_time(tmp_path):
  toy = _toy("test/min_time", implementations=[
      bench.Implementation("ours", lambda p: lambda x: jnp.sum(x))])
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([toy], preset="small", output=out, repeats=3, min_time=0.2,
                       gemm_gflops=1000.0, stream=_Stream())
  for record in bench.load_records(out):
    assert record["requested_repeats"] == 3
    assert record["repeats"] > 3 and len(record["times_s"]) == record["repeats"], record["repeats"]
    assert sum(record["times_s"]) >= 0.2


def test_a_slow_first_call_does_not_cut_min_time_short(tmp_path):
  calls = []

  def build(params):
    def fn(x):
      calls.append(None)
      if len(calls) == 1:
        time.sleep(0.05)  # the warm-up call, 5000x the others
      return x
    return fn

  toy = _toy("test/slow_first", sizes={"small": [{"n": 8, "scale": 1.0}]},
             implementations=[bench.Implementation("ours", build, jit=False)])
  out = tmp_path / "r.jsonl"
  bench.run_benchmarks([toy], preset="small", output=out, repeats=3, min_time=0.1,
                       time_budget=2.0, gemm_gflops=1000.0, stream=_Stream())
  (record,) = bench.load_records(out)
  assert sum(record["times_s"]) >= 0.1, record["repeats"]


def test_timed_calls_go_on_until_min_time_up_to_max_time():
  fn = lambda x: x + 1
  inputs = (jnp.zeros(()),)
  assert len(_timing.timed_calls(fn, inputs, repeats=3)) == 3
  times = _timing.timed_calls(fn, inputs, repeats=3, min_time=0.05)
  assert len(times) > 3 and sum(times) >= 0.05
  times = _timing.timed_calls(fn, inputs, repeats=3, min_time=60.0, max_time=0.5)
  assert len(times) > 3 and sum(times[:-1]) <= 0.5  # each call after the 3rd started within it
  assert len(_timing.timed_calls(fn, inputs, repeats=5, min_time=60.0, max_time=0.0)) == 5


def test_progress_eta_from_the_rows_measured_so_far():
  now = [0.0]
  stream = _Stream()
  progress = _runner.Progress(4, stream, width=4, clock=lambda: now[0])
  progress.step("resumed", "already recorded", measured=False)
  assert "ETA" not in stream.text
  now[0] = 10.0
  progress.step("a", "1 s")
  assert "2/4 a: 1 s (elapsed 10 s, ETA 20 s)" in stream.text
  now[0] = 130.0
  progress.step("b", "2 s")
  assert "3/4 b: 2 s (elapsed 2 min 10 s, ETA 1 min 05 s)" in stream.text


def test_devices_override_the_presets_and_shard_the_same_scores(tmp_path):
  mutual = bench.get_benchmark("knn/mutual")
  rows = _runner.plan([mutual, bench.get_benchmark("knn/precision")], "small", devices=2)
  assert [p["devices"] for b, p in rows] == [2, 2] and {b.name for b, _ in rows} == {"knn/mutual"}
  with pytest.raises(ValueError, match="takes a `devices` parameter"):
    _runner.plan([bench.get_benchmark("knn/precision")], "small", devices=2)
  with pytest.raises(ValueError, match=r"devices=64 but 8 cpu devices are present \(on CPU: XLA_"):
    _runner.plan([mutual], "small", devices=64)
  features = np.random.default_rng(0).standard_normal((2, 64, 16)).astype(np.float32)
  one_row = dataclasses.replace(  # ours of knn/mutual, on inputs that need no compile
      mutual, sizes={"small": [{**mutual.sizes["small"][0], "n": 64, "d": 16}]},
      setup=lambda p: (jnp.asarray(features[0]), jnp.asarray(features[1])))
  scores = {}
  for devices in (1, 2):
    out = tmp_path / f"d{devices}.jsonl"
    bench.run_benchmarks([one_row], preset="small", output=out, devices=devices,
                         implementations=["ours"], repeats=1, gemm_gflops=100.0,
                         stream=_Stream())
    (record,) = bench.load_records(out)
    assert record["status"] == "ok" and record["params"]["devices"] == devices
    scores[devices] = record["alignment"]["mutual_knn"]
  np.testing.assert_allclose(scores[2], scores[1], atol=1e-6)
