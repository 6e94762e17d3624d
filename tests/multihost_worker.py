"""One process of the multi-host check in test_multihost.py (not a test module itself).

  python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Joins JAX's distributed runtime on localhost with CPU collectives over gloo
and 2 CPU devices per process, builds the same data in every process, and
writes the sharded and the single-process results to OUT_DIR/PROCESS_ID.json.
"""

import json
import pathlib
import sys

import jax

process_id, num_processes, port, out_dir = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            pathlib.Path(sys.argv[4]))
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 2)
jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                           num_processes=num_processes, process_id=process_id)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import platonic_jax as pj  # noqa: E402

N, DA, DB, K = 203, 12, 7, 6  # N not divisible by the 4 global devices: exercises padding
rng = np.random.default_rng(0)
a_host = rng.standard_normal((N, DA)).astype(np.float32)
b_host = (a_host[:, :DB] + rng.standard_normal((N, DB))).astype(np.float32)

mesh = Mesh(np.array(jax.devices()), ("data",))
rows = NamedSharding(mesh, PartitionSpec("data"))


def global_array(host):
  """A global array whose row blocks live on the devices of both processes."""
  padded = -(-host.shape[0] // mesh.size) * mesh.size
  full = np.pad(host, ((0, padded - host.shape[0]), (0, 0)))
  return jax.make_array_from_callback(full.shape, rows, lambda index: full[index])[:N]


def scalar(x):
  """A replicated scalar result: every process holds a copy."""
  assert x.is_fully_replicated
  return float(x.addressable_data(0))


a, b = global_array(a_host), global_array(b_host)
local = jax.local_devices()[0]
a_local, b_local = jax.device_put(a_host, local), jax.device_put(b_host, local)

result = {
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "knn_sharded": multihost_utils.process_allgather(pj.knn(a, K, mesh=mesh), tiled=True)
                   .tolist(),
    "knn_single": np.asarray(pj.knn(a_local, K)).tolist(),
    "mutual_knn_sharded": scalar(pj.mutual_knn(a, b, K, mesh=mesh)),
    "mutual_knn_single": float(pj.mutual_knn(a_local, b_local, K)),
}
for unbiased in (False, True):
  tag = "unbiased_cka" if unbiased else "cka"
  result[tag + "_sharded"] = scalar(pj.cka(a, b, unbiased=unbiased, mesh=mesh))
  result[tag + "_single"] = float(pj.cka(a_local, b_local, unbiased=unbiased))

# The same on a mesh with explicit axes (jax.make_mesh's default), inputs built from each
# process's own rows and passed pre-sharded, without `mesh=`: computed where they live.
explicit = jax.make_mesh((jax.device_count(),), ("data",))
N_EXPLICIT = 200  # explicit shardings divide evenly
per_process = N_EXPLICIT // num_processes


def explicit_array(host):
  mine = host[process_id * per_process:(process_id + 1) * per_process]
  return jax.make_array_from_process_local_data(
      NamedSharding(explicit, PartitionSpec("data")), mine, (N_EXPLICIT, host.shape[1]))


ae, be = explicit_array(a_host), explicit_array(b_host)
ae_local, be_local = (jax.device_put(x[:N_EXPLICIT], local) for x in (a_host, b_host))
result["explicit_knn_sharded"] = multihost_utils.process_allgather(pj.knn(ae, K),
                                                                   tiled=True).tolist()
result["explicit_knn_single"] = np.asarray(pj.knn(ae_local, K)).tolist()
for name in ("mutual_knn", "cknna", "unbiased_cka"):
  hyper = {"k": K} if name != "unbiased_cka" else {}
  result[f"explicit_{name}_sharded"] = scalar(pj.measure(name, ae, be, **hyper))
  result[f"explicit_{name}_single"] = float(pj.measure(name, ae_local, be_local, **hyper))

(out_dir / f"{process_id}.json").write_text(json.dumps(result))
jax.distributed.shutdown()
