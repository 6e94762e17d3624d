r"""Trains a model zoo: every member of a preset, checkpointed and resumable.

  python scripts/train_zoo.py --zoo=default --zoo_dir=runs/zoo
  python scripts/train_zoo.py --zoo=default --zoo_dir=runs/zoo --filter='world-*' --seeds=0
  python scripts/train_zoo.py --zoo=tiny --zoo_dir=/tmp/zoo --steps=20
  python scripts/train_zoo.py --zoo=gpu --list

Each member `<zoo_dir>/<member>/` gets orbax checkpoints at its checkpoint
steps (step 0 is the random init) and a `manifest.json` with held-out
accuracies, losses and training time, rewritten after every checkpoint.
Rerunning the same command skips complete members and resumes a killed run
from each member's last checkpoint (parameters, optimiser state, data
position). The flags below override the preset (`--steps` rescales the
checkpoint steps in proportion); a member directory trained with another
schedule is refused. Batches are sharded over all devices (`--devices`).

Expected: `--zoo=default` (48 members) takes several minutes on 2 CPU cores;
see the preset docstrings (`--list` prints them) for each preset's timing.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from platonic_jax import bench
from platonic_jax import zoo

FLAGS = flags.FLAGS
flags.DEFINE_enum("zoo", "default", zoo.zoo_names(), "Zoo preset.")
flags.DEFINE_string("zoo_dir", "runs/zoo", "Output directory, one subdirectory per member.")
flags.DEFINE_string("filter", None, "Comma-separated globs over member names, e.g. 'digits-*'.")
flags.DEFINE_list("families", None, "Only these encoder families (e.g. mlp,cnn).")
flags.DEFINE_list("seeds", None, "Only these seeds (comma-separated ints).")
flags.DEFINE_list("widths", None, "Only these widths (comma-separated ints).")
flags.DEFINE_integer("steps", None, "Training steps of every member (default: the preset's).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the preset's).",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Peak learning rate (default: the preset's).",
                   lower_bound=0.0)
flags.DEFINE_string("data_dir", None, "Dataset directory (default: $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets); datasets are prepared there on first use.")
flags.DEFINE_integer("devices", None, "Data-parallel over the first N devices (default: all).",
                     lower_bound=1)
flags.DEFINE_bool("vmap_seeds", False, "Train members that differ only in seed together "
                  "under vmap (slower for convolutions on CPU).")
flags.DEFINE_bool("list", False, "Print the preset's description and members, then exit.")


def _ints(name: str, values: list[str] | None) -> list[int] | None:
  if values is None:
    return None
  try:
    return [int(v) for v in values]
  except ValueError:
    raise app.UsageError(f"--{name} takes comma-separated integers, got {','.join(values)!r}")


def main(argv):
  bench.reject_arguments(argv)
  logging.set_verbosity(logging.WARNING)
  devices = jax.devices()
  if FLAGS.devices is not None:
    if FLAGS.devices > len(devices):
      raise app.UsageError(f"--devices={FLAGS.devices} but only {len(devices)} are available")
    devices = devices[:FLAGS.devices]
  try:
    spec = zoo.override_zoo(
        zoo.zoo_spec(FLAGS.zoo), member_filter=FLAGS.filter, families=FLAGS.families,
        seeds=_ints("seeds", FLAGS.seeds), widths=_ints("widths", FLAGS.widths),
        steps=FLAGS.steps, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate)
    if FLAGS.list:
      print(spec.description)
      for member in spec.members:
        print(f"{member.name}  steps {member.steps}  checkpoints {list(member.checkpoint_steps)}")
      return
    manifests = zoo.train_zoo(spec, FLAGS.zoo_dir, devices=devices, vmap_seeds=FLAGS.vmap_seeds,
                              data_dir=FLAGS.data_dir, log=lambda line: print(line, flush=True))
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  seconds = sum(m["train_seconds"] for m in manifests)
  print(f"{len(manifests)} members complete in {FLAGS.zoo_dir} "
        f"(training time recorded in the manifests: {seconds:.0f} s)")


if __name__ == "__main__":
  bench.run_script(main)
