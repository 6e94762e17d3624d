"""Every ```python block of README.md runs as pasted, in order, in one namespace.

The blocks may use the arrays a reader would bring: `feats_model_a`,
`feats_model_b` ([N, D] features of two models on the same N samples) and
`a_layers`, `b_layers` ([L, N, D] per-layer features). Sizes are tiny so the
whole README runs in seconds (conftest gives the process 8 CPU devices).
"""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
N, D, LAYERS = 48, 12, 3


def python_blocks(markdown: str) -> list[str]:
  return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", markdown, flags=re.S | re.M)


def readers_arrays() -> dict:
  rng = np.random.default_rng(0)
  shared = rng.standard_normal((N, D))

  def view(width):
    return (shared @ rng.standard_normal((D, width)) + rng.standard_normal((N, width))).astype(
        np.float32)

  return {"feats_model_a": view(D), "feats_model_b": view(D + 4),
          "a_layers": np.stack([view(D) for _ in range(LAYERS)]),
          "b_layers": np.stack([view(D) for _ in range(LAYERS)])}


def test_block_extraction_finds_every_python_block_only():
  text = "```python\nx = 1\n```\n\n```bash\nls\n```\n```python\ny = x\n\nz = 2\n```\n"
  assert python_blocks(text) == ["x = 1\n", "y = x\n\nz = 2\n"]


def test_every_readme_python_block_runs_as_pasted(capsys):
  blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
  assert len(blocks) >= 2
  namespace = {"__name__": "readme", **readers_arrays()}
  for number, block in enumerate(blocks, start=1):
    code = compile(block, f"README.md python block {number}", "exec")
    exec(code, namespace)  # pylint: disable=exec-used
  capsys.readouterr()
