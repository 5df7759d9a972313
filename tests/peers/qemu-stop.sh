#!/bin/bash
# STOP end to end with a stock QEMU 7.2 guest (TCG, Debian kernel, unmodified
# virtio_net) whose vhost-pcid server hands its device to a userspace backend
# VM (vp-vm --backend, echo app). The guest resets its NIC twice (driver
# unbound and bound again): each time QEMU stops the rings with
# GET_VRING_BASE, the daemon holds the reply until the backend acked STOP,
# and QEMU starts the rings again. Checked:
#   - frames come back after every reset (the guest script passes);
#   - the daemon logged a backend ack for each reset, and no missed ack
#     (vhost-pci-ctl shows stop_timeouts 0);
#   - the backend let go of the device at each stop and took it again.
#
#   tests/peers/qemu-stop.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kernel cannot be had,
# 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-stop
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
mac=52:54:00:a1:b2:c5
rounds=2

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/daemon.log" ] && tail -15 "$work/daemon.log" | sed 's/^/  daemon: /'
	[ -f "$work/backend.log" ] && tail -8 "$work/backend.log" | sed 's/^/  backend: /'
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (packages, memfd guests)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"

work=$(mktemp -d /tmp/vp-qemu-stop.XXXXXX)
dpid='' gpid='' bpid=''
cleanup() {
	for p in $bpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }

# Our own initramfs: the shared cache may be rebuilt from another tree meanwhile.
"$here/../guest/mkinitrd.sh" -o "$work/initrd.cpio" >/dev/null 2>&1 || fail "mkinitrd.sh failed"

"$vm" --backend --listen "$work/be.sock" --app echo --mode irq --quiet \
	--log-level info >"$work/backend.out" 2>"$work/backend.log" &
bpid=$!
"$pcid" --server "path=$work/net0.sock,id=net0,backend=$work/be.sock,stop-timeout=1000" \
	--control "$work/ctl.sock" --log-level debug 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && [ -S "$work/be.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

"$here/../guest/run-guest.sh" -t stopreset -n "$work/net0.sock" --mac "$mac" \
	-e VP_MAC="$mac" -e VP_ROUNDS=$rounds -T 180 --name qemu-stop \
	--initrd "$work/initrd.cpio" -l "$work/serial.log" >"$work/guest.out" 2>&1 &
gpid=$!
wait "$gpid"
rc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$rc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $rc)"; }

acks=$(grep -c "backend acked STOP" "$work/daemon.log")
[ "$acks" -ge $rounds ] || fail "$acks backend STOP acks logged for $rounds resets"
grep -q "did not acknowledge STOP" "$work/daemon.log" && fail "the backend missed a STOP ack"
json servers | python3 -c '
import json, sys
s = json.load(sys.stdin)["servers"][0]
sys.exit(0 if s["stop_timeouts"] == 0 else 1)' || fail "servers shows missed STOP acks"
downs=$(grep -c "frontend stopped its rings" "$work/backend.log")
[ "$downs" -ge $rounds ] || fail "the backend let go $downs times for $rounds resets"
echo "$vp_prog: $acks GET_VRING_BASE replies waited for the backend's STOP ack" \
	"($(grep "backend acked STOP" "$work/daemon.log" | sed -n 's/.* in \([0-9]*\) ms/\1/p' |
		tr '\n' ' ')ms)"
echo "$vp_prog: PASS"
