#!/bin/bash
# A running stock QEMU 7.2 guest (TCG, -M pc) gets an ivshmem-doorbell hot-plugged over
# QMP by the daemon's own QMP client and ivshmem server (tests/peers/ivshmem_smoke.c):
#   1. the guest sees 1af4:1110 appear, reads the host's marker through BAR2 (a sealed
#      1 MiB memfd), checks IVPosition, and rings the host's virtual peer (vector 2);
#   2. the host sees that eventfd fire, sends device_del; the guest releases the device
#      (ACPI hotplug), QEMU sends DEVICE_DELETED, the guest sees it gone;
#   3. chardev-remove: the ivshmem server sees QEMU's client leave.
#
#   tests/peers/qemu-ivshmem.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# Only VHOST_PCID's build directory is used: ivshmem-smoke is found at
# BUILD/tests/peers/ivshmem-smoke. Exits 77 with "SKIP: reason" when QEMU or the guest
# kit cannot be had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-ivshmem
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID [VHOST_PCI_CTL VP_VM]}")
smoke=$(dirname "$pcid")/../tests/peers/ivshmem-smoke
marker=0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' ' | sed 's/^./1/')
id=3 peer=5

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/smoke.out" ] && sed 's/^/  /' "$work/smoke.out" | tail -20
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ -x "$smoke" ] || { echo "$vp_prog: FAIL: no $smoke (build it first)"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-ivshmem.XXXXXX)
gpid='' spid=''
cleanup() {
	for p in $spid $gpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

# wait_serial SECONDS PATTERN: a guest marker, as long as the guest runs.
wait_serial() {
	local _
	for _ in $(seq $(($1 * 10))); do
		grep -q -- "$2" "$work/serial.log" 2>/dev/null && return 0
		kill -0 "$gpid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# An initramfs of our own: the shared cache's may be rebuilt from another tree meanwhile.
"$here/../guest/mkinitrd.sh" -n -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
	fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$here/../guest/run-guest.sh" -t ivshmem --name qemu-ivshmem --initrd "$work/initrd.cpio" \
	-e VP_IVS_MARKER="$marker" -e VP_IVS_ID=$id -e VP_IVS_PEER=$peer -T 60 \
	-l "$work/serial.log" -q -qmp -q "unix:$work/qmp.sock,server=on,wait=off" -q -no-shutdown \
	>"$work/guest.out" 2>&1 &
gpid=$!

# Plug only once the guest looks for the device (it fails if one is there before).
wait_serial 40 "ivshmem: waiting" || { tail -20 "$work/guest.out"; fail "the guest did not start its test"; }
timeout 50 "$smoke" "$work/qmp.sock" "$work/ivshmem.sock" "$marker" $id $peer 45 \
	>"$work/smoke.out" 2>&1 &
spid=$!
wait "$spid"
src=$?
spid=''
wait "$gpid"
grc=$?
gpid=''
sed 's/^/  /' "$work/smoke.out"
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$src" = 0 ] || fail "ivshmem-smoke failed (rc $src)"
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
grep -q "event DEVICE_DELETED vpivs0" "$work/smoke.out" || fail "no DEVICE_DELETED seen"
echo "$vp_prog: PASS"
