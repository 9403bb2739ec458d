#!/bin/bash
# landwatch on Slurm: one run split over an 8-task job array, then a merge job that starts when
# the array is done. Submit from a login node:   ./slurm-array.sh /shared/landwatch/nightly.toml
# Every task lists the same source, computes the same plan and run id, and processes the tiles
# whose id hashes to $SLURM_ARRAY_TASK_ID. Output and archive must be on a shared filesystem.
# A task that is requeued or resubmitted resumes from its checkpoints.
set -euo pipefail

PIPELINE=${1:?usage: slurm-array.sh PIPELINE.toml [SHARDS]}
SHARDS=${2:-8}
OUTPUT=$(sed -n 's/^output *= *"\(.*\)".*/\1/p' "$PIPELINE" | head -1)
case "$OUTPUT" in /*) ;; *) OUTPUT="$(cd "$(dirname "$PIPELINE")" && pwd)/$OUTPUT" ;; esac

ARRAY_JOB=$(sbatch --parsable \
  --job-name=landwatch-shard \
  --array=0-$((SHARDS - 1)) \
  --cpus-per-task=4 --mem=12G --time=04:00:00 \
  --requeue \
  --output=landwatch-shard-%A_%a.log \
  --wrap="landwatch run '$PIPELINE' --shard \${SLURM_ARRAY_TASK_ID}/$SHARDS --log-json; rc=\$?; [ \$rc -le 1 ] || exit \$rc")

# afterany: merge even if a shard failed hard; merge then refuses (exit 2) and names the missing shard.
sbatch --parsable \
  --job-name=landwatch-merge \
  --dependency=afterany:"$ARRAY_JOB" \
  --cpus-per-task=2 --mem=4G --time=00:30:00 \
  --output=landwatch-merge-%j.log \
  --wrap="landwatch merge \"\$(ls -td '$OUTPUT'/shards/*/ | head -1)\" --log-json"

echo "submitted shards as job $ARRAY_JOB (+ merge)"
