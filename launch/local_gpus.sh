#!/usr/bin/env bash
# Runs a sweep on this machine's GPUs: a thin wrapper of `tfrewind sweep --launch=local`
# (tfrewind/launch.py), kept for old scripts.
#
#   launch/local_gpus.sh --flagfile=flags/resnet20_one_shot.flags --seeds=1,2,3 --per_gpu=2
#
# GPUS="0 1" still chooses the GPUs (default: every GPU that CUDA_VISIBLE_DEVICES or nvidia-smi
# names). Each line's log is launch.log in its run folder; a failed line gives exit status 1,
# and the same command again resumes.
set -euo pipefail
if [ -n "${GPUS:-}" ]; then
  exec tfrewind sweep "$@" --launch=local --gpus="$(echo "$GPUS" | tr ' ' ',')"
fi
exec tfrewind sweep "$@" --launch=local
