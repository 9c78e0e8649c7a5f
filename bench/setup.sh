#!/usr/bin/env bash
# Creates bench/.venv with pinned Dask, distributed, numpy, h5py, dask-jobqueue and HyperQueue,
# used only to run them side by side with rdask-jobqueue in the benchmarks. Python is never part of the
# product. Idempotent: when the venv exists and every pinned version is installed, it installs
# nothing and only prints the versions.
#
#   bash bench/setup.sh            # uses `python3` on PATH
#   PYTHON=python3.11 bash bench/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

# Pinned versions (the newest on PyPI when this was written). Change them here only.
pins=(
  "dask==2026.8.0"
  "distributed==2026.8.0"
  "numpy==2.4.6"
  "h5py==3.16.0"
  "dask-jobqueue==0.9.0"
  # HyperQueue's Python API; its wheel carries the server and worker (bench/tasks.sh).
  "hyperqueue==0.27.0"
)

# Prints the names of pinned packages whose installed version differs (or that are missing);
# exits 0 in every case.
missing() {
  "$venv/bin/python" - "${pins[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(pin)
EOF
}

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv"
fi

todo="$(missing)"
if [[ -n "$todo" ]]; then
  echo "setup: installing: $(echo $todo)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  todo="$(missing)"
  if [[ -n "$todo" ]]; then
    echo "setup: still not at the pinned version after install: $(echo $todo)" >&2
    exit 1
  fi
else
  echo "setup: all pinned versions already installed; nothing to do"
fi

"$venv/bin/python" - <<'EOF'
import sys
from importlib.metadata import version
print(f"python {sys.version.split()[0]} ({sys.executable})")
for name in ("dask", "distributed", "numpy", "h5py", "dask-jobqueue", "psutil", "hyperqueue"):
    print(f"{name} {version(name)}")
EOF
