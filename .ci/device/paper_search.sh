#!/usr/bin/env bash
# The paper profile's hyper-parameter searches (book/methods.md, "The hyper-parameter search") on
# one GPU machine, in one device call: `sgmcmc sweep --profile paper` for every method as
# described, on full MNIST (the smallMNIST sizes too with SIZES="full 5000 3000"; they are
# cheap enough for a CPU, where `sgmcmc sweep --train-size 5000 3000` runs them), with
# PYTHONPATH=src and no Ray (the serial engine; one process per method, all sharing the GPU;
# the SGD reference run is trained once, the other processes wait on its lock and load it). One more process runs the cyclical
# search of chapter 09 (`sgmcmc sweep --cyclical`, selections "paper/<method>+cyclical/full") on
# full MNIST only, one sampler after another, each once its own full-MNIST selection is in the
# selection file (this call's or a committed one): its trials hold that selection's constants.
# Every trial is a stored run, so a call cut short resumes where it stopped when run again with
# the returned runs in the store.
#
# Before the call (here), as for .ci/device/paper_profile.sh (book/rerun.md, "The paper profile
# on a GPU"): the dataset cache in .carry/data, the tracked store left out of the index.
#   run(command="bash .ci/device/paper_search.sh", carry=[".carry"], timeout_s=600)
# Writes under $OUT: log.txt, sweep-<methods>.txt, sweep-cyclical.txt, paper.json (the selection
# file) and the trials' runs as results.tgz.part-* (packed every PACK_EVERY seconds and at the
# end). After it:
#   .venv/bin/sgmcmc sweep --profile paper --merge <files_at>/paper.json   # not cp: a sweep
#                                              # made here meanwhile (a CPU's) is kept
#   cat <files_at>/results.tgz.part-* | tar xzf - -C results
#   .venv/bin/sgmcmc fill --profile paper --dry-run   # the "as described" runs with new keys
# then .ci/device/paper_profile.sh trains them (5 seeds where the plan asks for them).
# Settings (environment):
#   SECONDS_TOTAL  the command's budget (default 560)
#   SIZES          training sizes to search (default "full")
#   METHODS        one sweep process per word; "sgd,fsgd" is one process (default below)
#   CYCLICAL       samplers of the cyclical search, in turn (default "sgld psgld ksgld"; "": none)
#   CYCLICAL_SIZE  its training size (default full)
#   PACK_EVERY     seconds between packings (default 60)
#   PROFILE, DEVICE, SWEEP_ARGS  for a rehearsal elsewhere (default paper, cuda, none), e.g.
#     OUT=/tmp/out PROFILE=ci DEVICE=cpu SIZES=2000 CYCLICAL_SIZE=2000 SWEEP_ARGS="--max-trials 2" \
#     SGMCMC_DATA=data PATH=.venv/bin:$PATH bash .ci/device/paper_search.sh
set -u
start=$(date +%s)
total=${SECONDS_TOTAL:-560}
sizes=${SIZES:-full}
methods=${METHODS:-sgd,fsgd sgld psgld ksgld}
cyclical=${CYCLICAL-sgld psgld ksgld}
cyclical_size=${CYCLICAL_SIZE:-full}
pack_every=${PACK_EVERY:-60}
profile=${PROFILE:-paper}
device=${DEVICE:-cuda}
left() { echo $(( total - ($(date +%s) - start) )); }
store=/tmp/store
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH=$PWD/src SGMCMC_DATA=${SGMCMC_DATA:-$PWD/.carry/data}
export SGMCMC_RESULTS=$store
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi -L 2>/dev/null
mkdir -p "$store" && cp -r results/hparams "$store/"

pack() {  # the selection file and the trials' runs into $OUT, replacing the last pack
  cp "$store/hparams/$profile.json" "$OUT/$profile.json" 2>/dev/null
  rm -f "$OUT"/results.tgz.part-*
  tar czf - -C "$store" --exclude=.checkpoints --exclude=.locks --exclude='.tmp-*' \
    --exclude='.old-*' --exclude='*.damaged-*' "$profile" 2>/dev/null \
    | split -b 15M - "$OUT/results.tgz.part-"
}

pids=()
for group in $methods; do
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 timeout $(( $(left) - 20 )) python3 -m sgmcmc sweep --profile "$profile" \
    --engine serial --device "$device" --train-size $sizes ${SWEEP_ARGS:-} --method ${group//,/ } \
    > "$OUT/sweep-${group//,/-}.txt" 2>&1 &
  pids+=($!)
done
if [ -n "$cyclical" ]; then
  for method in $cyclical; do  # each once its own selection is there (header)
    key="\"paper/$method/$cyclical_size\""
    until grep -q "$key" "$store/hparams/$profile.json" 2>/dev/null || [ "$(left)" -lt 80 ]; do
      sleep 10
    done
    [ "$(left)" -ge 80 ] || { echo "cyclical $method: no $key selection in time"; break; }
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout $(( $(left) - 20 )) python3 -m sgmcmc sweep --profile "$profile" \
      --engine serial --device "$device" --train-size "$cyclical_size" ${SWEEP_ARGS:-} \
      --cyclical --method "$method"
  done > "$OUT/sweep-cyclical.txt" 2>&1 &
  pids+=($!)
fi
while [ -n "$(jobs -rp)" ]; do
  sleep "$pack_every" & wait $!
  pack
done
for pid in "${pids[@]}"; do
  wait "$pid"; echo "sweep $pid exit $?"
done
pack
for file in "$OUT"/sweep-*.txt; do
  echo "== $file"; grep -E "^paper/|error" "$file"
done
echo "== done ($(left)s left)"
ls -la "$OUT"
