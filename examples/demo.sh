#!/usr/bin/env bash
# The README's first command: build rdask-jobqueue and run its demo on the embedded local
# cluster (a scheduler and one worker process per core on this machine). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "examples/demo.sh: cargo not found; install the Rust toolchain (rustup, Rust >= 1.85) first" >&2
    exit 1
fi
cargo build --release --quiet
exec target/release/rdask-jobqueue demo "$@"
