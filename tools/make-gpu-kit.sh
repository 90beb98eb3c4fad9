#!/usr/bin/env bash
# Makes the GPU kit: the Debian packages the GPU machine lacks to build tpinfer
# (docs/GPU_MACHINE.md). That machine (Ubuntu 24.04, no package access) has
# Boost 1.83 headers but no Boost.Program_options library, and may lack the
# -dev files of xxHash (content hashes) and PCRE2 (the tokenizer's regexes), so
# the kit carries Debian 12's packages of them as .deb files (CMake links their
# static libraries there, so nothing is needed at run time); on the GPU machine
# tools/gpu-kit-env.sh unpacks them (dpkg -x, nothing installed). Debian 12's
# builds need glibc 2.36, older than the GPU machine's 2.39, so they run there.
# Run it where apt works (a Debian 12 machine, this one), once; it replaces an
# older kit. The default folder, .gpu-kit/ in the checkout, is git-ignored.
#   bash tools/make-gpu-kit.sh [DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kit=${1:-$root/.gpu-kit}
packages=(libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
          libxxhash-dev libxxhash0 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0
          libpcre2-posix3)
if ! command -v apt-get >/dev/null; then
  echo "make-gpu-kit: apt-get not found: run this on a Debian 12 machine (docs/GPU_MACHINE.md)" >&2
  exit 2
fi
# Downloaded beside the kit, then swapped in, so a failed download keeps the old kit.
new=$(mktemp -d "${kit%/}.new.XXXXXX")
trap 'rm -rf "$new"' EXIT
if ! (cd "$new" && apt-get download -q "${packages[@]}" 2>/dev/null); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  if ! (cd "$new" && apt-get download -q "${packages[@]}"); then
    echo "make-gpu-kit: apt cannot download ${packages[*]} (Debian 12's Boost 1.74; a newer" \
      "Debian's libraries may need a newer glibc than the GPU machine's)" >&2
    exit 1
  fi
fi
rm -rf "$kit"
mv "$new" "$kit"
chmod 755 "$kit"
echo "make-gpu-kit: $(du -sh "$kit" | cut -f1) in $kit: $(cd "$kit" && echo *.deb)"
