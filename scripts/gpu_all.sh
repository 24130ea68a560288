#!/usr/bin/env bash
# Every GPU check of docs/gpu_check.md as one command (~9 minutes on one H200): training MFU at real size
# (scripts/gpu_mfu.py), our decoder against generate / generate_batch (scripts/gpu_decode.py), and the real CLI
# on random real-size checkpoints (scripts/gpu_e2e.py). Each part has its own time cap, so one slow part cannot
# hide the others; each writes its table and log into OUT_DIR.
#   usage: scripts/gpu_all.sh OUT_DIR [TOTAL_SECONDS]       (default 540)
set -u
out=${1:?usage: scripts/gpu_all.sh OUT_DIR [TOTAL_SECONDS]}
total=${2:-540}
mkdir -p "$out"
start=$(date +%s)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
py=${PYTHON:-python3}
left() { echo $((total - ($(date +%s) - start))); }
part() {  # part NAME CAP_SECONDS COMMAND...: run COMMAND for at most CAP seconds, log to OUT/NAME.log
  local name=$1 cap=$2; shift 2
  echo "== $name (cap ${cap}s, $(left)s left)"
  timeout --signal=TERM --kill-after=10 "$cap" "$@" >"$out/$name.log" 2>&1
  echo "== $name exit $? after $(( $(date +%s) - start ))s"
  grep -E '^\|' "$out/$name.log" | tail -n 40
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/device.txt"
part mfu 170 "$py" scripts/gpu_mfu.py --families llama3_1 --out "$out/gpu_mfu.md"
part mfu3b 60 "$py" scripts/gpu_mfu.py --families llama3_2 --no-compile --out "$out/gpu_mfu_3b.md"
part decode 130 "$py" scripts/gpu_decode.py --family llama3_1 --out "$out/gpu_decode.md"
budget=$(( $(left) - 15 ))
part e2e $((budget + 10)) "$py" scripts/gpu_e2e.py --families llama3_1 --budget-s "$budget" \
  --run-timeout-s 100 --out "$out/gpu_e2e.md"
echo "== done after $(( $(date +%s) - start ))s"
