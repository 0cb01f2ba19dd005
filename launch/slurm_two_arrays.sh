#!/usr/bin/env bash
# A sweep on Slurm as two job arrays: every dense network first, then every branch, the second
# array held until the first has succeeded (--dependency=afterok), so that no GPU idles on a
# dense network's lock. Shared fine-tuning budgets are one line (tfrewind.prefixes).
#
#   launch/slurm_two_arrays.sh flags/renda_resnet56_one_shot.flags --seeds=1,2,3
#
# Writes dense.txt and branches.txt in the current folder; each task runs launch/slurm_array.sh
# (pre-emption and time limits: see there). Extra sbatch options: SBATCH_ARGS="--partition=gpu".
set -euo pipefail
flagfile=${1:?usage: launch/slurm_two_arrays.sh FLAGFILE [tfrewind flags]}
shift
here=$(cd "$(dirname "$0")" && pwd)
tfrewind sweep --flagfile="$flagfile" "$@" --print --stage=dense > dense.txt
tfrewind sweep --flagfile="$flagfile" "$@" --print --stage=branches > branches.txt
# shellcheck disable=SC2086
first=$(sbatch --parsable ${SBATCH_ARGS:-} --array=1-"$(wc -l < dense.txt)" \
        "$here/slurm_array.sh" dense.txt)
# shellcheck disable=SC2086
sbatch ${SBATCH_ARGS:-} --dependency=afterok:"${first%%;*}" \
       --array=1-"$(wc -l < branches.txt)" "$here/slurm_array.sh" branches.txt
echo "dense array ${first%%;*}: $(wc -l < dense.txt) tasks; branches: $(wc -l < branches.txt) tasks after it"
