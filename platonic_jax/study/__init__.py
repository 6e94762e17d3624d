"""The alignment study: statistics (permutation nulls, bootstrap intervals),
bring-your-own features, the suite that runs it end to end, and its report."""

# -- statistics --
from platonic_jax.study._stats import BootstrapInterval
from platonic_jax.study._stats import LayerSearchNull
from platonic_jax.study._stats import PermutationTest
from platonic_jax.study._stats import bootstrap_interval
from platonic_jax.study._stats import layer_search_null
from platonic_jax.study._stats import permutation_test
from platonic_jax.study._stats import permutations
from platonic_jax.study._stats import resamples
# -- inputs --
# -- suite and report --
# -- colour experiment --
