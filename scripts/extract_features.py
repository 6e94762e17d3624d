r"""Every layer's features of every member and checkpoint of a trained zoo.

For each member of `--zoo_dir` (and each checkpoint chosen by `--steps`),
restores the encoder, streams the first `--num_examples` examples of
`--split` through it in batches of `--batch_size` (split over all devices
with `--data_parallel`), and writes every layer's pooled features to the
feature store (safetensors + JSON sidecar):

  <output_dir>/<split>/<member>/step_000300.safetensors
  <output_dir>/<split>/raw-<dataset>-<modality>/step_000000.safetensors  (raw inputs)

Entries already written for the same samples are skipped, so a killed run
resumes. Load them with `platonic_jax.zoo.load_layer_features`.

  python scripts/extract_features.py --zoo_dir=runs/zoo --num_examples=1024
"""

from absl import app
from absl import flags
import jax

from platonic_jax import bench
from platonic_jax import zoo

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo_dir", None, "Trained zoo: member directories with manifest.json.")
flags.DEFINE_list("members", ["all"], "Member names or shell globs, comma separated; 'all'.")
flags.DEFINE_string("steps", "all", "Checkpoint steps: 'all', 'last', or comma-separated ints.")
flags.DEFINE_string("split", "test", "Dataset split to extract.")
flags.DEFINE_integer("num_examples", 1024, "First N examples of the split; 0: all.", lower_bound=0)
flags.DEFINE_integer("batch_size", 256, "Rows per forward pass (all devices together).",
                     lower_bound=1)
flags.DEFINE_string("output_dir", None, "Feature store root; default: <zoo_dir>/features.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_bool("raw_baseline", True, "Also write the raw inputs of each dataset and "
                  "modality as a baseline member.")
flags.DEFINE_bool("data_parallel", True, "Split each batch over every device.")
flags.mark_flag_as_required("zoo_dir")


def _steps(text: str):
  if text in ("all", "last"):
    return text
  try:
    return [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    raise app.UsageError(f"--steps must be 'all', 'last' or comma-separated ints, got "
                         f"{text!r}.") from None


def main(argv):
  bench.reject_arguments(argv)
  mesh = jax.make_mesh((jax.device_count(),), ("data",)) if FLAGS.data_parallel else None
  try:
    zoo.extract_zoo_features(
        FLAGS.zoo_dir, FLAGS.output_dir or f"{FLAGS.zoo_dir}/features",
        members=FLAGS.members, steps=_steps(FLAGS.steps), split=FLAGS.split,
        num_examples=FLAGS.num_examples or None, batch_size=FLAGS.batch_size, mesh=mesh,
        raw_baseline=FLAGS.raw_baseline, data_dir=FLAGS.data_dir)
  except ValueError as error:
    raise app.UsageError(str(error)) from None


if __name__ == "__main__":
  bench.run_script(main)
