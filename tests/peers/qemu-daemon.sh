#!/bin/bash
# A stock QEMU 7.2 guest (TCG, Debian kernel, unmodified virtio_net) connects with
# -netdev vhost-user to vhost-pcid. Checked through vhost-pci-ctl:
#   - the device appears READY with dialect vhost-user and the configured uuid;
#   - the negotiated features (VERSION_1 at least) and the memory regions;
#   - ring addresses translated into mapped memory: the RX ring's live avail index
#     shows the buffers the guest driver posted, and those descriptors are
#     device-writable and lie inside the frontend's memory;
#   - "drop" disconnects it; QEMU reconnects and a new device becomes READY (the daemon
#     never restarts); the guest's link is up at the end (a flap it saw is reported);
#   - when QEMU exits, the device is removed; SIGTERM stops the daemon cleanly.
#
#   tests/peers/qemu-daemon.sh VHOST_PCID VHOST_PCI_CTL
#
# Installs QEMU and the guest kernel through tests/guest/setup.sh (root). Exits 77 with
# "SKIP: reason" when that is impossible, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-daemon
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL}")
uuid=6a1d0a3e-8d3c-4c55-9a1e-2f1b7c9d0e11
mac=52:54:00:a1:b2:c3

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() { echo "$vp_prog: FAIL: $*"; [ -f "$work/daemon.log" ] && tail -20 "$work/daemon.log"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (packages, memfd guests)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"

work=$(mktemp -d /tmp/vp-qemu-daemon.XXXXXX)
dpid='' gpid=''
cleanup() {
	[ -n "$gpid" ] && kill "$gpid" 2>/dev/null && wait "$gpid" 2>/dev/null
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

"$pcid" --server "path=$work/net0.sock,id=net0,uuid=$uuid" --control "$work/ctl.sock" \
	--log-level info 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

"$here/../guest/run-guest.sh" -t linkflap -n "$work/net0.sock" --mac "$mac" \
	-e VP_MAC="$mac" -e VP_HOLD=10 -T 240 --name qemu-daemon -l "$work/serial.log" >"$work/guest.out" 2>&1 &
gpid=$!

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }

# wait_ready NOT_ID: print the id of a READY device other than NOT_ID whose RX ring
# shows posted buffers.
wait_ready() {
	local t
	for t in $(seq 1200); do
		id=$(json list | python3 -c '
import json, sys
not_id = int(sys.argv[1])
for d in json.load(sys.stdin)["devices"]:
    if d["state"] == "ready" and d["id"] != not_id:
        print(d["id"]); break' "$1" 2>/dev/null)
		if [ -n "$id" ] && json show "$id" | python3 -c '
import json, sys
r = json.load(sys.stdin)["device"]["rings"][0]["live"]
sys.exit(0 if r.get("avail_idx", 0) > 0 else 1)' 2>/dev/null; then
			echo "$id"
			return 0
		fi
		kill -0 "$gpid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

id1=$(wait_ready 0) || { tail -30 "$work/guest.out"; fail "no READY device with posted RX buffers"; }
json show "$id1" >"$work/show1.json"
python3 - "$work/show1.json" "$uuid" <<'PY' || fail "device check failed (see above)"
import json, sys
d = json.load(open(sys.argv[1]))["device"]
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
need(d["dialect"] == "vhost-user", "dialect %s" % d["dialect"])
need(d["uuid"] == sys.argv[2], "uuid %s" % d["uuid"])
need(d["type_name"] == "net", "type %s" % d["type_name"])
need("VERSION_1" in d["driver_feature_names"], "features %s" % d["driver_feature_names"])
need(len(d["regions"]) >= 1, "no memory regions")
need(len(d["rings"]) == 2, "%d rings" % len(d["rings"]))
for r in d["rings"]:
    need(r["started"] and r["enabled"] and r["kick_fd"], "ring %d not running" % r["index"])
    need(r["num"] > 0 and r["desc_uva"] != r["desc"], "ring %d addresses" % r["index"])
rx = d["rings"][0]["live"]
need(rx["avail_idx"] > 0, "RX avail_idx %s" % rx.get("avail_idx"))
need(len(rx["descriptors"]) > 0, "no RX descriptors")
for x in rx["descriptors"]:
    need(x["in_memory"], "RX descriptor %s outside memory" % x)
    need(x["flags"] & 2, "RX descriptor not device-writable: %s" % x)
    need(x["len"] >= 64, "RX descriptor too short: %s" % x)
print("device %d: %s, uuid %s, features %s, %d regions, RX avail_idx %d, %d descriptors checked"
      % (d["id"], d["dialect"], d["uuid"], "|".join(d["driver_feature_names"]),
         len(d["regions"]), rx["avail_idx"], len(rx["descriptors"])))
for b in bad:
    print("  bad:", b)
sys.exit(1 if bad else 0)
PY

# Drop the frontend: QEMU sees the disconnect (guest: link down), reconnects.
json drop "$id1" >/dev/null || fail "drop $id1 failed"
id2=$(wait_ready "$id1") || { tail -30 "$work/guest.out"; fail "QEMU did not come back as a new READY device"; }
echo "$vp_prog: dropped device $id1, QEMU reconnected as device $id2"

wait "$gpid"
rc=$?
gpid=''
grep -h "VPGUEST: INFO" "$work/serial.log" 2>/dev/null | sed "s/^/  /"
tail -1 "$work/guest.out"
[ "$rc" = 0 ] || { tail -30 "$work/guest.out"; fail "guest test failed (rc $rc)"; }

# QEMU is gone: so is its device.
for _ in $(seq 50); do
	[ "$(json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')" = 0 ] && break
	sleep 0.1
done
[ "$(json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')" = 0 ] ||
	fail "device still listed after QEMU exited"

kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=''
[ "$rc" = 0 ] || fail "daemon exit status $rc after SIGTERM"
[ ! -e "$work/net0.sock" ] || fail "socket file left behind"
echo "$vp_prog: PASS"
