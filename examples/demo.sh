#!/usr/bin/env bash
# The README's first command: build rdask-jobqueue and run its demo on the embedded local
# cluster (a scheduler and one worker process per core on this machine). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "examples/demo.sh: cargo not found; install the Rust toolchain (rustup, Rust >= 1.85) first" >&2
    exit 1
fi
# The build links the system's HDF5 (found through pkg-config): install it when missing.
need=()
for p in libhdf5-dev pkg-config; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || need+=("$p")
done
if ((${#need[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "examples/demo.sh: needs ${need[*]}: run as root, or: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "examples/demo.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet
exec target/release/rdask-jobqueue demo "$@"
