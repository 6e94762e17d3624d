#!/usr/bin/env bash
# The GPU suite in one command: checks the kernels on the device, then times
# every benchmark's 'gpu' preset, then the fused Pallas kNN beside the tiled one
# (at most 60 s more), and renders the table. About 9 minutes on one H200
# (estimated: 7.5 measured for the rest in two calls; see BUILD_NOTES.md).
#
#   scripts/device_bench.sh [OUT_DIR]      # default benchmarks/results
#
# Writes OUT_DIR/records-gpu-<device>.jsonl (resumable: rerun to continue),
# OUT_DIR/<device>.md and OUT_DIR/device-check.log. Needs jax with CUDA and
# absl-py, jaxtyping, numpy (and pytest + hypothesis for the check); run from
# a checkout, no install needed.
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-benchmarks/results}"
mkdir -p "$out_dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import jax; assert jax.default_backend() == 'gpu', jax.devices()" || exit 1
device=$(python3 -c "import jax; print(jax.devices()[0].device_kind.lower().replace(' ', '-'))")

# Correctness on the device: the kNN tie-break, every metric against the float64 references,
# the transforms (jit, vmap, grad). BUILD_NOTES.md names these same files.
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_knn.py \
  tests/test_metrics_vs_reference.py tests/test_transforms.py > "$out_dir/device-check.log" 2>&1
echo "device check exit status $? (log: $out_dir/device-check.log)"; tail -3 "$out_dir/device-check.log"
# The fused Pallas kNN through Triton (interpret mode everywhere else).
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_knn_group_lists.py -k pallas \
  >> "$out_dir/device-check.log" 2>&1
echo "Pallas check exit status $?"; tail -1 "$out_dir/device-check.log"

records="$out_dir/records-gpu-$device.jsonl"
python3 scripts/bench.py --filter='knn/*,cka/*,cknna,zoo/*' --sizes=gpu --output="$records" \
  --resume --repeats=3 --time_budget=60 \
  --implementations=ours,dense_reference,dense_gram,gemm_only,recompute_per_pair
# The fused kernel has never been timed on a card: cap it, so that a slow Triton
# compile or search cannot eat the rest of the device time. Rows it finishes are kept.
timeout 60 python3 scripts/bench.py --filter=knn/mutual --sizes=gpu --output="$records" \
  --resume --repeats=3 --time_budget=15 --implementations=pallas
echo "Pallas timing exit status $? (124: stopped at 60 s)"
python3 scripts/report.py --records="$records" --out="$out_dir/$device.md" \
  --title="platonic_jax benchmarks on $device"
