#!/usr/bin/env bash
# Runs a sweep on one machine, one run per GPU at a time:
#
#   launch/local_gpus.sh --flagfile=flags/resnet20_one_shot.flags --seeds=1,2,3
#
# GPUs default to all that nvidia-smi lists (override: GPUS="0 1"). Runs that share a dense
# network wait for the one that trains it (a file lock in its run folder).
set -euo pipefail
gpus=${GPUS:-$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr '\n' ' ')}
[ -n "$gpus" ] || { echo "no GPU found: set GPUS=\"0 1\"" >&2; exit 1; }
mapfile -t jobs < <(tfrewind sweep "$@" --print)
echo "${#jobs[@]} runs on GPUs: $gpus"
declare -A busy=()
status=0
next=0
while [ $next -lt ${#jobs[@]} ] || [ ${#busy[@]} -gt 0 ]; do
  for gpu in $gpus; do
    pid=${busy[$gpu]:-}
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || status=$?
      unset "busy[$gpu]"
      pid=""
    fi
    if [ -z "$pid" ] && [ $next -lt ${#jobs[@]} ]; then
      CUDA_VISIBLE_DEVICES=$gpu bash -c "${jobs[$next]}" > "run_${next}.log" 2>&1 &
      busy[$gpu]=$!
      echo "GPU $gpu: ${jobs[$next]}"
      next=$((next + 1))
    fi
  done
  sleep 2
done
exit $status
