#!/usr/bin/env bash
# Multi-worker example: N local processes train one network together with
# MultiWorkerMirroredStrategy over 127.0.0.1. On real nodes, put each host's address in
# TF_CONFIG instead (or run under Slurm, where --distribution=multi_worker reads the allocation).
#
#   launch/multi_worker_local.sh 2 --flagfile=flags/quickstart.flags --root=runs_mw
set -euo pipefail
workers=${1:?usage: multi_worker_local.sh NUM_WORKERS [tfrewind run flags...]}
shift
base=${TFREWIND_PORT:-23456}
hosts=""
for ((i = 0; i < workers; i++)); do hosts+="${hosts:+,}\"127.0.0.1:$((base + i))\""; done
pids=()
for ((i = 0; i < workers; i++)); do
  TF_CONFIG="{\"cluster\": {\"worker\": [${hosts}]}, \"task\": {\"type\": \"worker\", \"index\": ${i}}}" \
    tfrewind run --distribution=multi_worker "$@" > "worker${i}.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
tail -n 12 worker0.log
exit $status
