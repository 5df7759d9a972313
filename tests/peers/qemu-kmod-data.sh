#!/bin/bash
# The guest kernel driver's data path end to end: build vhost_pci_net.ko (W=1, warning-free)
# and tests/peers/kmod_guest.c (static, for the guest image), start tests/peers/kmod_host.c
# in "data hostile" mode (a vp_netfe frontend behind which kmod_net.c plays a tiny host at
# 10.77.0.1), boot the Debian 6.1 test guest with the two functions cold-plugged and run
# tests/guest/tests/kmod-data.sh: ping both ways, UDP bulk both ways with every byte
# checked at MTU 1500 and 9000, rmmod/insmod under traffic, then a hostile descriptor that
# must take only the link down (reason in sysfs, dmesg and the driver page), with a clean
# kernel log.
#
#   [VP_KD_MIB=N] tests/peers/qemu-kmod-data.sh VHOST_PCID [...]
#
# VHOST_PCID only locates the build; VP_KD_MIB (default 2) MiB per bulk run and direction.
# Exit 0 PASS, 77 SKIP (no root, no QEMU, no guest kernel or headers, no static libc),
# 1 FAIL. The boot holds /tmp/vp-guest-boot.lock.
set -uo pipefail
vp_prog=qemu-kmod-data
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID [...]}")
mib=${VP_KD_MIB:-2}
host=$(dirname "$pcid")/../tests/peers/kmod-host

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
    echo "$vp_prog: FAIL: $*"
    [ -f "$work/host.out" ] && sed 's/^/  host: /' "$work/host.out" | tail -30
    [ -f "$work/serial.log" ] && grep -h -E "VPGUEST|vpnet|vhost_pci|WARNING|BUG|Oops" \
        "$work/serial.log" | tail -30 | sed 's/^/  guest: /'
    exit 1
}

[ -x "$host" ] || { echo "$vp_prog: FAIL: no $host (build it first)"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" --headers >/dev/null || skip "tests/guest/setup.sh --headers failed"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-kmod-data.XXXXXX)
hpid=''
cleanup() {
    [ -z "$hpid" ] || { kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null; }
    rm -rf "$work"
}
trap cleanup EXIT

ko=$("$here/../../guest/linux/build.sh" -o "$work/kbuild" 2>"$work/kbuild.err") ||
    { cat "$work/kbuild.err"; fail "the module did not build warning-free"; }
echo "$vp_prog: module built warning-free (W=1): $(basename "$ko")"
${CC:-cc} -O2 -static -Wall -Wextra -Werror -o "$work/kmod-guest" "$here/kmod_guest.c" \
    2>"$work/kg.err" || skip "cannot build kmod-guest static: $(head -3 "$work/kg.err")"
"$here/../guest/mkinitrd.sh" -n -K "$ko" -f "$work/kmod-guest:/kmod-guest" \
    -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
    fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

timeout 330 "$host" "$work" 310 data hostile >"$work/host.out" 2>&1 &
hpid=$!
for _ in $(seq 100); do
    grep -q "kmod-host: listening" "$work/host.out" && break
    kill -0 "$hpid" 2>/dev/null || fail "kmod-host ended before listening"
    sleep 0.1
done
grep -q "kmod-host: listening" "$work/host.out" || fail "kmod-host did not listen in 10 s"

timeout 320 flock /tmp/vp-guest-boot.lock "$here/../guest/run-guest.sh" -t kmod-data \
    --name qemu-kmod-data --initrd "$work/initrd.cpio" -T 280 -l "$work/serial.log" \
    --loglevel 6 -e VP_KD_MIB="$mib" -e VP_KD_HOSTILE=1 \
    -q -object -q "memory-backend-file,id=vpinfo,mem-path=$work/info,size=8K,share=on" \
    -q -device -q "ivshmem-plain,memdev=vpinfo" \
    -q -chardev -q "socket,id=vpivs,path=$work/ivs.sock" \
    -q -device -q "ivshmem-doorbell,chardev=vpivs,vectors=3" \
    >"$work/guest.out" 2>&1
grc=$?
wait "$hpid"
hrc=$?
hpid=''
grep -v "driver page gen" "$work/host.out" | sed 's/^/  host: /'
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  guest: /'
[ "$grc" = 0 ] || { tail -5 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
[ "$hrc" = 0 ] || fail "kmod-host failed (rc $hrc)"
grep -q "kmod-host: FAILED reported" "$work/host.out" ||
    fail "the driver page did not report the hostile descriptor"
! grep -q "MISMATCH" "$work/host.out" || fail "the host saw wrong frames"
echo "$vp_prog: PASS"
