"""platonic_jax: representational alignment at very large sample counts, in JAX.

Every metric is a pure function of two feature matrices `a: [N, Da]` and
`b: [N, Db]` (row i of both describes the same sample) returning a scalar
`jax.Array`; hyper-parameters are static, so each works under `jax.jit` and
`jax.vmap`.
"""

from platonic_jax._cka import cka
from platonic_jax._cka import unbiased_cka
from platonic_jax._cknna import cknna
from platonic_jax._cknna import cknna_from_indices
from platonic_jax._knn import knn
from platonic_jax._knn_metrics import cycle_knn
from platonic_jax._knn_metrics import cycle_knn_from_indices
from platonic_jax._knn_metrics import edit_distance_knn
from platonic_jax._knn_metrics import edit_distance_knn_from_indices
from platonic_jax._knn_metrics import lcs_knn
from platonic_jax._knn_metrics import lcs_knn_from_indices
from platonic_jax._knn_metrics import mutual_knn
from platonic_jax._knn_metrics import mutual_knn_from_indices
from platonic_jax._layers import LayerGrid
from platonic_jax._layers import ZooAlignment
from platonic_jax._layers import layer_grid
from platonic_jax._layers import zoo_alignment
from platonic_jax._knn import Neighbours
from platonic_jax._prepare import prepare_features
from platonic_jax._rbf import median_sigma
from platonic_jax._registry import MetricInfo
from platonic_jax._registry import get_metric
from platonic_jax._registry import measure
from platonic_jax._registry import metric_names
from platonic_jax._registry import register_metric
from platonic_jax._registry import registered_metric
from platonic_jax._svcca import svcca
from platonic_jax._svcca import svcca_correlations
from platonic_jax._validation import checked

__version__ = "0.1.0"

__all__ = (
    "LayerGrid",
    "MetricInfo",
    "Neighbours",
    "ZooAlignment",
    "checked",
    "cka",
    "cknna",
    "cknna_from_indices",
    "cycle_knn",
    "cycle_knn_from_indices",
    "edit_distance_knn",
    "edit_distance_knn_from_indices",
    "get_metric",
    "knn",
    "layer_grid",
    "lcs_knn",
    "lcs_knn_from_indices",
    "measure",
    "median_sigma",
    "metric_names",
    "mutual_knn",
    "mutual_knn_from_indices",
    "prepare_features",
    "register_metric",
    "registered_metric",
    "svcca",
    "svcca_correlations",
    "unbiased_cka",
    "zoo_alignment",
)
