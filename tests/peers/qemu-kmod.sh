#!/bin/bash
# The guest kernel driver end to end: build vhost_pci_net.ko (guest/linux/build.sh, W=1
# warning-free), start tests/peers/kmod_host.c (a frontend, its info window, the memory
# function's ivshmem server), boot the Debian 6.1 test guest with the two functions
# cold-plugged (ivshmem-plain on the window file, ivshmem-doorbell on the server) and run
# tests/guest/tests/kmod.sh in it: vpnet0 with the frontend's MAC and carrier, STOP
# answered, rmmod/insmod three times, a clean kernel log.
#
#   tests/peers/qemu-kmod.sh VHOST_PCID [...]
#
# VHOST_PCID only locates the build (as for the sibling tests): kmod-host is
# BUILD/tests/peers/kmod-host; no daemon runs.
#
# Exit 0 PASS, 77 SKIP (no root, no QEMU, no guest kernel or headers), 1 FAIL. The boot
# holds /tmp/vp-guest-boot.lock (one test guest at a time across test runs).
set -uo pipefail
vp_prog=qemu-kmod
here=$(cd "$(dirname "$0")" && pwd)
. "$here/kmod-lib.sh"

mac=52:54:00:6b:6d:01 uuid=6b6d6f64-2d68-6f73-742d-66726f6e7431 devid=42
kmod_prepare "${1:-}"
kmod_initrd
kmod_host_start 180
kmod_boot kmod 150 -e VP_KMOD_MAC=$mac -e VP_KMOD_UUID=$uuid -e VP_KMOD_ID=$devid
sed 's/^/  host: /' "$work/host.out"
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  guest: /'
[ "$grc" = 0 ] || { tail -5 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
[ "$hrc" = 0 ] || fail "kmod-host failed (rc $hrc)"
grep -q "kmod-host: STOP answered" "$work/host.out" || fail "the STOP was not answered"
echo "$vp_prog: PASS"
