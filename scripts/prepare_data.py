r"""Prepares the zoo's offline datasets (and checks the standard ones) under a TFDS data dir.

  python scripts/prepare_data.py                          # digits and world
  python scripts/prepare_data.py --datasets=digits,world,world/small,mnist --data_dir=/data/tfds

Our datasets ('digits', 'world', 'world/small') are written offline to
array_record; 'load_dataset' would also prepare them on first use. The
standard ones ('mnist', 'fashion_mnist', 'cifar10') need network access once;
for those this checks they are prepared and otherwise says how to prepare them.
The data dir is --data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets.
"""

import sys
import time

from absl import flags
from absl import logging

from platonic_jax import bench
from platonic_jax import zoo

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["digits", "world"],
                  f"Comma-separated dataset names, among {', '.join(zoo.dataset_names())}.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.register_validator(
    "datasets", lambda names: bool(names) and set(names) <= set(zoo.dataset_names()),
    message=f"expected a non-empty comma-separated subset of {', '.join(zoo.dataset_names())}")


def main(argv):
  bench.reject_arguments(argv)
  logging.set_verbosity(logging.ERROR)  # TFDS warns about every dataset dir it probes
  print(f"data dir: {zoo.resolve_data_dir(FLAGS.data_dir)}")
  for name in FLAGS.datasets:
    start = time.perf_counter()
    try:
      path = zoo.prepare_datasets([name], FLAGS.data_dir)[name]
    except zoo.DatasetNotPreparedError as error:
      sys.exit(f"error: {error}")
    splits = ", ".join(f"{split} {size}" for split, size in zoo.dataset_spec(name).splits.items())
    print(f"{name}: {path} ({splits}) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  bench.run_script(main)
