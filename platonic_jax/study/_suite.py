"""The suite: the whole study in one call, from datasets to the published report.

`run_suite(SuiteConfig())` prepares the offline datasets, trains a zoo preset
(or reuses it), extracts every layer of every member at every checkpoint
(step 0 = random init) plus the raw inputs and the world's true latent as
baseline "members", measures alignment with permutation nulls, the
layer-search null, a fixed (last) layer score and half-sampling intervals,
times the kernels through the benchmark registry, and writes one results
folder:

  <output_dir>/zoo/                 the trained zoo (reused when complete)
  <output_dir>/features/test/       feature-store entries, one per member and checkpoint
  <output_dir>/records.jsonl        one fsynced alignment record per (metric, pair)
  <output_dir>/bench.jsonl, .md     kernel timings (registry definitions, small sizes)
  <output_dir>/report.md            the five questions: tables, rank correlations, findings
  <output_dir>/figures/*.png        heatmaps, alignment against competence and size, bins
  <output_dir>/tables/*.md          every pair of every comparison, with nulls and intervals
  <output_dir>/suite.json           configuration, comparisons and stage times

Every stage resumes: datasets, members and feature entries already complete
are skipped, alignment records already written are read back (same metric,
pair, settings and feature values), and the report is re-rendered from the
records. A run killed at any point loses only the measurement in flight.

Alignment is measured within *comparisons* (groups of feature sets, every
pair within a group; see `plan_comparisons`), chosen so that the questions
need few pairs: per dataset and modality, one member per configuration with
the baselines (raw inputs, the latent, random inits); across modalities, the
members of the common objective; and per checkpoint, the mid-sized members
and their other seeds (the training-length question). Within one dataset,
member layers are zero-padded to one width after the reference's
preparation: inner products, hence every kNN and linear-kernel score, are
unchanged, and the statistics compile once per layer count instead of once per width.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from platonic_jax import _files
from platonic_jax import bench, zoo
from platonic_jax.study import _alignment, _inputs, _report, _suite_report

SPLIT = "test"
RAW_PREFIX = "raw-"
LATENT_PREFIX = "latent-"
# Member layers up to this width are padded to one width per dataset; wider
# ones (raw pixels) keep theirs, padding everything to them would cost more
# than the compilations it saves.
_PAD_LIMIT = 256


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
  """What `run_suite` runs; every field has the default of the README's command.

  Attributes:
    zoo: a zoo preset name (`platonic_jax.zoo.zoo_names()`) or a `ZooSpec`.
    output_dir: the results folder.
    data_dir: dataset directory (None: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    zoo_dir: where the zoo is trained (None: `<output_dir>/zoo`).
    dataset_map: member dataset -> the dataset actually read (e.g.
      {'world': 'world/small'} for quick runs; same shapes, fewer samples).
    metrics: registered metric names.
    k: neighbours of the kNN metrics.
    num_examples: N, the first N test examples of each dataset (capped at the
      split's size: digits has 360).
    num_permutations: P of every null.
    num_resamples: R half-samples of every interval.
    confidence: interval coverage.
    seed: seed of the permutations, half-samples and rank-correlation bootstrap.
    alpha: scores with p >= alpha are marked as not separating from their null.
    time_kernels: run the kernel benchmarks (registry, `bench_preset` sizes).
    bench_filter: benchmark name globs, comma separated.
    bench_preset: the registry's size preset.
    batch_size: rows per forward pass in extraction.
  """
  zoo: str | zoo.ZooSpec = "default"
  output_dir: str | os.PathLike = "runs/suite"
  data_dir: str | os.PathLike | None = None
  zoo_dir: str | os.PathLike | None = None
  dataset_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
  metrics: tuple[str, ...] = _alignment.DEFAULT_METRICS
  k: int = 10
  num_examples: int = 500
  num_permutations: int = 50
  num_resamples: int = 20
  confidence: float = 0.95
  seed: int = 0
  alpha: float = 0.05
  time_kernels: bool = True
  bench_filter: str = "knn/mutual,cka/linear/unbiased,cknna"
  bench_preset: str = "small"
  batch_size: int = 256

  def __post_init__(self):
    object.__setattr__(self, "metrics", tuple(self.metrics))
    object.__setattr__(self, "dataset_map", dict(self.dataset_map))
    for name in ("k", "num_examples", "num_permutations", "num_resamples", "batch_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
      raise ValueError(f"`seed` must be a non-negative int, got {self.seed!r}.")
    if not 0.0 < self.confidence < 1.0:
      raise ValueError(f"`confidence` must be in (0, 1), got {self.confidence!r}.")
    if not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"`alpha` must be in [0, 1], got {self.alpha!r}.")
    if not self.metrics:
      raise ValueError("`metrics` is empty; name at least one registered metric.")
    if isinstance(self.zoo, str):
      zoo.zoo_spec(self.zoo)  # raises a ValueError naming the presets

  def zoo_spec(self) -> zoo.ZooSpec:
    return self.zoo if isinstance(self.zoo, zoo.ZooSpec) else zoo.zoo_spec(self.zoo)

  def to_json(self) -> dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["zoo"] = self.zoo_spec().name
    out["metrics"] = list(self.metrics)
    for key in ("output_dir", "data_dir", "zoo_dir"):
      out[key] = None if out[key] is None else str(out[key])
    return out


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Feature sets measured pair by pair (every pair within the group).

  Attributes:
    name: e.g. 'world-image', 'world-cross', 'digits' or 'world@40'.
    dataset: the member dataset they were extracted from.
    members: feature-set names ('<member>@<step>', 'raw-...', 'latent-...').
    kind: 'within' (one modality), 'cross' (several) or 'steps' (one checkpoint).
    modality: the modality of a 'within' comparison.
    step: the checkpoint of a 'steps' comparison.
  """
  name: str
  dataset: str
  members: tuple[str, ...]
  kind: str = "within"
  modality: str | None = None
  step: int | None = None


@dataclasses.dataclass(frozen=True)
class SuiteResult:
  """What a suite run produced.

  Attributes:
    output_dir: the results folder.
    report: path of report.md.
    records: every alignment record of the run's comparisons.
    infos: every feature set's `MemberInfo`.
    comparisons: the comparisons measured.
    stage_seconds: wall seconds of each stage in this call.
  """
  output_dir: pathlib.Path
  report: pathlib.Path
  records: list[dict[str, Any]]
  infos: dict[str, _report.MemberInfo]
  comparisons: tuple[Comparison, ...]
  stage_seconds: dict[str, float]


class _Progress:
  """A one-line-per-step progress bar for one stage (log lines, not a terminal widget)."""

  def __init__(self, stage: str, total: int, log: Callable[[str], None]):
    self.stage, self.total, self.log, self.done = stage, max(total, 1), log, 0
    self.start = time.monotonic()

  def step(self, label: str, count: int = 1) -> None:
    self.done += count
    filled = int(20 * min(self.done, self.total) / self.total)
    elapsed = time.monotonic() - self.start
    eta = elapsed / self.done * (self.total - self.done) if self.done < self.total else 0.0
    self.log(f"[{self.stage}] [{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} "
             f"{label} ({elapsed:.0f} s, ETA {eta:.0f} s)")


def _default_log(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _api(config: SuiteConfig) -> zoo.ZooApi:
  """The zoo's dataset functions, reading `dataset_map`'s replacement datasets."""
  mapping = config.dataset_map

  def load_dataset(name, split, *, data_dir=None, num_examples=None):
    return zoo.load_dataset(mapping.get(name, name), split, data_dir=data_dir,
                            num_examples=num_examples)

  def dataset_spec(name):
    return zoo.dataset_spec(mapping.get(name, name))

  return zoo.ZooApi(load_dataset, dataset_spec, zoo.make_encoder)


def _num_examples(config: SuiteConfig, api: zoo.ZooApi, dataset: str) -> int:
  return min(config.num_examples, api.dataset_spec(dataset).splits[SPLIT])


# --------------------------------------------------------------------------
# Stages: data, training, extraction
# --------------------------------------------------------------------------

def _datasets(spec: zoo.ZooSpec) -> list[str]:
  return list(dict.fromkeys(m.dataset for m in spec.members))


def _extract(config: SuiteConfig, api: zoo.ZooApi, spec: zoo.ZooSpec, zoo_dir: pathlib.Path,
             features_dir: pathlib.Path, mesh, log) -> None:
  """Every member's checkpoints, the raw inputs and the latent, into the feature store."""
  progress = _Progress("extract", sum(len(m.checkpoint_steps) for m in spec.members), log)
  by_dataset: dict[str, list[str]] = {}
  for m in spec.members:
    by_dataset.setdefault(m.dataset, []).append(m.name)
  for dataset, names in by_dataset.items():
    n = _num_examples(config, api, dataset)
    zoo.extract_zoo_features(
        zoo_dir, features_dir, members=names, steps="all", split=SPLIT, num_examples=n,
        batch_size=config.batch_size, mesh=mesh, data_dir=config.data_dir,
        load_dataset=api.load_dataset, dataset_spec=api.dataset_spec,
        log=lambda line: log(f"[extract] {line}") if "/raw-" in line else progress.step(
            line.split(" (")[0]))
    if api.dataset_spec(dataset).latent_dim:
      _write_latent(config, api, dataset, n, features_dir, log)


def latent_name(dataset: str) -> str:
  """The feature-set name of a dataset's true latent ('world' -> 'latent-world')."""
  return LATENT_PREFIX + dataset.replace("/", "_")


def _write_latent(config: SuiteConfig, api: zoo.ZooApi, dataset: str, n: int,
                  features_dir: pathlib.Path, log) -> pathlib.Path:
  """The dataset's latent `[N, L]` as a one-layer store entry, unless already written."""
  name = latent_name(dataset)
  path = zoo.features_path(features_dir, SPLIT, name, 0)
  expected = {"dataset": dataset, "split": SPLIT, "num_examples": n, "modality": "latent", "model": name,
                  "step": 0}
  sidecar = path.with_suffix(".json")
  if path.is_file() and sidecar.is_file():
    try:
      meta = json.loads(sidecar.read_text())
    except ValueError:
      meta = {}
    if all(meta.get(key) == value for key, value in expected.items()):
      return path
  data = api.load_dataset(dataset, SPLIT, data_dir=config.data_dir, num_examples=n)
  zoo.save_layer_features(path.parent, path.stem, [data["latent"]], dict(
      expected, sample_ids=data["id"], layer_names=["latent"],
      pooling="none: the scene's true latent (the generator's variables)"))
  log(f"[extract] wrote {path} (true latent, N={n})")
  return path


# --------------------------------------------------------------------------
# Feature sets, member metadata and comparisons
# --------------------------------------------------------------------------

def member_set_name(member: str, step: int) -> str:
  """A member checkpoint's feature-set name: '<member>@<step>'."""
  return f"{member}@{step}"


def raw_name(dataset: str, modality: str) -> str:
  """The raw-input baseline's feature-set name (the extractor's directory name)."""
  return f"{RAW_PREFIX}{dataset.replace('/', '_')}-{modality}"


def _base_members(members: Sequence[zoo.MemberSpec],
                  num_params: Mapping[str, int]) -> list[zoo.MemberSpec]:
  """Per (modality, family): the mid-sized seed-0 member (labels preferred) and its other seeds.

  Their random inits are the "same architecture at step 0" baselines, and
  their checkpoints the training-length comparisons.
  """
  chosen = []
  groups: dict[tuple[str, str], list[zoo.MemberSpec]] = {}
  for m in members:
    groups.setdefault((m.modality, m.family), []).append(m)
  for group in groups.values():
    seed0 = [m for m in group if m.seed == 0] or group
    labelled = [m for m in seed0 if m.objective != "contrastive"] or seed0
    ordered = sorted(labelled, key=lambda m: (num_params.get(m.name, 0), m.name))
    base = ordered[(len(ordered) - 1) // 2]
    chosen += [m for m in group if m == base or dataclasses.replace(m, seed=base.seed) == base]
  return chosen


def _primary(members: Sequence[zoo.MemberSpec]) -> list[zoo.MemberSpec]:
  """One member per configuration: the lowest seed of members that differ only in seed."""
  lowest: dict[zoo.MemberSpec, int] = {}
  for m in members:
    key = dataclasses.replace(m, seed=0)
    lowest[key] = min(lowest.get(key, m.seed), m.seed)
  return [m for m in members if lowest[dataclasses.replace(m, seed=0)] == m.seed]


def plan_comparisons(spec: zoo.ZooSpec, num_params: Mapping[str, int],
                     latents: Sequence[str] = ()) -> list[Comparison]:
  """The comparisons the five questions need, each measured pair by pair.

  Per dataset and modality ('within', e.g. 'world-image'): one member per
  configuration (its lowest seed) at its last checkpoint, the raw inputs,
  the random init of one mid-sized member per family, and the latent. For a
  dataset with several modalities also 'cross' ('world-cross'): the members
  of the most common objective, every modality, with the raw inputs and the
  latent. Per checkpoint step ('steps', e.g. 'world@40'): the mid-sized
  members of every family and their other seeds at that step, with the
  latent. Pairs shared by two comparisons are measured once (the records
  are keyed by pair and features, not by comparison).

  Args:
    spec: the zoo.
    num_params: member name -> parameter count (picks the mid-sized base members).
    latents: datasets that have a true latent.
  """
  comparisons = []
  for dataset in _datasets(spec):
    members = [m for m in spec.members if m.dataset == dataset]
    primary = _primary(members)
    bases = _base_members(members, num_params)
    latent = [latent_name(dataset)] if dataset in latents else []
    modalities = list(dict.fromkeys(m.modality for m in members))
    for modality in modalities:
      inits = [member_set_name(m.name, 0) for m in _primary(bases) if m.modality == modality]
      last = [member_set_name(m.name, m.steps) for m in primary if m.modality == modality]
      name = dataset if len(modalities) == 1 else f"{dataset}-{modality}"
      comparisons.append(Comparison(name, dataset, tuple(
          last + [raw_name(dataset, modality)] + inits + latent), kind="within",
                                    modality=modality))
    if len(modalities) > 1:
      objectives = [m.objective for m in primary]
      common = max(dict.fromkeys(objectives), key=objectives.count)
      chosen = [member_set_name(m.name, m.steps) for m in primary if m.objective == common]
      comparisons.append(Comparison(f"{dataset}-cross", dataset, tuple(
          chosen + [raw_name(dataset, modality) for modality in modalities] + latent),
                                    kind="cross"))
    for step in sorted({s for m in bases for s in m.checkpoint_steps}):
      at_step = [member_set_name(m.name, step) for m in bases if step in m.checkpoint_steps]
      if len(at_step + latent) >= 2:
        comparisons.append(Comparison(f"{dataset}@{step}", dataset, tuple(at_step + latent),
                                      kind="steps", step=step))
  return comparisons


def _member_infos(spec: zoo.ZooSpec, zoo_dir: pathlib.Path,
                  comparisons: Sequence[Comparison]) -> dict[str, _report.MemberInfo]:
  manifests = {m.name: zoo.load_manifest(zoo_dir / m.name) for m in spec.members}
  infos = {}
  for comparison in comparisons:
    for name in comparison.members:
      if name in infos:
        continue
      if "@" in name:
        member, step = name.rsplit("@", 1)
        infos[name] = _report.member_info(manifests[member], name=name, step=int(step))
      elif name.startswith(LATENT_PREFIX):
        infos[name] = _report.MemberInfo(name, family="latent", modality="latent",
                                         objective="none")
      else:
        modality = name.rsplit("-", 1)[1]
        infos[name] = _report.MemberInfo(name, family="raw", modality=modality, objective="none")
  return infos


def _feature_path(features_dir: pathlib.Path, name: str) -> pathlib.Path:
  if "@" in name:
    member, step = name.rsplit("@", 1)
    return zoo.features_path(features_dir, SPLIT, member, int(step))
  return zoo.features_path(features_dir, SPLIT, name, 0)


def load_suite_features(features_dir: str | os.PathLike,
                        names: Sequence[str]) -> list[_inputs.FeatureSet]:
  """The named feature sets of a suite's feature store, as `FeatureSet`s (unprepared).

  Args:
    features_dir: `<output_dir>/features`.
    names: feature-set names ('<member>@<step>', 'raw-...', 'latent-...').
  """
  out = []
  for name in names:
    layers, meta = zoo.load_layer_features(_feature_path(pathlib.Path(features_dir), name))
    out.append(_inputs.FeatureSet(name, [np.asarray(x, np.float32) for x in layers], meta))
  return out


def padded_sets(sets: Sequence[_inputs.FeatureSet], width: int) -> list[_inputs.FeatureSet]:
  """Prepared sets (clamp, L2) with layers narrower than `width` zero-padded to it.

  Zero columns change no inner product, so every kNN list and linear-kernel
  score is that of the unpadded features (up to float summation order).
  A layer with an all-zero row (a ReLU dead on some sample) has no direction
  to normalise: it is left out (listed in the set's metadata under
  `dropped_layers`), and a set with no layer left is left out.
  """
  out = []
  for s in sets:
    kept = [l for l, x in enumerate(s.layers) if np.all(np.any(x != 0, axis=1))]
    if not kept:
      continue
    dropped = [l for l in range(len(s.layers)) if l not in kept]
    s = _inputs.FeatureSet(s.name, [s.layers[l] for l in kept],
                           dict(s.metadata, dropped_layers=dropped))
    layers = []
    for x in _alignment.prepared_layers(s):
      if x.shape[1] < width:
        x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
      layers.append(np.asarray(x, np.float32))
    out.append(_inputs.FeatureSet(s.name, layers, s.metadata))
  return out


def _pad_width(sets: Sequence[_inputs.FeatureSet]) -> int:
  widths = [x.shape[1] for s in sets for x in s.layers if x.shape[1] <= _PAD_LIMIT]
  return max(widths, default=0)


# --------------------------------------------------------------------------
# Stages: alignment, kernel timings
# --------------------------------------------------------------------------

def _align(config: SuiteConfig, comparisons: Sequence[Comparison], features_dir: pathlib.Path,
           records_path: pathlib.Path, mesh, log) -> tuple[list[dict[str, Any]], list[Comparison]]:
  """Every comparison's records (read back when already written), and the comparisons
  without the sets left out (`padded_sets`); statistics split over `mesh` when given."""
  by_dataset: dict[str, list[Comparison]] = {}
  for c in comparisons:
    by_dataset.setdefault(c.dataset, []).append(c)
  total = 0
  for c in comparisons:
    pairs = len(c.members) * (len(c.members) - 1) // 2
    total += sum(pairs * (1 if _symmetric(m) else 2) for m in config.metrics)
  progress = _Progress("align", total, log)
  records, kept = [], []
  for group in by_dataset.values():
    names = list(dict.fromkeys(n for c in group for n in c.members))
    raw_sets = load_suite_features(features_dir, names)
    width = _pad_width(raw_sets)
    sets = {s.name: s for s in padded_sets(raw_sets, width)}
    for s in sets.values():
      if s.metadata["dropped_layers"]:
        log(f"[align] {s.name}: layers {s.metadata['dropped_layers']} left out (all-zero rows)")
    for c in group:
      before = progress.done
      c = dataclasses.replace(c, members=tuple(n for n in c.members if n in sets))
      kept.append(c)
      if len(c.members) < 2:
        continue
      got = _alignment.measure_feature_sets(
          [sets[n] for n in c.members], config.metrics, k=config.k,
          num_permutations=config.num_permutations, num_resamples=config.num_resamples,
          confidence=config.confidence, seed=config.seed, prepare=False,
          records_path=records_path, mesh=mesh,
          progress=lambda what, c=c: progress.step(f"{c.name}: {what}"))
      progress.done = before + len(got)
      log(f"[align] {c.name}: {len(got)} measurements ({len(c.members)} sets, width {width})")
      records += [dict(r, comparison=c.name) for r in got]
  return records, [c for c in kept if len(c.members) >= 2]


def _symmetric(metric: str) -> bool:
  import platonic_jax as pj  # pylint: disable=g-import-not-at-top - the kernel API, at call time
  return pj.get_metric(metric).symmetric


def _time_kernels(config: SuiteConfig, output_dir: pathlib.Path, log) -> pathlib.Path | None:
  """The registry's benchmarks at `bench_preset` sizes, ours only, resumable."""
  # Importing the definitions registers them. pylint: disable-next=g-import-not-at-top
  import platonic_jax.bench.definitions  # noqa: F401
  records = output_dir / "bench.jsonl"
  devices = jax.device_count() if jax.device_count() > 1 else None
  counts = bench.run_benchmarks(bench.select_benchmarks(config.bench_filter),
                                preset=config.bench_preset, output=records, resume=True,
                                implementations=["ours"], repeats=3, time_budget=30.0,
                                devices=devices)
  log(f"[bench] {counts}")
  page = output_dir / "bench.md"
  bench.render_report(records, page, title=f"Kernel timings ({config.bench_preset} sizes, "
                      f"{bench.machine_label(bench.environment())})")
  return page


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

def run_suite(config: SuiteConfig = SuiteConfig(), *,
              log: Callable[[str], None] = _default_log) -> SuiteResult:
  """Runs the whole study (see the module docstring) and writes its results folder.

  Args:
    config: what to run (defaults: the README's command).
    log: receives progress lines (default: stderr).

  Returns:
    A `SuiteResult` (paths, records, member metadata, comparisons, stage times).

  Raises:
    ValueError: a bad configuration (unknown metric, preset, ...), and what the
      stages raise.

  Cost: training as the preset says; extraction one forward pass per
  checkpoint over N; alignment per comparison of M sets and per metric
  M (M - 1) / 2 layer-search nulls ((P + 1) La Lb pair kernels after each
  layer's kNN) and one or two half-sampling intervals (R metric evaluations
  on N / 2 rows).
  """
  import platonic_jax as pj  # pylint: disable=g-import-not-at-top
  for metric in config.metrics:
    pj.get_metric(metric)
  spec = config.zoo_spec()
  api = _api(config)
  output_dir = pathlib.Path(config.output_dir)
  zoo_dir = pathlib.Path(config.zoo_dir) if config.zoo_dir else output_dir / "zoo"
  features_dir = output_dir / "features"
  output_dir.mkdir(parents=True, exist_ok=True)
  mesh = jax.make_mesh((jax.device_count(),), ("data",)) if jax.device_count() > 1 else None
  seconds: dict[str, float] = {}

  def stage(name: str, index: int):
    log(f"== stage {index}/6: {name} ==")
    return time.monotonic()

  start = stage("data", 1)
  datasets = list(dict.fromkeys(config.dataset_map.get(d, d) for d in _datasets(spec)))
  zoo.prepare_datasets(datasets, data_dir=config.data_dir)
  seconds["data"] = time.monotonic() - start

  start = stage("train", 2)
  checkpoints = {m.name: len(m.checkpoint_steps) for m in spec.members}
  progress = _Progress("train", sum(checkpoints.values()), log)

  def train_log(line: str) -> None:
    text = line.strip()
    if text.startswith("skipping "):
      progress.step(text, count=checkpoints.get(text.split()[1], 1))
    elif " step " in text and ":" in text:
      progress.step(text.split(":")[0])
  manifests = zoo.train_zoo(spec, zoo_dir, data_dir=config.data_dir, log=train_log, api=api)
  seconds["train"] = time.monotonic() - start

  start = stage("extract", 3)
  _extract(config, api, spec, zoo_dir, features_dir, mesh, log)
  seconds["extract"] = time.monotonic() - start

  start = stage("align", 4)
  num_params = {m["member"]: m.get("num_params") or 0 for m in manifests}
  latents = [d for d in _datasets(spec) if api.dataset_spec(d).latent_dim]
  comparisons = plan_comparisons(spec, num_params, latents)
  records_path = output_dir / "records.jsonl"
  records, comparisons = _align(config, comparisons, features_dir, records_path, mesh, log)
  seconds["align"] = time.monotonic() - start

  start = stage("bench", 5)
  bench_page = _time_kernels(config, output_dir, log) if config.time_kernels else None
  seconds["bench"] = time.monotonic() - start

  start = stage("report", 6)
  infos = _member_infos(spec, zoo_dir, comparisons)
  summary = {
      "config": config.to_json(),
      "num_examples": {d: _num_examples(config, api, d) for d in _datasets(spec)},
      "comparisons": [dataclasses.asdict(c) for c in comparisons],
      "stage_seconds": seconds,
      "devices": jax.device_count(),
      "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
  }
  tasks = {member_set_name(m.name, s): len(m.targets) for m in spec.members
           if m.objective == "multitask" for s in m.checkpoint_steps}
  report = _suite_report.write_suite_report(
      records, infos, comparisons, output_dir, config=config, summary=summary,
      bench_page=bench_page, targets=tasks)
  seconds["report"] = time.monotonic() - start
  summary["stage_seconds"] = seconds
  _files.write_json_atomic(output_dir / "suite.json", _jsonable(summary))
  log("== done: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
      + f"; report {report} ==")
  return SuiteResult(output_dir, report, records, infos, tuple(comparisons), seconds)


def _jsonable(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value
