"""The alignment study: statistics (permutation nulls, bootstrap intervals),
bring-your-own features, the suite that runs it end to end, and its report."""

# -- statistics --
from platonic_jax.study._stats import BootstrapInterval
from platonic_jax.study._stats import LayerSearchNull
from platonic_jax.study._stats import PermutationTest
from platonic_jax.study._stats import bootstrap_interval
from platonic_jax.study._stats import iter_zoo_search_nulls
from platonic_jax.study._stats import layer_search_null
from platonic_jax.study._stats import permutation_test
from platonic_jax.study._stats import permutations
from platonic_jax.study._stats import resamples
# -- inputs --
from platonic_jax.study._alignment import DEFAULT_METRICS
from platonic_jax.study._alignment import AlignmentMatrix
from platonic_jax.study._alignment import alignment_matrix
from platonic_jax.study._alignment import matrix_json
from platonic_jax.study._alignment import measure_feature_sets
from platonic_jax.study._alignment import measure_pair
from platonic_jax.study._alignment import prepared_layers
from platonic_jax.study._alignment import write_json_atomic
from platonic_jax.study._alignment import write_text_atomic
from platonic_jax.study._inputs import FeatureSet
from platonic_jax.study._inputs import from_reference_dict
from platonic_jax.study._inputs import load_feature_sets
# -- suite and report --
from platonic_jax.study._report import ATTRIBUTES
from platonic_jax.study._report import NOT_SEPARATED
from platonic_jax.study._report import CompetenceBin
from platonic_jax.study._report import MemberAlignment
from platonic_jax.study._report import MemberInfo
from platonic_jax.study._report import RankCorrelation
from platonic_jax.study._report import alignment_markdown
from platonic_jax.study._report import binned_alignment
from platonic_jax.study._report import member_alignment
from platonic_jax.study._report import member_info
from platonic_jax.study._report import members_markdown
from platonic_jax.study._report import matrix_markdown
from platonic_jax.study._report import pairs_markdown
from platonic_jax.study._report import plot_alignment_vs
from platonic_jax.study._report import plot_binned
from platonic_jax.study._report import plot_heatmap
from platonic_jax.study._report import rank_correlation
from platonic_jax.study._report import write_zoo_report
from platonic_jax.study._report import zoo_markdown
# -- colour experiment --
from platonic_jax.study._colour import COLOUR_METRICS
from platonic_jax.study._colour import ColourExperiment
from platonic_jax.study._colour import bag_of_words_features
from platonic_jax.study._colour import colour_experiment
from platonic_jax.study._colour import colour_findings
from platonic_jax.study._colour import colour_markdown
from platonic_jax.study._colour import default_colour_model_dir
from platonic_jax.study._colour import perceptual_kernel_features
from platonic_jax.study._colour import srgb_to_cielab
from platonic_jax.study._colour import write_colour_report
from platonic_jax.study._colour import xkcd_colours
