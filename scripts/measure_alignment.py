r"""Alignment between your own feature sets, with nulls and intervals.

  python scripts/measure_alignment.py --inputs=feats/vit.npz,feats/bert.safetensors \
      --output_dir=runs/alignment
  python scripts/measure_alignment.py --inputs=feats/ --metrics=mutual_knn,cka --k=20

Each input is a file (`.npy` `[N, D]` or `[L, N, D]`; `.npz` or safetensors
with one array per layer or stacked layers; a feature-store entry) or a folder
of such files, one model per file, all on the same N samples (row i is the
same sample everywhere). The reference's `.pt` files convert with
`scripts/convert_reference_features.py`.

For every metric and pair of models: the layer grid, the best-layer score
beside the null of the layer search (the same maximum under shuffled
correspondence), the last-layer score beside its permutation null, and
half-sampling intervals for both. Writes, under --output_dir:

  records.jsonl    one fsynced JSON line per measurement; a rerun skips those done
  alignment.json   per metric, the [M, M] matrices (scores, best layers, intervals, nulls)
  report.md        the tables (also printed), with a heatmap per metric under figures/
"""

import pathlib

from absl import app
from absl import flags

import platonic_jax as pj
from platonic_jax import bench
from platonic_jax import study

FLAGS = flags.FLAGS
flags.DEFINE_list("inputs", None, "Comma-separated feature files or folders (two or more "
                  "models in total).")
flags.DEFINE_list("metrics", list(study.DEFAULT_METRICS), "Registered metric names.")
flags.DEFINE_integer("k", 10, "Neighbours for the kNN metrics.", lower_bound=1)
flags.DEFINE_integer("num_permutations", 100, "Permutations of each null.", lower_bound=1)
flags.DEFINE_integer("num_resamples", 100, "Half-samples of each interval.", lower_bound=1)
flags.DEFINE_float("confidence", 0.95, "Interval coverage.", lower_bound=1e-6, upper_bound=0.999999)
flags.DEFINE_integer("seed", 0, "Seed of the permutations and half-samples.", lower_bound=0)
flags.DEFINE_bool("prepare", True, "Clamp at the 0.95 quantile of |x| and L2-normalise rows "
                  "first, as the reference does.")
flags.DEFINE_float("alpha", 0.05, "Scores with p >= alpha are marked as not separating from "
                   "their null.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("output_dir", "runs/alignment", "Where records, matrices and report go.")
flags.mark_flag_as_required("inputs")


def _metrics(names) -> bool:
  for name in names:
    try:
      pj.get_metric(name)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
  if not names:
    raise flags.ValidationError("--metrics is empty; name at least one metric.")
  return True


flags.register_validator("metrics", _metrics)


def main(argv):
  bench.reject_arguments(argv)
  output = pathlib.Path(FLAGS.output_dir)
  try:
    sets = study.load_feature_sets(FLAGS.inputs)
    print(f"{len(sets)} feature sets, N = {sets[0].num_samples}: "
          + ", ".join(f"{s.name} ({len(s.layers)} layers)" for s in sets))
    records = study.measure_feature_sets(
        sets, FLAGS.metrics, k=FLAGS.k, num_permutations=FLAGS.num_permutations,
        num_resamples=FLAGS.num_resamples, confidence=FLAGS.confidence, seed=FLAGS.seed,
        prepare=FLAGS.prepare, records_path=output / "records.jsonl",
        progress=lambda what: print(f"measuring {what}", flush=True))
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  members = [s.name for s in sets]
  matrices = {metric: study.alignment_matrix(records, metric, members) for metric in FLAGS.metrics}
  study.write_json_atomic(output / "alignment.json",
                          {metric: study.matrix_json(m) for metric, m in matrices.items()})
  figures = {metric: study.plot_heatmap(m, output / "figures" / f"{metric}_heatmap.png",
                                        alpha=FLAGS.alpha).relative_to(output).as_posix()
             for metric, m in matrices.items()}
  page = study.alignment_markdown(records, alpha=FLAGS.alpha, figures=figures,
                                  title="Alignment of " + ", ".join(members))
  study.write_text_atomic(output / "report.md", page)
  print(page)
  print(f"records.jsonl, alignment.json, report.md and figures/ in {output}")


if __name__ == "__main__":
  bench.run_script(main)
