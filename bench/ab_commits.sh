#!/usr/bin/env bash
# Interleaved A/B of bench/throughput.py between two checkouts on the SAME servers, in one run:
#   bench/ab_commits.sh OLD_CHECKOUT NEW_CHECKOUT ROUNDS [throughput.py options...]
# Each round runs OLD then NEW (then NEW then OLD on the next round, so drift cancels); each
# checkout works in its own database (jobqueue_bench_a / _b). Needs DATABASE_URL and REDIS_URL
# (e.g. from `.venv/bin/python -m jobqueue_site.embedded up --profile test`). Prints one SUMMARY
# line per run, prefixed with the side.
set -euo pipefail
old=$1 new=$2 rounds=$3; shift 3
py="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then order=("A:$old" "B:$new"); else order=("B:$new" "A:$old"); fi
  for side in "${order[@]}"; do
    tag=${side%%:*} dir=${side#*:}
    line=$(cd "$dir" && "$py" bench/throughput.py --database "jobqueue_bench_${tag,,}" "$@" 2>/dev/null | grep '^SUMMARY')
    echo "round $i $tag ($(git -C "$dir" rev-parse --short HEAD)) $line"
  done
done
