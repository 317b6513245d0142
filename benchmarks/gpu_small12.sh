#!/usr/bin/env bash
# One prepared GPU call for issue 18's small-particle tier (small12): the tier's data made once,
# then a queue of benchmarks/small_tier.py runs, one (folder, model, seed) per job, drained by
# LANES processes sharing the GPU until DEADLINE; records packed into $OUT/results.tgz every
# minute and at the end, so a cut-off keeps every finished run.
#
#   OUT=$OUT bash benchmarks/gpu_small12.sh        # on the lent GPU machine (docs/reproduce.md)
#
# Folders (each its own protocol.json, so nothing mixes):
#   small12_h200              the tier's protocol v2 as written, on the GPU: dilated_densenet3d
#                             and densenet3d seeds $SEEDS_DN, shrec_cnn and monai_densenet121
#                             seeds $SEEDS_SHREC and $SEEDS_MONAI
#   small12_h200_shrec_<r>    SHREC-CNN seeds $SEEDS_RECIPES under recipe <r> (the RECIPES below),
#                             candidates for its own recipe (under the tier's it stays at chance)
# Other tiers through the same queue, e.g. the 12-class classifiers to ship (issue 18 item 2;
# the tier gpu_pretrained of benchmarks/configs/shrec12.yaml, docs/reproduce.md):
#   TIER=gpu_pretrained PREFIX=gpu_pretrained SEEDS_DN=0-0 SEEDS_SHREC= SEEDS_RECIPES= \
#     SEEDS_MONAI= RECIPES_RUN= KEEP_LAST=1 LANES=2 THREADS=4 OUT=$OUT bash benchmarks/gpu_small12.sh
# Issue 18 item 5, the joint dose calibration (DenseNets only: SHREC-CNN stays at chance on
# small12), one folder <PREFIX>_dose<d> per dose, then benchmarks/calibrate_tier.py:
#   DOSES="60 80 150 200" SEEDS_DOSE=0-4 SEEDS_DN= SEEDS_SHREC= SEEDS_RECIPES= SEEDS_MONAI= \
#     RECIPES_RUN= OUT=$OUT bash benchmarks/gpu_small12.sh
# The folders are aggregated afterwards, where the records land:
#   python benchmarks/small_tier.py --tier small12 --out F --work W --aggregate-only
#
# Environment (defaults for the GPU machine; DEVICE=cpu TIER=small12_smoke rehearses here):
#   OUT         where results.tgz and session.log go (default /tmp/gpu_small12)
#   WORK        scratch (default /tmp/gpu_small12_work)
#   DATA_ROOT   folder holding structures/pdb (default .gpu_data, carried)
#   DEVICE      cuda (default) | cpu;  PY python3;  WHEELS .whl (empty: none)
#   TIER        small12;  PREFIX small12_h200 (folder names);  KEEP_LAST 0 (1: each finished
#               run's last.pt kept in $RES/checkpoints, the others' dropped as always)
#   LANES 8 processes;  THREADS 2 per process;  DEADLINE 530 s from start
#   SEEDS_DN    0-9 (the DenseNets);  SEEDS_SHREC, SEEDS_RECIPES, SEEDS_MONAI 0-4 (each: set
#               but empty runs none)
#   RECIPES_RUN the SHREC-CNN recipes to run (default all four);  LONG_EPOCHS 42, LONG_STEP 40
#   DOSES       doses (e/A^2) of a calibration sweep, each its own data and folder (default none)
#   SEEDS_DOSE  0-4, DOSE_MODELS "dilated_densenet3d densenet3d": the runs at each of DOSES
#   T_TESTS     seconds for `pytest -m gpu` beside the data build (0 skips it; default 150)
#   PLAN=1      print the queue (folder work model seed recipe dose per run) and exit, writing
#               nothing: what a call would run, counted before the device time is spent
set -u
OUT=${OUT:-/tmp/gpu_small12}
WORK=${WORK:-$PWD/.gpu_work}  # /tmp there is too small for the checkpoints
DATA_ROOT=${DATA_ROOT:-.gpu_data}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
WHEELS=${WHEELS-.whl}
TIER=${TIER:-small12}
PREFIX=${PREFIX:-small12_h200}     # the results folders' names
KEEP_LAST=${KEEP_LAST:-0}          # 1: keep each finished run's last.pt in $RES/checkpoints
LANES=${LANES:-8}
THREADS=${THREADS:-2}
DEADLINE=${DEADLINE:-530}
SEEDS_DN=${SEEDS_DN-0-9}
SEEDS_SHREC=${SEEDS_SHREC-0-4}
SEEDS_RECIPES=${SEEDS_RECIPES-0-4}
SEEDS_MONAI=${SEEDS_MONAI-0-4}
LONG_EPOCHS=${LONG_EPOCHS:-42}
LONG_STEP=${LONG_STEP:-40}
T_TESTS=${T_TESTS:-150}
DOSES=${DOSES-}
SEEDS_DOSE=${SEEDS_DOSE-0-4}
DOSE_MODELS=${DOSE_MODELS-dilated_densenet3d densenet3d}
RES="$OUT/res"
T0=$(date +%s)
# shellcheck source=benchmarks/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
export PYTHONUNBUFFERED=1
say() { echo "[gpu_small12 +$(( $(date +%s) - T0 ))s] $*" | tee -a "$RES/session.log"; }
pack() { tar -czf "$OUT/results.tgz.tmp" -C "$RES" . && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"; }
seq_of() { [ -n "$1" ] || return 0; local a=${1%-*} b=${1#*-}; seq "$a" "$b"; }

# SHREC-CNN recipes, declared before the run (benchmarks/results/small12_h200/README.md): the
# one whose seeds end with the lowest mean final training loss becomes its small12 recipe; the
# test tomogram chooses nothing.
declare -A RECIPES=(
  [sgd1e-2zh]='--set optimizer=sgd --set base_lr=0.01 --set lr_reference_batch=16 --set model_kwargs={"head_init":"zeros"}'
  [sgd1e-2clip]='--set optimizer=sgd --set base_lr=0.01 --set lr_reference_batch=16 --set max_grad_norm=1.0'
  [sgd3e-3]='--set optimizer=sgd --set base_lr=0.003 --set lr_reference_batch=16'
  [adamlong]="--epochs $LONG_EPOCHS --set lr_step_epochs=$LONG_STEP"
)
# shellcheck disable=SC2206
RECIPE_ORDER=(${RECIPES_RUN-sgd1e-2zh sgd1e-2clip sgd3e-3 adamlong})

# the queue, one run per line: folder work model seed recipe dose; by seed: the DenseNet pair,
# SHREC-CNN under the tier's protocol and under each recipe, every dose's runs; then MONAI
plan() {
  local s r d m
  for s in $(seq 0 99); do
    seq_of "$SEEDS_DN" | grep -qx "$s" && printf '%s\n' \
      "$PREFIX proto dilated_densenet3d $s - -" "$PREFIX proto densenet3d $s - -"
    seq_of "$SEEDS_SHREC" | grep -qx "$s" && echo "$PREFIX proto shrec_cnn $s - -"
    if seq_of "$SEEDS_RECIPES" | grep -qx "$s"; then
      for r in "${RECIPE_ORDER[@]}"; do echo "$PREFIX""_shrec_$r $r shrec_cnn $s $r -"; done
    fi
    if seq_of "$SEEDS_DOSE" | grep -qx "$s"; then
      for d in $DOSES; do for m in $DOSE_MODELS; do echo "$PREFIX""_dose$d dose$d $m $s - $d"; done; done
    fi
  done
  for s in $(seq_of "$SEEDS_MONAI"); do echo "$PREFIX proto monai_densenet121 $s - -"; done
}
if [ "${PLAN:-0}" = 1 ]; then  # what a call would run, before spending device time on it
  plan; exit 0
fi
claim_folders gpu_small12.sh OUT "$OUT" WORK "$WORK"
mkdir -p "$RES/logs"

use_wheels "$PWD/benchmarks"
say "tier $TIER, device $DEVICE, lanes $LANES x $THREADS threads, deadline ${DEADLINE}s, commit ${TOMOCLASS_GIT_COMMIT:-unknown}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  nproc; free -g | head -2
  "$PY" -c "import sys, torch, numpy, scipy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
} > "$RES/environment.txt" 2>&1
cat "$RES/environment.txt" >> "$RES/session.log"

if [ "$T_TESTS" -gt 0 ] && [ "$DEVICE" = cuda ]; then  # the CUDA tests, beside the data build
  ( timeout "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests \
      > "$RES/pytest_gpu.log" 2>&1; echo "exit $?" >> "$RES/pytest_gpu.log" ) &
  TESTS_PID=$!
fi

TIER_CMD=("$PY" benchmarks/small_tier.py --tier "$TIER" --data-root "$DATA_ROOT")
tier() { "${TIER_CMD[@]}" "$@"; }
Q="$WORK/queue"; plan > "$Q"
say "queue: $(wc -l < "$Q") runs"
if awk '$6 == "-"' "$Q" | grep -q .; then  # runs on the tier's own data (a dose sweep has none)
  say "data: small_tier.py --data-only"
  tier --out "$RES/unused" --work "$WORK/base" --data-only > "$RES/logs/data.log" 2>&1 \
    || { say "data build failed"; tail -5 "$RES/logs/data.log" | tee -a "$RES/session.log"; pack; exit 4; }
  tail -1 "$RES/logs/data.log" | tee -a "$RES/session.log"
  ( cd "$WORK/base/dataset" && sha256sum ./*.npy ) > "$RES/data_sha256.txt"
  for w in proto "${RECIPE_ORDER[@]}"; do  # one scratch folder per protocol, same boxes
    [ -d "$WORK/$w" ] && continue
    mkdir -p "$WORK/$w" && cp -r "$WORK/base/dataset" "$WORK/base/data.json" \
      "$WORK/base/.tomoclass_small_tier_work" "$WORK/$w/"
  done
fi
DOSE_PIDS=()
for d in $DOSES; do  # each dose its own tomograms and boxes, built side by side
  ( tier --dose "$d" --out "$RES/unused_dose$d" --work "$WORK/dose$d" --data-only \
      > "$RES/logs/data_dose$d.log" 2>&1 || say "data build of dose $d failed" ) &
  DOSE_PIDS+=($!)
done
# only these: a bare `wait` would also wait for the CUDA tests running beside
[ "${#DOSE_PIDS[@]}" -gt 0 ] && wait "${DOSE_PIDS[@]}"
for d in $DOSES; do tail -1 "$RES/logs/data_dose$d.log" | tee -a "$RES/session.log"; done

echo 0 > "$WORK/next"; rm -f "$WORK/stop_packing"

lane() {
  local i line folder w model seed recipe dose left extra rc
  while :; do
    left=$(( DEADLINE - ($(date +%s) - T0) ))
    [ "$left" -gt 20 ] || return 0
    i=$(flock "$WORK/next" sh -c 'n=$(cat "$0"); echo $((n + 1)) > "$0"; echo "$n"' "$WORK/next")
    line=$(sed -n "$((i + 1))p" "$Q"); [ -n "$line" ] || return 0
    read -r folder w model seed recipe dose <<< "$line"
    extra=""; [ "$recipe" != - ] && extra=${RECIPES[$recipe]}
    [ "$dose" != - ] && extra="$extra --dose $dose"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS timeout "$left" "${TIER_CMD[@]}" \
      --out "$RES/$folder" --work "$WORK/$w" --models "$model" \
      --seeds "$seed" --device "$DEVICE" --no-aggregate $extra \
      > "$RES/logs/$folder.$model.s$seed.log" 2>&1
    rc=$?
    # the record holds what the tables need; 14 checkpoints per run would fill the disk
    # (a run recorded by an earlier call is skipped and has no checkpoint left to keep)
    if [ "$rc" = 0 ] && [ "$KEEP_LAST" = 1 ] && [ -f "$WORK/$w/runs/${model}_seed$seed/checkpoints/last.pt" ]; then
      mkdir -p "$RES/checkpoints"
      cp "$WORK/$w/runs/${model}_seed$seed/checkpoints/last.pt" \
        "$RES/checkpoints/${folder}.${model}.s$seed.last.pt"
    fi
    [ "$rc" = 0 ] && rm -rf "$WORK/$w/runs/${model}_seed$seed/checkpoints"
    say "lane $1: $folder $model seed $seed exit $rc ($(grep -o 'macro F1 [0-9.]*' "$RES/logs/$folder.$model.s$seed.log" | tail -1))"
  done
}
LANE_PIDS=()
for l in $(seq 1 "$LANES"); do lane "$l" & LANE_PIDS+=($!); done
# a pack every minute; stopped by a file, never killed mid-write (a killed subshell leaves its
# tar writing the same temporary file as the last pack below: a corrupt archive)
( n=0; while [ ! -e "$WORK/stop_packing" ]; do sleep 5; n=$((n + 1))
    [ $((n % 12)) = 0 ] && pack; done ) & PACKER=$!
wait "${LANE_PIDS[@]}"
touch "$WORK/stop_packing"; wait "$PACKER"
if [ -n "${TESTS_PID:-}" ]; then
  wait "$TESTS_PID"; say "tests: $(tail -2 "$RES/pytest_gpu.log" | tr '\n' ' ')"
fi
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >> "$RES/environment.txt" 2>&1
say "done: $(ls "$RES/$PREFIX"*/runs/*.json 2>/dev/null | wc -l) run records"
pack
