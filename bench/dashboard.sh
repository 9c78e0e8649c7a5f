#!/usr/bin/env bash
# What the live dashboard costs the scheduler (docs/benchmarks.md, docs/observability.md):
# no-op throughput with the dashboard open in headless Chromium and /metrics scraped every
# second, against a cluster without one, in alternating rounds of the same run; and the
# scheduler process's memory with 64 workers before and after the dashboard is attached.
#
#   bash bench/dashboard.sh                    # 7 rounds of 50,000 tasks per side
#   ROUNDS=3 TASKS=20000 bash bench/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
command -v chromium >/dev/null || { echo "chromium is missing: tests/env/install.sh installs it" >&2; exit 2; }
cargo build --release --quiet
echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)" >&2
target/release/rdask-jobqueue bench dashboard --rounds "${ROUNDS:-7}" --tasks "${TASKS:-50000}" \
  --memory-workers "${MEMORY_WORKERS:-64}" > bench/results/dashboard.json
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat bench/results/dashboard.json
