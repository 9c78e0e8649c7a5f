#!/usr/bin/env bash
# Strided and compressed reads (issue 17), rdask and dask.array side by side in one run:
# ROUNDS rounds, the two sides alternating who goes first, medians. Ours is the whole
# `array` command (start of 2 workers included); Dask's is compute only, on a warm
# LocalCluster (as bench/dask_array.py times it). Both: 2 worker processes x 1 thread.
#
#   bash bench/filters.sh                 # 3 rounds (about 10 minutes here)
#   ROUNDS=5 bash bench/filters.sh
#
# Each side runs from a clean environment (env -i): starting a Dask LocalCluster sets
# MALLOC_TRIM_THRESHOLD_ in its parent's environment, and anything started after it inherits
# it (our workers then run 2-3x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
dir=${BENCH_DIR:-/tmp/rdask-bench}
bin=${RDASK_BIN:-target/release/rdask-jobqueue}
py=bench/.venv/bin/python
clean=(env -i PATH=/usr/bin:/bin HOME="$HOME")
[[ -x $bin ]] || cargo build --release --quiet
[[ -x $py ]] || bash bench/setup.sh >/dev/null
x=$dir/x.h5
[[ -f $x ]] || "${clean[@]}" "$bin" bench array --file "$x" --repeat 1 --json >/dev/null
"${clean[@]}" "$py" bench/dask_array.py --file "$x" --make-filtered "$dir"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"

# name, file, expression, workers, threads per worker
ours=(
    "strided|$x|x[::2, ::2].sum()|2|1"
    "gzip1_sum|$dir/x-gzip1.h5|x.sum()|2|1"
    "gzip1_mean0|$dir/x-gzip1.h5|x.mean(axis=0)|2|1"
    "sg4_sum|$dir/x-shuffle-gzip4.h5|x.sum()|2|1"
    "lzf_sum|$dir/x-lzf.h5|x.sum()|2|1"
    "rechunk|$x|x.rechunk((4096, 256)).sum()|2|1"
    "gzip1_1x1|$dir/x-gzip1.h5|x.sum()|1|1"
    "gzip1_1x2|$dir/x-gzip1.h5|x.sum()|1|2"
)
run_ours() {
    local r=$1
    for w in "${ours[@]}"; do
        IFS='|' read -r name file expr workers threads <<<"$w"
        local t0 t1
        t0=$(date +%s.%N)
        "${clean[@]}" "$bin" array "$expr" -i "x=$file:/x" --local "$workers" \
            --threads "$threads" --quiet >/dev/null
        t1=$(date +%s.%N)
        echo "{\"round\": $r, \"name\": \"$name\", \"s\": $(echo "$t1 - $t0" | bc)}" >>"$out/ours.jsonl"
    done
    echo "round $r: rdask done (load $(cut -d' ' -f1 /proc/loadavg))"
}
run_dask() {
    local r=$1
    "${clean[@]}" "$py" bench/dask_array.py --file "$x" --suite filters --filtered-dir "$dir" \
        --repeat 1 --json 2>/dev/null | tail -1 >>"$out/dask.jsonl"
    echo "round $r: dask done (load $(cut -d' ' -f1 /proc/loadavg))"
}
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then run_ours "$r"; run_dask "$r"; else run_dask "$r"; run_ours "$r"; fi
done
"${clean[@]}" "$py" bench/dask_array.py --file "$x" --floors "$dir" --repeat 3 --json >"$out/floors.json"
mkdir -p bench/results
cp "$out/ours.jsonl" bench/results/rdask-filters.jsonl
cp "$out/dask.jsonl" bench/results/dask-filters.jsonl
cp "$out/floors.json" bench/results/floors-filters.json

"$py" - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
ours = {}
for line in open(f"{out}/ours.jsonl"):
    j = json.loads(line)
    ours.setdefault(j["name"], []).append(j["s"])
dask = {}
for line in open(f"{out}/dask.jsonl"):
    for k, v in json.loads(line).items():
        if isinstance(v, float):
            dask.setdefault(k, []).append(v)
fl = json.load(open(f"{out}/floors.json"))
med = lambda v: statistics.median(v)
rows = [("x[::2, ::2].sum()", "strided", "floor_plain"),
        ("gzip-1 x.sum()", "gzip1_sum", "floor_gzip1"),
        ("gzip-1 x.mean(axis=0)", "gzip1_mean0", "floor_gzip1"),
        ("shuffle+gzip-4 x.sum()", "sg4_sum", "floor_shuffle-gzip4"),
        ("LZF x.sum()", "lzf_sum", "floor_lzf"),
        ("x.rechunk((4096, 256)).sum()", "rechunk", "floor_plain")]
print(f"{'2 GiB float64, chunks 1024x1024':<32} {'rdask s':>8} {'dask s':>8} {'floor s':>8} {'vs dask':>8} {'/ floor':>8}")
for label, key, fkey in rows:
    o = med(ours[key]); f = fl[fkey]
    d = med(dask[key]) if key in dask else float("nan")
    print(f"{label:<32} {o:>8.2f} {d:>8.2f} {f:>8.2f} {d / o:>7.2f}x {o / f:>7.2f}x")
one, two = med(ours["gzip1_1x1"]), med(ours["gzip1_1x2"])
print(f"gzip-1 x.sum(), 1 worker: 1 thread {one:.2f} s, 2 threads {two:.2f} s: {one / two:.2f}x")
print("rounds:", {k: [round(x, 2) for x in v] for k, v in ours.items()})
print("dask rounds:", {k: [round(x, 2) for x in v] for k, v in dask.items()})
PY
