# Sourced by the whole-job gpu tests, with BUILD_DIR as $1: skips (exit 77)
# without a visible GPU; sets root, B (the tpinfer binary) and tmp (removed at
# exit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$1/tpinfer
# BACKEND=cpu (for the scripts that run --backend "${BACKEND:-cuda}"): the same
# checks on the cpu backend, without a GPU: a check of the script itself.
if [ "${BACKEND:-cuda}" != cpu ] && { ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; }; then
  echo "skipped: no GPU visible"
  exit 77
fi
source "$root/tools/mpirun-env.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
