# Sourced by the scripts that launch mpirun on a workstation or CI box.
# mpirun refuses root unless told (containers and CI run as root); the
# ptrace-based single-copy transport is refused inside containers.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Allow more ranks than cores (a 2-core box runs the 4-rank tests).
export OMPI_MCA_rmaps_base_oversubscribe=1
