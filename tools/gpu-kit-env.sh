# shellcheck shell=bash
# Sourced (bash) on the GPU machine, by tools/gpu.sh or by hand before running
# tpinfer there: unpacks the GPU kit (tools/make-gpu-kit.sh; .gpu-kit/ in the
# checkout, or GPU_KIT) into GPU_KIT_ROOT (/opt/kit) once, exports BOOST_KIT_DIR
# for CMake's Boost_DIR, and the machine's MPI and NCCL settings. GPU_KIT=none:
# no kit (a machine with libboost-program-options-dev installed). Returns 2,
# saying how to make the kit, when there is none.
_tpinfer_kit=${GPU_KIT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.gpu-kit}
if [ "$_tpinfer_kit" != none ]; then
  if ! compgen -G "$_tpinfer_kit/libboost-program-options*-dev_*.deb" >/dev/null; then
    echo "gpu-kit-env: no GPU kit in $_tpinfer_kit (the GPU machine lacks the Boost.Program_options" \
      "library): make it where apt works with 'bash tools/make-gpu-kit.sh' and carry .gpu-kit" \
      "with the checkout (docs/GPU_MACHINE.md), or set GPU_KIT=none where Boost is installed" >&2
    unset _tpinfer_kit
    return 2
  fi
  _tpinfer_kit_root=${GPU_KIT_ROOT:-/opt/kit}
  # A fresh machine starts bare; a warm one has unpacked some debs already
  # (a stamp per deb, so a kit that gained packages is completed).
  mkdir -p "$_tpinfer_kit_root/.unpacked" || return 1
  for _tpinfer_deb in "$_tpinfer_kit"/*.deb; do
    [ -e "$_tpinfer_kit_root/.unpacked/$(basename "$_tpinfer_deb")" ] && continue
    dpkg -x "$_tpinfer_deb" "$_tpinfer_kit_root" || return 1
    : >"$_tpinfer_kit_root/.unpacked/$(basename "$_tpinfer_deb")"
  done
  BOOST_KIT_DIR=$(compgen -G "$_tpinfer_kit_root/usr/lib/*/cmake/Boost-*" | head -1)
  export BOOST_KIT_DIR
  # find_path/find_library look in the kit too, should it carry more libraries.
  export CMAKE_PREFIX_PATH=$_tpinfer_kit_root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  unset _tpinfer_kit_root _tpinfer_deb
fi
unset _tpinfer_kit
# Commands run as root on the GPU machine; NVLink multicast must stay off on
# its shared hosts (never unset these there).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
