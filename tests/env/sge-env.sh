# shellcheck shell=bash
# Source this (`. tests/env/sge-env.sh`) to set Grid Engine's environment.
#
# Not strictly needed: Debian's qsub/qstat/qdel/qconf in /usr/bin are wrappers
# that default to these same values (via /etc/default/gridengine), so a plain
# root shell works without it. It is here for code and tests that look at
# $SGE_ROOT / $SGE_CELL themselves, and to override a stray value inherited
# from elsewhere.
export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
