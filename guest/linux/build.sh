#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build vhost_pci_net.ko out of tree against the Debian 12 guest kernel's headers
# (tests/guest/setup.sh --headers installs them), with W=1, and fail on any warning.
#
#   guest/linux/build.sh [-o OUTDIR] [-k KDIR] [--clean]
#
# The build runs in a copy of guest/linux/ under OUTDIR (default /tmp/vp-kmod-build), so
# the source tree stays clean; lib/ and include/ are used in place. Prints the .ko's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=/tmp/vp-kmod-build kdir='' clean=0
while [ $# -gt 0 ]; do
    case $1 in
    -o) out=$2; shift ;;
    -k) kdir=$2; shift ;;
    --clean) clean=1 ;;
    -h | --help) sed -n '3,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$kdir" ]; then
    env=${VP_GUEST_CACHE:-/var/cache/vhost-pci-guest}/guest.env
    [ -r "$env" ] || { echo "build.sh: no $env: run tests/guest/setup.sh --headers" >&2; exit 2; }
    # shellcheck disable=SC1090
    . "$env"
    kdir=$VP_KBUILD
fi
[ -d "$kdir" ] || { echo "build.sh: no headers at $kdir: tests/guest/setup.sh --headers" >&2; exit 2; }
[ $clean = 0 ] || rm -rf "$out"
mkdir -p "$out"
# A copy with the same layout relative to lib/ and include/: symlink those.
src=$out/src
mkdir -p "$src/guest/linux"
ln -sfn "$top/lib" "$src/lib"
ln -sfn "$top/include" "$src/include"
cp -a "$here/Kbuild" "$here/Makefile" "$here"/*.c "$here"/*.h "$src/guest/linux/"
rm -rf "$src/guest/linux/compat"
cp -a "$here/compat" "$src/guest/linux/compat"
log=$out/build.log
if ! make -C "$kdir" M="$src/guest/linux" W=1 modules >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: build failed" >&2
    exit 1
fi
if grep -E 'warning:|error:' "$log" >&2; then
    echo "build.sh: warnings (W=1), see $log" >&2
    exit 1
fi
echo "$src/guest/linux/vhost_pci_net.ko"
