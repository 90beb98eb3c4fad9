# Sourced by the scripts that launch mpirun on a workstation or CI box.
# mpirun refuses root unless told (containers and CI run as root); the
# ptrace-based single-copy transport is refused inside containers.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Allow more ranks than cores (a 2-core box runs the 4-rank tests).
export OMPI_MCA_rmaps_base_oversubscribe=1
# A host cut off from mpirun (network down, powered off) closes no connection:
# mpirun notices only through TCP keepalives, by default after 300 + 9 x 20 s
# of silence, and until then it hangs, even after the ranks on this side
# aborted. With these it exits 205 (lost a daemon) about 2 minutes in.
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-60}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-10}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-6}
