"""The alignment study: statistics (permutation nulls, bootstrap intervals),
bring-your-own features, the suite that runs it end to end, and its report."""

# -- statistics --
# -- inputs --
# -- suite and report --
# -- colour experiment --
