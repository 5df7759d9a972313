#!/bin/bash
# A stock QEMU 7.2 guest (TCG, Debian kernel, unmodified virtio_net) whose NIC
# offers packed rings (-device virtio-net-pci,packed=on) on a vhost-user
# socket served by a vp-vm backend (tap app: frames to and from a host TAP):
#   1. the guest's virtio_net negotiates RING_PACKED (bit 34 of its sysfs
#      features; the backend logs the same bit), and the guest pings the
#      host's TAP address through the packed rings (every request answered);
#   2. the guest reboots (QMP system_reset): its driver makes fresh packed
#      rings, QEMU hands them to the same backend, and the same checks pass;
#   3. the backend stops: the guest's link goes down (its test passes then).
# Run twice: QEMU straight on vp-vm, then on vhost-pcid (features= with RING_PACKED,
# backend=vp-vm) relaying the device over the native handshake (1.1). There the reboot's
# GET_VRING_BASE is answered with the positions vp-vm acked its STOP with, and the
# backend's end drops the guest's vhost-user connection (its positions went with it).
# A backend restarted under a running packed guest is not tried: QEMU 7.2
# keeps no packed ring position it can restore when GET_VRING_BASE finds
# the backend gone (it logs "ring restore failed" and resends the position
# it had at start), so the rings stay out of step until the guest resets its
# NIC.
# The run holds /tmp/vp-guest-boot.lock (one guest boot at a time).
#
#   tests/peers/qemu-packed.sh VHOST_PCID VHOST_PCI_CTL VP_VM   (as scripts/test.sh calls
#                                                              every peer; only VP_VM is used)
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kernel cannot be had,
# 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-packed
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
if [ -z "${QP_DAEMON:-}" ]; then  # the two runs, each in a process of its own
	QP_DAEMON=0 "$0" "$@" || exit $?
	QP_DAEMON=1 exec "$0" "$@"
fi
[ "$QP_DAEMON" = 1 ] && vp_prog=qemu-packed-daemon
mac=52:54:00:a1:b2:d7
# A subnet and TAP name of our own: other tests may run TAPs at once.
net=10.$((RANDOM % 200 + 20)).$((RANDOM % 250))
tap=vppk$$

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/backend.log" ] && tail -12 "$work/backend.log" | sed 's/^/  backend: /'
	[ -f "$work/pk.log" ] && grep -h "VPGUEST" "$work/pk.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (TAP device, memfd guests)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"

work=$(mktemp -d /tmp/vp-qemu-packed.XXXXXX)
gpid='' bpid='' dpid=''
cleanup() {
	for p in $bpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ "${VP_KEEP_LOGS:-0}" = 1 ]; then echo "$vp_prog: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

wait_marker() { vp_wait_serial "$work/pk.log" "$gpid" "$1" "$2" "${3:-1}"; }
# The next serial line to be written (tail -n + starts there).
lines() { echo $(($(wc -l <"$work/pk.log" 2>/dev/null || echo 0) + 1)); }
# The features of the backend's last "link up" line have bit 34.
backend_packed() {
	local f
	f=$(grep -o 'link up: device.*features 0x[0-9a-f]*' "$work/backend.log" | tail -1 |
	    grep -o '0x[0-9a-f]*$')
	[ -n "$f" ] && [ $(((f >> 34) & 1)) = 1 ]
}
# One boot's checks, from serial line FROM: bit 34, every ping answered.
boot_checks() {
	wait_marker 240 "packed: ping .* replies\|VPGUEST: FAIL" "$1" ||
		fail "no ping round after line $1 ($(tail -2 "$work/guest.out"))"
	tail -n +"$1" "$work/pk.log" | grep -q "packed: features bit 34 = 1" ||
		fail "the guest did not report bit 34"
	tail -n +"$1" "$work/pk.log" | grep -q "VPGUEST: FAIL" && fail "the guest failed"
	backend_packed || fail "the backend's link-up features lack RING_PACKED"
	echo "$vp_prog: $(tail -n +"$1" "$work/pk.log" | grep -o 'packed: ping.*' | head -1) (RING_PACKED both sides)"
}

"$vm" --backend --listen "$work/be.sock" --app tap --tap "$tap" --tap-addr "$net.1/24" \
	--quiet --log-level info >"$work/backend.out" 2>"$work/backend.log" &
bpid=$!
for _ in $(seq 100); do [ -S "$work/be.sock" ] && break; sleep 0.1; done
[ -S "$work/be.sock" ] || fail "backend did not listen"
sock=$work/be.sock
if [ "$QP_DAEMON" = 1 ]; then
	# The default set and RING_PACKED (bit 34): offered only when asked.
	"$(realpath "$1")" --server "path=$work/net0.sock,id=net0,backend=$work/be.sock,features=0x570008000" \
		--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
	dpid=$!
	for _ in $(seq 100); do [ -S "$work/net0.sock" ] && break; sleep 0.1; done
	[ -S "$work/net0.sock" ] || fail "vhost-pcid did not listen"
	sock=$work/net0.sock
	echo "$vp_prog: through vhost-pcid (features=0x570008000, backend=vp-vm)"
fi

tg_lock
"$here/../guest/run-guest.sh" -t packed -n "$sock" --mac "$mac" --packed --reboot \
	-e VP_MAC="$mac" -e VP_IP="$net.2/24" -e VP_PEER="$net.1" -e VP_COUNT=20 \
	-T 400 --name pk -l "$work/pk.log" \
	-q -qmp -q "unix:$work/pk.qmp,server=on,wait=off" >"$work/guest.out" 2>&1 &
gpid=$!

# 1. Packed negotiated both sides, pings answered.
boot_checks 1

# 2. The guest reboots: fresh packed rings on the same backend.
from=$(lines)
tg_qmp pk system_reset || fail "QMP system_reset failed"
wait_marker 120 "VPGUEST: BOOTED" "$from" || fail "the guest did not boot again"
boot_checks "$from"
[ "$(grep -c 'link up: device.*features' "$work/backend.log")" -ge 2 ] ||
	fail "the backend logged no link up after the reboot"
if [ "$QP_DAEMON" = 1 ]; then
	grep -q "backend acked STOP" "$work/daemon.log" ||
		fail "QEMU's GET_VRING_BASE at the reset did not wait for vp-vm's STOP ack"
	grep -q "where its packed rings stopped is lost" "$work/daemon.log" &&
		fail "vhost-pcid lost the packed positions"
	echo "$vp_prog: the reset's GET_VRING_BASE waited for vp-vm's STOP ack ($(grep -o 'acked STOP in [0-9]* ms' "$work/daemon.log" | head -1))"
fi

# 3. The backend stops: the guest sees its link go down and passes.
kill "$bpid"; wait "$bpid" 2>/dev/null; bpid=''
wait "$gpid"
rc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/pk.log" | sed 's/^/  /'
[ "$rc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $rc)"; }
echo "$vp_prog: PASS"
