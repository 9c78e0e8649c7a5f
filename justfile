# Developer shortcuts. `just` is not packaged for Debian 12: `cargo install just` (or use the
# commands below directly; every recipe is one line).

# The whole test suite with real SLURM and Grid Engine (installs and starts them).
test:
    bash tests/run.sh

# Format and lint as CI does.
lint:
    cargo fmt --check
    cargo clippy --all-targets --all-features -- -D warnings

fmt:
    cargo fmt

# Start the local SLURM and Grid Engine only.
env:
    bash tests/env/up.sh

# Benchmarks side by side with Dask (pip, in bench/.venv); see docs/benchmarks.md.
bench:
    bash bench/run.sh
