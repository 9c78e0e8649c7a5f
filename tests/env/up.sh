#!/usr/bin/env bash
# Bring up the whole test environment: packages, a one-node SLURM, a one-node
# Grid Engine. Safe to run any number of times, from any directory, with no
# stdin and CI=true; when everything is already up it takes well under 2 s.
#
#   tests/env/up.sh            # then: cargo test ... (SLURM partition `debug`,
#                              #       SGE queue `all.q`, PE `smp`)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive

[[ $(id -u) == 0 ]] || { echo "up.sh: must run as root (installs packages, starts daemons)" >&2; exit 1; }

start=$SECONDS
"$HERE/install.sh" </dev/null
"$HERE/slurm.sh" </dev/null
"$HERE/sge.sh" </dev/null

slurm_version=$(sinfo --version 2>/dev/null | awk '{print $2}')
sge_version=$(dpkg-query -W -f='${Version}' gridengine-master 2>/dev/null || echo '?')
echo "up.sh: ready in $((SECONDS - start)) s:" \
  "SLURM $slurm_version partition=debug node=$(hostname);" \
  "Grid Engine $sge_version queue=all.q pe=smp (SGE_ROOT=/var/lib/gridengine, SGE_CELL=default)"
