#!/usr/bin/env bash
# Install every Debian 12 package the test suite needs, non-interactively.
#
# Safe to run again: when every package is already installed it does no
# network work at all (no `apt-get update`) and finishes in well under a second.
#
# Not installed on purpose:
#   - just: Debian 12 (bookworm) has no `just` package (apt-cache policy just:
#     nothing). PyPI ships the binary as `rust-just` if it is ever wanted.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  # SLURM (slurmctld + slurmd + client commands) and its authentication daemon.
  slurm-wlm munge
  # slurm/slurm.h and libslurm, for the `slurm-native` feature (bindgen, hence libclang-dev);
  # the default build needs neither.
  libslurm-dev
  # Grid Engine 8.1.9: qmaster, execd, and the q* client commands.
  gridengine-master gridengine-exec gridengine-client
  # MPI (rsmpi builds against OpenMPI through bindgen, hence libclang-dev).
  openmpi-bin libopenmpi-dev libclang-dev
  # HDF5 (hdf5-metno crate finds it through pkg-config) and its CLI tools.
  libhdf5-dev hdf5-tools pkg-config
  # Python reference for HDF5/array tests (Debian's /usr/bin/python3).
  python3-numpy python3-h5py
  # pip, for NumPy 2 as the reference for its promotion rules (Debian 12 has NumPy 1.24).
  python3-pip
  # ps/pgrep/pkill, used by the env scripts and the tests.
  procps
  # Headless browser for the dashboard tests (tests/dashboard.rs drives it over WebDriver).
  chromium chromium-driver
)

# One dpkg-query call for all packages: prints the names that are not fully
# installed. (dpkg-query exits non-zero for names it has never seen; that just
# means "missing", so its status is ignored.)
missing() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || printf '%s\n' "$p"
  done
}

mapfile -t MISSING < <(missing)
if ((${#MISSING[@]} == 0)); then
  echo "install.sh: all ${#PACKAGES[@]} packages already installed, nothing to do"
  exit 0
fi

# Grid Engine's postinst asks three questions; answer them so the install
# creates the cell `default` under SGE_ROOT=/var/lib/gridengine with this host
# as master. (Hostname resolution trap is handled in sge.sh.)
debconf-set-selections <<SEL
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $(hostname)
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridenginemaster string $(hostname)
gridengine-client shared/gridengineconfig boolean true
gridengine-client shared/gridenginecell string default
gridengine-client shared/gridenginemaster string $(hostname)
SEL

# Package lists on a fresh machine may be missing or stale (a stale list once
# made libhdf5-dev uninstallable here), so refresh them, but only now that
# something actually has to be installed.
apt-get update -qq

# --no-install-recommends: slurm-wlm recommends ~40 optional plugin packages
# (elasticsearch, influxdb, ipmi, rocm ...) and openmpi recommends gfortran;
# none are needed and they double the install time.
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${MISSING[@]}" </dev/null >/tmp/rdask-env-install.log 2>&1 || {
  echo "install.sh: apt-get install failed; last lines of /tmp/rdask-env-install.log:" >&2
  tail -n 30 /tmp/rdask-env-install.log >&2
  exit 1
}

echo "install.sh: installed ${#MISSING[@]} missing package(s): ${MISSING[*]}"
