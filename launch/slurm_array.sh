#!/usr/bin/env bash
# One Slurm array task per line of a jobs file made by `tfrewind sweep --print`:
#
#   tfrewind sweep --flagfile=flags/wrn16_8_iterative.flags --seeds=1,2 --print > jobs.txt
#   sbatch --array=1-$(wc -l < jobs.txt) launch/slurm_array.sh jobs.txt
#
# Tasks that need the same dense network wait on its lock while one of them trains it; a
# pre-empted task rerun with the same line resumes from its last epoch checkpoint.
#SBATCH --job-name=tfrewind
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
jobs_file=${1:?usage: sbatch --array=1-N launch/slurm_array.sh jobs.txt}
line=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$jobs_file")
echo "task ${SLURM_ARRAY_TASK_ID}: ${line}"
eval "$line"
