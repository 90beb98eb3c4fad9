#!/usr/bin/env bash
# Installs what tpinfer needs to build and test from Debian/Ubuntu packages.
# Idempotent: installs only what is missing; does nothing when all is there.
set -euo pipefail
packages=(build-essential cmake pkg-config git openmpi-bin libopenmpi-dev libhdf5-dev
          libboost-program-options-dev nlohmann-json3-dev libgtest-dev libxxhash-dev libpcre2-dev procps
          python3 python3-jinja2 curl ca-certificates iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
