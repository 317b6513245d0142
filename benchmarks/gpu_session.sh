#!/usr/bin/env bash
# One prepared GPU-machine session: the CUDA tests, the GPU throughput tier, the shrec12
# Table 2 reproduction with the whole-tomogram task (--locate), and the whole-tomogram task
# alone (locate: benchmarks/shrec12_locate.py, candidates and boxes), each stage under its own
# time limit so that one failure or overrun leaves the others' results.
#
#   bash benchmarks/gpu_session.sh [STAGES] [TIER]
#     STAGES  comma list of tests,throughput,table2,locate (default: tests,throughput,table2)
#     TIER    shrec12 tier for table2 and locate (default: gpu)
#
# Environment:
#   OUT                   where results go (default /tmp/gpu_session); everything ends up in
#                         $OUT/results.tgz (re-packed after every stage) and $OUT/session.log
#   DATA_ROOT             folder holding structures/pdb (default ../shared/data)
#   TOMOCLASS_GIT_COMMIT  commit of the copied tree (a copy without .git cannot tell)
#   T_TESTS, T_THROUGHPUT, T_TABLE2, T_LOCATE   per-stage limits in seconds
#                         (defaults 240, 150, 580, 460)
#   LOCATE_METHODS        methods of the locate stage (default candidates,boxes)
#   DEVICE                cuda (default); cpu rehearses the script's plumbing on a CPU machine
#   PY                    the Python to use (default python3); WHEELS= (empty) skips the wheels
#
# On a machine without our dependencies, wheels in .whl/ are installed into /tmp/site first
# (see docs/speed.md, "Running on a lent GPU machine").
set -u
OUT=${OUT:-/tmp/gpu_session}
STAGES=${1:-tests,throughput,table2}
TIER=${2:-gpu}
DATA_ROOT=${DATA_ROOT:-../shared/data}
RES="$OUT/res"
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
WHEELS=${WHEELS-.whl}
# shellcheck source=benchmarks/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
claim_folders gpu_session.sh OUT "$OUT"
mkdir -p "$RES"
export PYTHONUNBUFFERED=1
T0=$(date +%s)
say() { echo "[gpu_session +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/session.log"; }
pack() { tar -czf "$OUT/results.tgz.tmp" -C "$OUT" res && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"; }
has() { [[ ",$STAGES," == *",$1,"* ]]; }

use_wheels
say "stages $STAGES, tier $TIER, commit ${TOMOCLASS_GIT_COMMIT:-unknown}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  nproc; free -g | head -2
  "$PY" -c "import sys, torch, numpy, pandas, tomoclass; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
} > "$RES/environment.txt" 2>&1
cat "$RES/environment.txt" | tee -a "$OUT/session.log"

if has tests; then
  say "tests: pytest -m gpu"
  timeout "${T_TESTS:-240}" "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests \
    > "$RES/pytest_gpu.log" 2>&1
  say "tests: exit $? ($(tail -1 "$RES/pytest_gpu.log"))"
  pack
fi

if has throughput; then
  say "throughput: benchmarks/throughput.py --device cuda"
  timeout "${T_THROUGHPUT:-150}" "$PY" benchmarks/throughput.py --device "$DEVICE" --iters 10 \
    --out "$RES" > "$RES/throughput.log" 2>&1
  say "throughput: exit $?"
  tail -25 "$RES/throughput.log" | tee -a "$OUT/session.log"
  pack
fi

if has table2; then
  say "table2: reproduce_table2.py --tier $TIER --locate"
  timeout "${T_TABLE2:-580}" "$PY" benchmarks/reproduce_table2.py --tier "$TIER" --locate \
    --device "$DEVICE" --data-root "$DATA_ROOT" --out "$RES/table2_$TIER" \
    --work /tmp/table2_work > "$RES/table2.log" 2>&1
  say "table2: exit $?"
  tail -30 "$RES/table2.log" | tee -a "$OUT/session.log"
  # per-epoch records of every run (small): the samples/s that size the next tier
  mkdir -p "$RES/table2_$TIER"
  for m in /tmp/table2_work/runs/*/metrics.jsonl; do
    [ -f "$m" ] && cp "$m" "$RES/table2_$TIER/$(basename "$(dirname "$m")").metrics.jsonl"
  done
  pack
fi
if has locate; then
  say "locate: shrec12_locate.py --tier $TIER --methods ${LOCATE_METHODS:-candidates,boxes}"
  timeout "${T_LOCATE:-460}" "$PY" benchmarks/shrec12_locate.py --tier "$TIER" \
    --methods "${LOCATE_METHODS:-candidates,boxes}" --device "$DEVICE" \
    --data-root "$DATA_ROOT" --out "$RES/locate_$TIER" --work /tmp/locate_work \
    > "$RES/locate.log" 2>&1
  say "locate: exit $?"
  tail -20 "$RES/locate.log" | tee -a "$OUT/session.log"
  mkdir -p "$RES/locate_$TIER"
  m=/tmp/locate_work/runs/locate_background/metrics.jsonl
  [ -f "$m" ] && cp "$m" "$RES/locate_$TIER/locate_background.metrics.jsonl"
  pack
fi
say "done"
