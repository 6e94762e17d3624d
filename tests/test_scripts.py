"""Each command-line entry point, run end to end on tiny data."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script(name, *flags):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *flags], env=env,
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
