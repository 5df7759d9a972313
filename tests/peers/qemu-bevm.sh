#!/bin/bash
# A backend VM under stock QEMU 7.2 (TCG, -M pc, QMP on a Unix socket) served by vhost-pcid
# with backend-vm=QMP: frontends (vp-vm --frontend --vhost-user, a process with a sealed
# power-of-two memfd as RAM, standing in for a second guest) connect to the daemon, and
#   1. the first one's vhost-pci device appears in the backend guest as two 1af4:1110
#      functions; the guest reads the info window with devmem (magic, status, uuid,
#      memory_peer) and pairs it with the memory function whose IVPosition matches;
#      vhost-pci-ctl names the same two PCI addresses and uuid;
#   2. a second frontend makes a second pair;
#   3. both frontends leave: both pairs disappear from the guest (device_del, ACPI
#      hot-unplug), the daemon removes the chardevs and memory backends, and its run
#      directory is empty.
#
#   tests/peers/qemu-bevm.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kit cannot be had, 0 on success,
# 1 on failure.
set -uo pipefail
vp_prog=qemu-bevm
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/daemon.log" ] && tail -20 "$work/daemon.log" | sed 's/^/  daemon: /'
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-bevm.XXXXXX)
gpid='' dpid='' f1='' f2=''
cleanup() {
	for p in $f1 $f2 $dpid $gpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }

wait_serial() { vp_wait_serial "$work/serial.log" "$gpid" "$@"; }
lines() { wc -l <"$work/serial.log" 2>/dev/null || echo 0; }

frontend() {
	"$vm" --frontend --vhost-user --connect "$work/net0.sock" --ram 4M --app sink --quiet \
		--connect-timeout 30 >>"$work/fe$1.out" 2>&1 &
}

# Check the guest's view of the newest pair against vhost-pci-ctl: PCI addresses, uuid.
check_pair() {
	local from=$1 line info mem uuid
	line=$(tail -n +"$from" "$work/serial.log" | grep "bevm: pair info" | tail -1)
	info=$(sed -n 's/.* pair info \([^ ]*\) memory \([^ ]*\) .*/\1/p' <<<"$line")
	mem=$(sed -n 's/.* pair info \([^ ]*\) memory \([^ ]*\) .*/\2/p' <<<"$line")
	uuid=$(sed -n 's/.* uuid \([^ ]*\) .*/\1/p' <<<"$line")
	grep -q "magic 0x49435054534F4856\|magic 0x49435054534f4856" <<<"$line" ||
		fail "no magic in the info window: $line"
	grep -q "status 0x0*3 " <<<"$line" || fail "status is not PRESENT|READY: $line"
	[ "$mem" != none ] || fail "no memory function pairs with the info function: $line"
	json list | python3 -c '
import json, sys
info, mem, uuid = sys.argv[1:4]
for d in json.load(sys.stdin)["devices"]:
    b = d.get("backend") or {}
    if b.get("info_pci") and "0000:" + b["info_pci"] == info:
        ok = "0000:" + b["memory_pci"] == mem and d["uuid"] == uuid and b["state"] == "plugged"
        print("qemu-bevm: device %d: info %s memory %s uuid %s: %s" %
              (d["id"], info, mem, uuid, "matches" if ok else "MISMATCH %r" % b))
        sys.exit(0 if ok else 1)
print("qemu-bevm: vhost-pci-ctl lists no device at", info)
sys.exit(1)' "$info" "$mem" "$uuid" || fail "vhost-pci-ctl disagrees with the guest"
}

# An initramfs of our own: the shared cache's may be rebuilt from another tree meanwhile.
"$here/../guest/mkinitrd.sh" -n -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
	fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$here/../guest/run-guest.sh" -t bevm --name qemu-bevm --initrd "$work/initrd.cpio" \
	-e VP_BEVM_PAIRS=2 -T 300 -l "$work/serial.log" \
	-q -qmp -q "unix:$work/qmp.sock,server=on,wait=off" >"$work/guest.out" 2>&1 &
gpid=$!
wait_serial 60 "bevm: waiting" || { tail -20 "$work/guest.out"; fail "the guest did not start its test"; }

"$pcid" --server "path=$work/net0.sock,id=net0,backend-vm=$work/qmp.sock,backend-grace=60" \
	--control "$work/ctl.sock" --run-dir "$work/run" --log-level debug 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

# 1. One frontend: one pair.
from=$(lines)
frontend 1
f1=$!
wait_serial 90 "bevm: pairs 1" "$from" || fail "no pair appeared in the backend guest"
check_pair "$from"

# 2. A second frontend: a second pair.
from=$(lines)
frontend 2
f2=$!
wait_serial 90 "bevm: pairs 2" "$from" || fail "no second pair appeared"
check_pair "$from"

# 3. Both leave: both pairs go.
kill "$f1" "$f2"; wait "$f1" "$f2" 2>/dev/null; f1='' f2=''
wait "$gpid"
grc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
n=$(grep -c "unplugged from backend VM" "$work/daemon.log")
[ "$n" = 2 ] || fail "$n unplugs logged, expected 2"
[ -z "$(ls -A "$work/run")" ] || fail "run directory not empty: $(ls "$work/run")"
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS"
