"""Registered benchmark definitions. Importing this package registers them all.

Run them with `scripts/bench.py`; render records with `scripts/report.py`.
"""

from benchmarks import cka  # noqa: F401
from benchmarks import cknna  # noqa: F401
from benchmarks import knn  # noqa: F401
from benchmarks import zoo  # noqa: F401
