"""Each command-line entry point, run end to end on tiny data."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script(name, *flags):
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *flags],
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def test_demo_prints_every_metric_inside_its_range():
  out = run_script("demo.py", "--n=120", "--da=12", "--db=20", "--k=5")
  rows = [line for line in out.splitlines() if line.startswith("| ") and "metric" not in line]
  names = {row.split("|")[1].strip() for row in rows}
  assert {"mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
          "cknna", "svcca"} <= names
  for row in rows:
    cells = [c.strip() for c in row.split("|")[1:-1]]
    value = float(cells[1])
    low, high = (float(v) for v in cells[2].strip("[]").split(","))
    assert low <= value <= high, row


def run_failing(name, *flags):
  """Runs a script that must fail: (exit status, stderr)."""
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *flags],
                        capture_output=True, text=True, timeout=120)
  return done.returncode, done.stderr


def test_help_exits_zero_and_bad_flags_are_one_line_errors():
  help_text = run_script("bench.py", "--help")
  assert "--sizes: <small|cpu|gpu>" in help_text and "approx" not in help_text
  assert "--devices" in help_text
  for name, flags, message in (
      ("bench.py", ("--sizes=huge",), "flag --sizes=huge: value should be one of <small|cpu|gpu>"),
      ("bench.py", ("--filter=nomatch/*",), "no benchmark matches 'nomatch/*'; registered:"),
      ("bench.py", ("--list", "extra"), "unexpected positional arguments ['extra']"),
      ("demo.py", ("extra",), "unexpected positional arguments ['extra']")):
    status, stderr = run_failing(name, *flags)
    assert status != 0, (name, flags)
    assert message in stderr and "Traceback" not in stderr, stderr
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 2, stderr


def test_metric_name_and_keyword_errors_point_to_the_right_spelling():
  import numpy as np  # pylint: disable=import-outside-toplevel
  import platonic_jax as pj  # pylint: disable=import-outside-toplevel
  a = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
  with pytest.raises(ValueError, match=r"unknown metric 'CKA'\. Did you mean 'cka'"):
    pj.measure("CKA", a, a)
  with pytest.raises(ValueError, match=r"unknown metric 'Mutual-KNN'\. Did you mean 'mutual_knn'"):
    pj.measure("Mutual-KNN", a, a)
  with pytest.raises(ValueError, match=r"topk=k, kernel_metric=kernel, rbf_sigma=sigma"):
    pj.measure("cka", a, a, top_k=3)


def test_build_notes_name_the_test_files_the_device_check_runs():
  script = (ROOT / "scripts" / "device_bench.sh").read_text()
  check = script[script.index("python3 -m pytest"):]
  check = check[:check.index(">")]
  files = re.findall(r"tests/test_\w+\.py", check)
  notes = (ROOT / "BUILD_NOTES.md").read_text()
  described = notes[notes.index("`scripts/device_bench.sh` ran the"):]
  described = described[:described.index("on the GPU")]
  assert len(files) == 3 and sorted(re.findall(r"tests/test_\w+\.py", described)) == sorted(files)
  for file in files:
    assert (ROOT / file).is_file(), file


def test_build_notes_say_how_to_benchmark_over_several_devices():
  notes = (ROOT / "BUILD_NOTES.md").read_text()
  section = notes[notes.index("## Benchmarks over several devices"):]
  section = section[:section.index("\n## ", 1)]
  assert "--xla_force_host_platform_device_count=8" in section and "--devices=8" in section
  assert "`devices`" in section
