"""Two processes on localhost (2 CPU devices each, gloo collectives) agree with one."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_process_sharded_knn_and_cka_match_single_process(tmp_path):
  """Auto-axis mesh with `mesh=`, and an explicit-axis mesh with pre-sharded inputs."""
  port = str(_free_port())
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  workers = [
      subprocess.Popen([sys.executable, str(ROOT / "tests" / "multihost_worker.py"), str(i), "2",
                        port, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]
  logs = []
  try:
    for w in workers:
      logs.append(w.communicate(timeout=300)[0])
  finally:
    for w in workers:
      w.kill()
  for w, log in zip(workers, logs):
    assert w.returncode == 0, log[-4000:]
  for i in range(2):
    r = json.loads((tmp_path / f"{i}.json").read_text())
    assert r["process_count"] == 2 and r["device_count"] == 4
    np.testing.assert_array_equal(r["knn_sharded"], r["knn_single"])
    for name in ("mutual_knn", "cka", "unbiased_cka"):
      np.testing.assert_allclose(r[name + "_sharded"], r[name + "_single"], atol=1e-5,
                                 err_msg=name)
    np.testing.assert_array_equal(r["explicit_knn_sharded"], r["explicit_knn_single"])
    for name in ("mutual_knn", "cknna", "unbiased_cka"):
      np.testing.assert_allclose(r[f"explicit_{name}_sharded"], r[f"explicit_{name}_single"],
                                 atol=1e-5, err_msg=f"explicit axes: {name}")
