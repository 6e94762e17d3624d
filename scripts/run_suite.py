r"""The study end to end: datasets, zoo, features, alignment with nulls, kernel timings, report.

  python scripts/run_suite.py                                   # the default zoo, 2 CPUs
  python scripts/run_suite.py --output_dir=runs/suite-gpu --zoo=gpu --num_examples=4096
  python scripts/run_suite.py --metrics=mutual_knn --num_permutations=100 --notime_kernels

Offline on a fresh machine it prepares the datasets (digits, world), trains
the zoo preset (or reuses it), extracts every layer of every member at every
checkpoint (step 0 = random init) with the raw inputs and the world's true
latent as baselines, measures alignment (best layer pair with the
layer-search null, last-layer score with its permutation null, half-sampling
intervals), times the kernels through the benchmark registry, and writes
under --output_dir:

  report.md          the five questions: tables, rank correlations, findings
  figures/*.png      heatmaps, alignment against accuracy and size, bins, steps
  records.jsonl      one fsynced alignment record per (metric, pair)
  tables/*.md        every pair of every comparison with its nulls and intervals
  bench.jsonl, .md   kernel timings
  suite.json         configuration, comparisons, stage times
  zoo/, features/    the trained zoo and its feature store

Rerun the same command to reuse what is done; a killed run resumes (members,
feature entries and alignment records already written are skipped).
With several devices, training and extraction shard their batches and the
kernel timings run sharded.
"""

from absl import app, flags, logging

import platonic_jax as pj
from platonic_jax import bench, study, zoo

FLAGS = flags.FLAGS
_DEFAULT = study.SuiteConfig()
flags.DEFINE_enum("zoo", "default", zoo.zoo_names(), "Zoo preset to train and measure.")
flags.DEFINE_string("output_dir", str(_DEFAULT.output_dir), "The results folder.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets); datasets are prepared there on first use.")
flags.DEFINE_string("zoo_dir", None, "Where the zoo is trained (default: <output_dir>/zoo).")
flags.DEFINE_list("metrics", list(_DEFAULT.metrics), "Registered metric names.")
flags.DEFINE_integer("k", _DEFAULT.k, "Neighbours of the kNN metrics.", lower_bound=1)
flags.DEFINE_integer("num_examples", _DEFAULT.num_examples, "N: test samples per dataset "
                     "(capped at the split's size; digits has 360).", lower_bound=1)
flags.DEFINE_integer("num_permutations", _DEFAULT.num_permutations, "Permutations of each null.",
                     lower_bound=1)
flags.DEFINE_integer("num_resamples", _DEFAULT.num_resamples, "Half-samples of each interval.",
                     lower_bound=1)
flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed of permutations, half-samples and bootstraps.",
                     lower_bound=0)
flags.DEFINE_float("alpha", _DEFAULT.alpha, "Scores with p >= alpha are marked as not "
                   "separating from their null.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("time_kernels", _DEFAULT.time_kernels, "Time the kernels through the "
                  "benchmark registry (results in bench.jsonl / bench.md).")
flags.DEFINE_string("bench_filter", _DEFAULT.bench_filter, "Benchmark name globs to time.")
flags.DEFINE_enum("bench_preset", _DEFAULT.bench_preset, bench.PRESETS, "Benchmark sizes.")
flags.DEFINE_bool("small_world", False, "Read the world dataset's small variant (world/small: "
                  "2,000 / 500 samples) for a quick run.")


def _metrics(names) -> bool:
  if not names:
    raise flags.ValidationError("--metrics is empty; name at least one metric.")
  for name in names:
    try:
      pj.get_metric(name)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
  return True


flags.register_validator("metrics", _metrics)


def main(argv):
  bench.reject_arguments(argv)
  logging.set_verbosity(logging.WARNING)
  try:
    config = study.SuiteConfig(
        zoo=FLAGS.zoo, output_dir=FLAGS.output_dir, data_dir=FLAGS.data_dir,
        zoo_dir=FLAGS.zoo_dir, metrics=tuple(FLAGS.metrics), k=FLAGS.k,
        num_examples=FLAGS.num_examples, num_permutations=FLAGS.num_permutations,
        num_resamples=FLAGS.num_resamples, seed=FLAGS.seed, alpha=FLAGS.alpha,
        time_kernels=FLAGS.time_kernels, bench_filter=FLAGS.bench_filter,
        bench_preset=FLAGS.bench_preset,
        dataset_map={"world": "world/small"} if FLAGS.small_world else {})
    result = study.run_suite(config)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  print(f"report: {result.report}")
  print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.stage_seconds.items()))


if __name__ == "__main__":
  bench.run_script(main)
