#!/usr/bin/env bash
# The samplers on one GPU machine (the device tool's bare CUDA image, its own python3, torch and
# pytest; no data, nothing carried): the CUDA tests (.ci/device/cuda_tests.sh), then the overhead
# benchmark against plain SGD, and the GPU time of one update (updates captured as CUDA graphs).
# Writes $OUT/cuda-tests.txt, $OUT/bench.txt and $OUT/update-gpu-time.txt. About 3.5 minutes on
# an H200, most of it compiling the fused updates (measured when the tests were the sampler
# modules' alone, 52 s; the attack, metric and K-FAC CUDA tests are not yet timed there).
#   BENCH_METHODS  the benchmark's methods (default: the GPU target's, foreach and graphed)
#   BENCH_STEPS    timed steps per method (default 1180, ten epochs)
set -u
# shellcheck source=cuda_tests.sh
source .ci/device/cuda_tests.sh
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
echo "== cuda tests"
# shellcheck disable=SC2086
timeout 240 python3 -m pytest -q -m cuda -p no:cacheprovider $CUDA_TEST_FILES \
  > "$OUT/cuda-tests.txt" 2>&1
tail -n 15 "$OUT/cuda-tests.txt"
echo "== benchmark"
methods=${BENCH_METHODS:-sgld sgld-wd psgld psgld-wd sgld-wd-graph psgld-graph psgld-wd-graph}
# shellcheck disable=SC2086
timeout 240 python3 benchmarks/sampler_overhead.py --device cuda --steps "${BENCH_STEPS:-1180}" \
  --profile --methods $methods > "$OUT/bench.txt" 2>&1
cat "$OUT/bench.txt"
echo "== GPU time of one update"
timeout 120 python3 benchmarks/update_gpu_time.py > "$OUT/update-gpu-time.txt" 2>&1
cat "$OUT/update-gpu-time.txt"
