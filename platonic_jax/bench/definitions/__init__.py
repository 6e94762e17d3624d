"""The built-in benchmark definitions. Importing this package registers them all.

  from platonic_jax import bench
  import platonic_jax.bench.definitions  # noqa: F401  (registers knn/*, cka/*, cknna, zoo/*)
  bench.benchmark_names()

`scripts/bench.py` runs them; `scripts/report.py` renders their records.
Each module's docstring gives the command that runs it and what to expect.
"""

from platonic_jax.bench.definitions import cka  # noqa: F401
from platonic_jax.bench.definitions import cknna  # noqa: F401
from platonic_jax.bench.definitions import knn  # noqa: F401
from platonic_jax.bench.definitions import zoo  # noqa: F401
