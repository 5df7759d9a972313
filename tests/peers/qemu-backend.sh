#!/bin/bash
# A stock QEMU 7.2 guest (TCG, Debian kernel, unmodified virtio_net, chardev
# reconnect=1) whose vhost-pcid server hands its device to a userspace backend
# VM (vp-vm --backend, echo app). What the guest sees must follow whether a
# backend drives its NIC, with no manual step:
#   1. no backend when QEMU starts: after backend-grace the daemon drops the
#      device, the guest sees carrier 0, and vhost-pci-ctl says why;
#   2. the backend starts: QEMU reconnects by itself, carrier 1, frames come back;
#   3. the backend is SIGKILLed: carrier 0 again (after the grace);
#   4. it is restarted: carrier 1 and frames again;
#   5. a second guest resets its NIC twice (driver unbound and bound again):
#      each GET_VRING_BASE waits for the backend's STOP ack (logged), none is
#      missed, and frames come back after each reset.
# The server offers QEMU's usual offloads (CSUM, GUEST_CSUM: features
# 0x170008003) and the backend must accept what the guest negotiates.
#
#   tests/peers/qemu-backend.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kernel cannot be had,
# 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-backend
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
mac=52:54:00:a1:b2:c4
features=0x170008003

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/daemon.log" ] && tail -15 "$work/daemon.log" | sed 's/^/  daemon: /'
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (packages, memfd guests)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"

work=$(mktemp -d /tmp/vp-qemu-backend.XXXXXX)
dpid='' gpid='' bpid=''
cleanup() {
	for p in $bpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }

# wait_serial SECONDS PATTERN [FROM-LINE]: a guest marker after line FROM.
wait_serial() {
	local t
	for t in $(seq $(($1 * 10))); do
		tail -n +"${3:-1}" "$work/serial.log" 2>/dev/null | grep -q -- "$2" && return 0
		kill -0 "$gpid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
lines() { wc -l <"$work/serial.log" 2>/dev/null || echo 0; }

backend_start() {
	"$vm" --backend --listen "$work/be.sock" --app echo --mode irq --quiet \
		--log-level info >>"$work/backend.out" 2>>"$work/backend.log" &
	bpid=$!
}

"$pcid" --server "path=$work/net0.sock,id=net0,backend=$work/be.sock,backend-grace=2,features=$features" \
	--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

"$here/../guest/run-guest.sh" -t backendlink -n "$work/net0.sock" --mac "$mac" \
	-e VP_MAC="$mac" -e VP_HOLD=150 -e VP_ROUNDS=2 -T 240 --name qemu-backend \
	-l "$work/serial.log" >"$work/guest.out" 2>&1 &
gpid=$!

# 1. Nobody drives the NIC: the daemon drops it, the guest sees carrier 0.
wait_serial 120 "backendlink: carrier 0" || fail "no carrier 0 while no backend ran"
grep -q "no backend attached within 2 s" "$work/daemon.log" || fail "daemon did not say why it dropped the device"
echo "$vp_prog: no backend: guest link down ($(grep -c 'refusing frontends' "$work/daemon.log") refusal summaries logged)"

# 2. Backend starts: QEMU reconnects by itself and frames come back.
from=$(lines)
backend_start
wait_serial 60 "backendlink: traffic" "$from" || fail "no traffic after the backend started"
id=$(json list | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["state"] == "ready" and (d.get("backend") or {}).get("state") == "attached":
        print(d["id"]); break')
[ -n "$id" ] || fail "no attached device listed"
json show "$id" | python3 -c '
import json, sys
d = json.load(sys.stdin)["device"]
names = d["driver_feature_names"]
print("qemu-backend: device %d attached, guest negotiated %s" % (d["id"], ",".join(names)))
sys.exit(0 if "CSUM" in names and "GUEST_CSUM" in names else 1)' ||
	fail "the guest did not negotiate CSUM/GUEST_CSUM (or the backend did not take it)"

# 3. Backend killed: the link goes down again.
from=$(lines)
kill -9 "$bpid"; wait "$bpid" 2>/dev/null; bpid=''
wait_serial 30 "backendlink: carrier 0" "$from" || fail "carrier stayed up with the backend dead"
echo "$vp_prog: backend killed: guest link down"

# 4. Restarted: traffic again, and the guest script passes.
backend_start
wait "$gpid"
rc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$rc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $rc)"; }
grep -q "features .* this backend does not support" "$work/backend.log" &&
	fail "the backend refused the guest's features"

# 5. STOP end to end: QEMU's GET_VRING_BASE is answered after the backend's ack.
acks0=$(grep -c "backend acked STOP" "$work/daemon.log")
"$here/../guest/run-guest.sh" -t stopreset -n "$work/net0.sock" --mac "$mac" \
	-e VP_MAC="$mac" -e VP_ROUNDS=2 -T 120 --name qemu-backend-stop \
	-l "$work/serial2.log" >"$work/guest2.out" 2>&1 &
gpid=$!
wait "$gpid"
rc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/serial2.log" | sed 's/^/  /'
[ "$rc" = 0 ] || { tail -20 "$work/guest2.out"; fail "NIC reset guest failed (rc $rc)"; }
acks=$(($(grep -c "backend acked STOP" "$work/daemon.log") - acks0))
[ "$acks" -ge 2 ] || fail "$acks backend STOP acks logged for 2 NIC resets"
grep -q "did not acknowledge STOP" "$work/daemon.log" && fail "the backend missed a STOP ack"
json servers | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["servers"][0]["stop_timeouts"] == 0 else 1)' ||
	fail "vhost-pci-ctl servers counts missed STOP acks"
echo "$vp_prog: NIC reset twice: $acks GET_VRING_BASE replies waited for the backend's STOP ack"
echo "$vp_prog: PASS"
