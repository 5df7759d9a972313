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
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID [...]}")
host=$(dirname "$pcid")/../tests/peers/kmod-host
mac=52:54:00:6b:6d:01 uuid=6b6d6f64-2d68-6f73-742d-66726f6e7431 devid=42

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
    echo "$vp_prog: FAIL: $*"
    [ -f "$work/host.out" ] && sed 's/^/  host: /' "$work/host.out" | tail -20
    [ -f "$work/serial.log" ] && grep -h -E "VPGUEST|vpnet|vhost_pci" "$work/serial.log" |
        tail -20 | sed 's/^/  guest: /'
    exit 1
}

[ -x "$host" ] || { echo "$vp_prog: FAIL: no $host (build it first)"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" --headers >/dev/null || skip "tests/guest/setup.sh --headers failed"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-kmod.XXXXXX)
hpid=''
cleanup() {
    [ -z "$hpid" ] || { kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null; }
    rm -rf "$work"
}
trap cleanup EXIT

ko=$("$here/../../guest/linux/build.sh" -o "$work/kbuild" 2>"$work/kbuild.err") ||
    { cat "$work/kbuild.err"; fail "the module did not build warning-free"; }
echo "$vp_prog: module built warning-free (W=1): $(basename "$ko")"
"$here/../guest/mkinitrd.sh" -n -K "$ko" -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
    fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

timeout 200 "$host" "$work" 180 >"$work/host.out" 2>&1 &
hpid=$!
for _ in $(seq 100); do
    grep -q "kmod-host: listening" "$work/host.out" && break
    kill -0 "$hpid" 2>/dev/null || fail "kmod-host ended before listening"
    sleep 0.1
done
grep -q "kmod-host: listening" "$work/host.out" || fail "kmod-host did not listen in 10 s"

timeout 190 flock /tmp/vp-guest-boot.lock "$here/../guest/run-guest.sh" -t kmod --name qemu-kmod \
    --initrd "$work/initrd.cpio" -T 150 -l "$work/serial.log" --loglevel 6 \
    -e VP_KMOD_MAC=$mac -e VP_KMOD_UUID=$uuid -e VP_KMOD_ID=$devid \
    -q -object -q "memory-backend-file,id=vpinfo,mem-path=$work/info,size=8K,share=on" \
    -q -device -q "ivshmem-plain,memdev=vpinfo" \
    -q -chardev -q "socket,id=vpivs,path=$work/ivs.sock" \
    -q -device -q "ivshmem-doorbell,chardev=vpivs,vectors=3" \
    >"$work/guest.out" 2>&1
grc=$?
wait "$hpid"
hrc=$?
hpid=''
sed 's/^/  host: /' "$work/host.out"
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  guest: /'
[ "$grc" = 0 ] || { tail -5 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
[ "$hrc" = 0 ] || fail "kmod-host failed (rc $hrc)"
grep -q "kmod-host: STOP answered" "$work/host.out" || fail "the STOP was not answered"
echo "$vp_prog: PASS"
