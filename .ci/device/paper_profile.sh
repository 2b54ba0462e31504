#!/usr/bin/env bash
# The paper profile on one GPU machine (the device tool's bare CUDA image: its own python3 and
# torch, no papermill/Ray/ArviZ, no network). Run from the repository root with the dataset
# cache and the h5netcdf wheel carried in .carry/ (see book/rerun.md). Writes under $OUT:
#   log.txt, bench.txt (sampler overhead on the GPU), cuda-tests.txt, and the new runs of the
#   store as results.tgz.part-* (concatenate, then untar in the repository root; no checkpoints).
# Settings (environment):
#   SECONDS_TOTAL    wall-time budget (default 540): no run starts that cannot end inside it
#   RUN_SECONDS      how long one run takes on this machine with WORKERS sharing it (default 200)
#   WORKERS          training processes sharing the GPU (default 8): precompute.py, a thin
#                    wrapper of `sgmcmc fill --engine processes` (no Ray on this image)
#   SWEEPS=0         skip the grid searches
#   PRECOMPUTE_ARGS  extra arguments of precompute.py (e.g. "--convention langevin")
#   BENCH_METHODS    the benchmark's methods ("" skips it); it runs last, on an idle GPU
#   BENCH_SECONDS    time kept for it after the runs (default 90)
# The samplers' GPU check alone (CUDA tests and benchmark, no data): .ci/device/sampler_check.sh
# Measured: 20-epoch main runs take 130 s each with 9 workers on an H200, 90 s with 6 (langevin
# SGLD/pSGLD); on an H100 with 12 workers 185 s (SGLD/pSGLD) and 275 s (KSGLD, langevin).
# The langevin chains of notebooks 06 and 07, alone:
#   SWEEPS=0 WORKERS=9 RUN_SECONDS=280 PRECOMPUTE_ARGS="--convention langevin" bash ...
# The committed store (~48 MB) and the carried data (~47 MB) exceed a 64 MiB upload: leave the
# store out of the upload for the call (delete the `!results/paper/` line of .gitignore and
# `git rm -r -q --cached results/paper`; afterwards `git checkout .gitignore && git reset -q`)
# and pass PRECOMPUTE_ARGS that select only missing runs, since the machine's store is empty:
#   sgmcmc fill --profile paper --notebooks 06_gradient_or_noise 07_noise_conventions \
#     --write-missing .carry/keys.txt        (here), then PRECOMPUTE_ARGS="--keys .carry/keys.txt"
set -u
# shellcheck source=cuda_tests.sh
source .ci/device/cuda_tests.sh
start=$(date +%s)
total=${SECONDS_TOTAL:-540}
run_s=${RUN_SECONDS:-200}
workers=${WORKERS:-8}
bench_s=${BENCH_SECONDS:-90}
bench=${BENCH_METHODS-sgld sgld-wd sgld-paper psgld psgld-wd psgld-paper sgld-fused psgld-fused sgld-wd-graph psgld-graph psgld-wd-graph}
left() { echo $(( total - ($(date +%s) - start) )); }
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .carry/whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SGMCMC_DATA=$PWD/.carry/data SGMCMC_RESULTS=$PWD/results
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"

if [ "${SWEEPS:-1}" != 0 ]; then
  echo "== sweeps ($(left)s left)"
  sweeps=()
  for m in sgd fsgd sgld psgld ksgld; do
    timeout 170 python3 -m sgmcmc sweep --method $m --convention paper --profile paper --small \
      --engine serial --device cuda > "/tmp/sweep-paper-$m.txt" 2>&1 &
    sweeps+=($!)
  done
  for m in sgld psgld ksgld; do
    timeout 170 python3 -m sgmcmc sweep --method $m --convention langevin --profile paper \
      --engine serial --device cuda > "/tmp/sweep-langevin-$m.txt" 2>&1 &
    sweeps+=($!)
  done
  # Wait on these pids alone: a bare `wait` also waits for the log's tee, which never ends.
  wait "${sweeps[@]}"
  tail -n 3 /tmp/sweep-*.txt
fi

echo "== cuda tests, beside the runs ($(left)s left)"
# shellcheck disable=SC2086
timeout 150 python3 -m pytest -q -m cuda -p no:cacheprovider $CUDA_TEST_FILES \
  > "$OUT/cuda-tests.txt" 2>&1 &
tests=$!

echo "== runs: $workers workers ($(left)s left)"
# One CPU thread per worker: the GPU does the work, and the workers share 16 cores.
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout $(( $(left) - 25 - bench_s )) python3 .ci/device/precompute.py --profile paper \
  --workers "$workers" --device cuda --seconds $(( $(left) - run_s - bench_s )) ${PRECOMPUTE_ARGS:-}
wait "$tests"
tail -3 "$OUT/cuda-tests.txt"

if [ -n "$bench" ]; then
  # After the runs, on an idle GPU, with whatever time they left.
  echo "== benchmarks ($(left)s left)"
  # shellcheck disable=SC2086
  timeout $(( $(left) - 20 )) python3 benchmarks/sampler_overhead.py --device cuda --profile \
    --methods $bench > "$OUT/bench.txt" 2>&1
  cat "$OUT/bench.txt"
fi
echo "== packing ($(left)s left)"
tar czf - --exclude=.checkpoints --exclude=.locks results/paper results/hparams \
  | split -b 15M - "$OUT/results.tgz.part-"
ls -la "$OUT"
