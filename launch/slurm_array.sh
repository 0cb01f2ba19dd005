#!/usr/bin/env bash
# One Slurm array task per line of a jobs file made by `tfrewind sweep --print`:
#
#   tfrewind sweep --flagfile=flags/wrn16_8_iterative.flags --seeds=1,2 --print > jobs.txt
#   sbatch --array=1-$(wc -l < jobs.txt) launch/slurm_array.sh jobs.txt
#
# Tasks that need the same dense network wait on its lock while one of them trains it; to keep
# GPUs from idling on it, run two arrays, `--print --stage=dense` then `--print --stage=branches`
# with --dependency=afterok on the first (launch/slurm_two_arrays.sh).
# Pre-emption loses nothing: on SIGTERM tfrewind finishes the step it is in, checkpoints that
# step and exits 143; this script then requeues the task, whose rerun resumes at that step.
# Two minutes before the time limit Slurm sends this shell SIGUSR1, and it passes SIGTERM on
# (--signal=TERM@120 itself would reach only srun job steps, and on a pre-emption, when Slurm
# signals every process, a forwarded second SIGTERM would mean "stop at once").
#SBATCH --job-name=tfrewind
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%A_%a.out
set -uo pipefail
jobs_file=${1:?usage: sbatch --array=1-N launch/slurm_array.sh jobs.txt}
line=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$jobs_file")
echo "task ${SLURM_ARRAY_TASK_ID}: ${line}"
eval "exec $line" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' USR1  # the time limit is near: stop at a step boundary
trap ':' TERM                              # pre-emption: Slurm signals tfrewind itself
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid"
status=$?
if [ "$status" -eq 143 ]; then
  echo "task ${SLURM_ARRAY_TASK_ID}: stopped by SIGTERM at a checkpointed step; requeueing"
  scontrol requeue "${SLURM_JOB_ID}"
fi
exit "$status"
