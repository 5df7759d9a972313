#!/bin/bash
# The guest kernel driver's data path end to end: build vhost_pci_net.ko (W=1, warning-free)
# and tests/peers/kmod_guest.c (static, for the guest image), start tests/peers/kmod_host.c
# in "data hostile" mode (a vp_netfe frontend behind which kmod_net.c plays a tiny host at
# 10.77.0.1), boot the Debian 6.1 test guest with the two functions cold-plugged and run
# tests/guest/tests/kmod-data.sh: ping both ways, UDP bulk both ways with every byte
# checked at MTU 1500 and 9000, rmmod/insmod under traffic, then a hostile descriptor that
# must take only the link down (reason in sysfs, dmesg and the driver page), with a clean
# kernel log; then a second, short boot whose hostile descriptor is a loop.
#
#   [VP_KD_MIB=N] [VP_KD_STRESS=N] [VP_KD_LENIENT=1] [VP_KMOD_SMP=S]
#       tests/peers/qemu-kmod-data.sh VHOST_PCID [...]
#
# VHOST_PCID only locates the build; VP_KD_MIB (default 2) MiB per bulk run and direction;
# VP_KD_STRESS (default 10) rounds of 20000 small datagrams both ways at once. A lost
# notification fails the run (kmod-host prints it with the ring's indexes: "MISSED
# WAKE-UP" or "MISSED KICK"); VP_KD_LENIENT=1 only counts it. VP_KMOD_SMP: kmod-lib.sh.
# Exit 0 PASS, 77 SKIP (no root, no QEMU, no guest kernel or headers, no static libc),
# 1 FAIL. The boot holds /tmp/vp-guest-boot.lock.
set -uo pipefail
vp_prog=qemu-kmod-data
here=$(cd "$(dirname "$0")" && pwd)
. "$here/kmod-lib.sh"

mib=${VP_KD_MIB:-2}
kmod_prepare "${1:-}"
${CC:-cc} -O2 -static -Wall -Wextra -Werror -o "$work/kmod-guest" "$here/kmod_guest.c" \
    2>"$work/kg.err" || skip "cannot build kmod-guest static: $(head -3 "$work/kg.err")"
kmod_initrd -f "$work/kmod-guest:/kmod-guest"
# run HOSTILE-KIND SECS [guest env...]: one boot against kmod-host "data KIND".
run() {
    local kind=$1 secs=$2
    shift 2
    rm -f "$work/info" "$work/ivs.sock" "$work/serial.log"
    kmod_host_start $((secs + 30)) data "$kind" ${VP_KD_LENIENT:+lenient}
    kmod_boot kmod-data "$secs" -e VP_KD_HOSTILE=1 "$@"
    grep -v "driver page gen" "$work/host.out" | sed "s/^/  host($kind): /"
    grep -h "VPGUEST: INFO" "$work/serial.log" | sed "s/^/  guest($kind): /"
    [ "$grc" = 0 ] || { tail -5 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
    grep -q "MISSED" "$work/host.out" &&
        echo "$vp_prog: NOTE: lost notifications ($kind): $(grep -c MISSED "$work/host.out")"
    [ "$hrc" = 0 ] || fail "kmod-host failed (rc $hrc)"
    grep -q "kmod-host: FAILED reported" "$work/host.out" ||
        fail "the driver page did not report the hostile descriptor"
    ! grep -q "MISMATCH" "$work/host.out" || fail "the host saw wrong frames"
}
run hostile 340 -e VP_KD_MIB="$mib" -e VP_KD_STRESS="${VP_KD_STRESS:-10}"
run loop 100 -e VP_KD_QUICK=1
echo "$vp_prog: PASS"
