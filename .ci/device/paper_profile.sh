#!/usr/bin/env bash
# The paper profile on one GPU machine (the device tool's bare CUDA image: its own python3 and
# torch, no papermill/Ray/ArviZ, no network). Run from the repository root with the dataset
# cache and a few wheels carried in .carry/ (see book/rerun.md). Writes under $OUT:
#   bench.txt (sampler overhead on the GPU), cuda-tests.txt, log.txt, results.tgz (the store).
# Budget: SECONDS_TOTAL (default 540) of wall time, the runs stop starting new work in time to
# pack the store.
set -u
start=$(date +%s)
total=${SECONDS_TOTAL:-540}
left() { echo $(( total - ($(date +%s) - start) )); }
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .carry/whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SGMCMC_DATA=$PWD/.carry/data SGMCMC_RESULTS=$PWD/results
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"

echo "== benchmarks ($(left)s left)"
timeout 150 python3 benchmarks/sampler_overhead.py --device cuda --methods sgld sgld-wd sgld-paper \
  psgld psgld-wd psgld-paper sgld-fused psgld-fused psgld-wd-fused > "$OUT/bench.txt" 2>&1
cat "$OUT/bench.txt"
echo "== cuda tests ($(left)s left)"
timeout 60 python3 -m pytest -q -m cuda -p no:cacheprovider tests > "$OUT/cuda-tests.txt" 2>&1
tail -3 "$OUT/cuda-tests.txt"

echo "== sweeps ($(left)s left)"
for m in sgd fsgd sgld psgld ksgld; do
  timeout 170 python3 -m sgmcmc sweep --method $m --convention paper --profile paper --small \
    --engine serial --device cuda > "/tmp/sweep-paper-$m.txt" 2>&1 &
done
for m in sgld psgld ksgld; do
  timeout 170 python3 -m sgmcmc sweep --method $m --convention langevin --profile paper \
    --engine serial --device cuda > "/tmp/sweep-langevin-$m.txt" 2>&1 &
done
wait
tail -n 3 /tmp/sweep-*.txt

echo "== runs ($(left)s left)"
timeout $(( $(left) - 25 )) python3 .ci/device/precompute.py --profile paper --workers 8 --device cuda \
  --seconds $(( $(left) - 150 ))
echo "== packing ($(left)s left)"
tar czf "$OUT/results.tgz" results/paper results/hparams
ls -la "$OUT"
