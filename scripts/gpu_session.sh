#!/usr/bin/env bash
# One GPU session's checks, most important first, sized for the ~15 device-minutes a session gets (start-up
# included). From the checkout, with the bundle beside it (../shared/device/README.md):
#
#   bash .gpu-bundle/on_device.sh bash scripts/gpu_session.sh
#
# 1. the CUDA tests: bit-exact snapshots through the side stream (bf16, fp16 + compile + accumulation, star
#    restarts eager and compiled, SWA, an optimizer that gets the blocking copy) and the resident ensemble;
# 2. benchmarks/gpu.py (at most about 5 minutes), into a fresh results folder so that nothing old is kept.
# Everything lands under $OUT (default /tmp/gpu-out): cuda_tests.log, gpu/ (gpu.md, gpu.json, part-*.json, the
# run's and the recipe's logs). A step that fails or runs out of time does not stop the next.
# `--quick`: rehearse on a CPU (the CUDA tests skip; gpu.py --quick at tiny sizes).
set -uo pipefail
out="${OUT:-/tmp/gpu-out}"
quick=()
if [[ "${1:-}" == "--quick" ]]; then
    quick=(--quick)
elif [[ $# -gt 0 ]]; then
    echo "usage: bash scripts/gpu_session.sh [--quick]" >&2
    exit 2
fi
mkdir -p "$out/gpu"
{
    timeout 300 python3 -m pytest -q -p no:cacheprovider --noconftest tests/test_gpu_snapshots.py
    timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_ensemble_residency.py
} 2>&1 | tee "$out/cuda_tests.log"
timeout 360 python3 benchmarks/gpu.py --results_dir "$out/gpu" --work_dir /tmp/hf_sgdr-gpu-benchmark "${quick[@]}" \
    2>&1 | tee "$out/gpu/gpu_run.log"
echo "results in $out"
