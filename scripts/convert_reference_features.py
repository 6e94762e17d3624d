r"""Converts the reference's `.pt` feature files into pickle-free feature-store entries.

  pip install torch        # your own torch; platonic_jax itself never imports it
  python scripts/convert_reference_features.py --inputs=results/features/wit_1024/ \
      --output_dir=feats/
  python scripts/measure_alignment.py --inputs=feats/ --output_dir=runs/wit

The reference (github.com/minyoungg/platonic-rep, `extract_features.py`)
saves one `.pt` dict per model: `feats` `[N, L, D]` and `num_params`, plus
`mask`, `loss` and `bpb` for language models. Each file is read with
`torch.load(path, map_location='cpu', weights_only=True)` (no arbitrary
unpickling) and written as `<output_dir>/<name>.safetensors` (tensors
`layer_000`, ...) with a JSON sidecar holding `num_params`, `loss`, `bpb`
(the `mask` was already applied by the reference's pooling and is dropped).
"""

import pathlib

from absl import app
from absl import flags

from platonic_jax import bench
from platonic_jax import study
from platonic_jax import zoo

FLAGS = flags.FLAGS
flags.DEFINE_list("inputs", None, "Comma-separated .pt files or folders of them.")
flags.DEFINE_string("output_dir", None, "Where the safetensors + JSON entries are written.")
flags.mark_flags_as_required(["inputs", "output_dir"])


def _files(inputs) -> list[pathlib.Path]:
  files = []
  for raw in inputs:
    path = pathlib.Path(raw)
    if path.is_dir():
      found = sorted(path.glob("*.pt"))
      if not found:
        raise app.UsageError(f"directory {path} holds no .pt file.")
      files.extend(found)
    elif path.is_file():
      files.append(path)
    else:
      raise app.UsageError(f"--inputs: {path} does not exist.")
  return files


def main(argv):
  bench.reject_arguments(argv)
  try:
    import torch  # pylint: disable=g-import-not-at-top - the user's own, only here
  except ImportError:
    raise app.UsageError("this converter needs torch (pip install torch); the rest of "
                         "platonic_jax does not.") from None
  for path in _files(FLAGS.inputs):
    try:
      contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
      raise app.UsageError(f"cannot read {path} with torch.load(weights_only=True): "
                           f"{type(error).__name__}: {error}") from None
    if isinstance(contents, dict):
      contents = {key: value.float().numpy() if torch.is_tensor(value) and value.is_floating_point()
                  else value.numpy() if torch.is_tensor(value) else value
                  for key, value in contents.items()}
    try:
      feature_set = study.from_reference_dict(path.stem, contents)
      written = zoo.save_layer_features(FLAGS.output_dir, feature_set.name, feature_set.layers,
                                        feature_set.metadata)
    except ValueError as error:
      raise app.UsageError(f"{path}: {error}") from None
    print(f"{path} -> {written} ({len(feature_set.layers)} layers, "
          f"N = {feature_set.num_samples})")


if __name__ == "__main__":
  bench.run_script(main)
