#!/bin/bash
# DPDK's dpdk-testpmd with net_virtio_user (a stock vhost-user frontend) connects to
# vhost-pcid: the device appears READY (dialect vhost-user, VERSION_1, two rings in
# the frontend's memory, RX buffers posted) and disappears when testpmd quits.
#
#   tests/peers/dpdk-daemon.sh VHOST_PCID VHOST_PCI_CTL
#
# Installs dpdk-dev (root). Exits 77 with "SKIP: reason" when it cannot, 0 on
# success, 1 on failure.
set -uo pipefail
vp_prog=dpdk-daemon
pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL}")

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	tail -15 "$work/daemon.log" "$work/testpmd.log" 2>/dev/null
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (packages)"
if ! command -v dpdk-testpmd >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get install -y -qq --no-install-recommends dpdk-dev librte-net-virtio23 ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends \
			dpdk-dev librte-net-virtio23; }; } >/dev/null 2>&1 ||
		skip "cannot install dpdk-dev"
fi
command -v dpdk-testpmd >/dev/null || skip "no dpdk-testpmd"

work=$(mktemp -d /tmp/vp-dpdk-daemon.XXXXXX)
prefix=vpdd$$
dpid='' tpid=''
cleanup() {
	[ -n "$tpid" ] && kill -KILL "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	exec 3>&- 2>/dev/null
	rm -rf "$work" "/var/run/dpdk/$prefix"
}
trap cleanup EXIT

# testpmd's --no-huge memory is an unsealed memfd, which it could shrink under a
# backend: refused by default (strict), taken where allow-unsealed=on (net0).
"$pcid" --server "path=$work/net0.sock,id=net0,allow-unsealed=on" \
	--server "path=$work/strict.sock,id=strict" --control "$work/ctl.sock" \
	--log-level info 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

nice -n 10 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci --file-prefix "$prefix" \
	--vdev "net_virtio_user0,path=$work/strict.sock,queues=1,queue_size=256" -- \
	--nb-cores=1 --total-num-mbufs=8192 --stats-period 1 </dev/null >"$work/testpmd0.log" 2>&1 &
tpid=$!
for _ in $(seq 300); do
	grep -q "can shrink under the backend" "$work/daemon.log" && break
	kill -0 "$tpid" 2>/dev/null || break
	sleep 0.1
done
grep -q "can shrink under the backend: no F_SEAL_SHRINK" "$work/daemon.log" ||
	fail "testpmd's unsealed memory was not refused with a reason"
echo "$vp_prog: strict server refused testpmd: $(grep -o 'memory region 0 ([a-z ]*) can shrink' "$work/daemon.log" | head -1)"
kill -KILL "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null; tpid=''
rm -rf "/var/run/dpdk/$prefix"

# testpmd reads its commands from a fifo we hold open, so it stays up until "quit".
mkfifo "$work/cmd"
nice -n 10 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci --file-prefix "$prefix" \
	--vdev "net_virtio_user0,path=$work/net0.sock,queues=1,queue_size=256" -- \
	-i --nb-cores=1 --total-num-mbufs=8192 <"$work/cmd" >"$work/testpmd.log" 2>&1 &
tpid=$!
exec 3>"$work/cmd"
echo "start" >&3

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }
id=''
for _ in $(seq 300); do
	id=$(json list | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["state"] == "ready":
        print(d["id"]); break' 2>/dev/null)
	# READY, and testpmd has posted its RX buffers
	[ -n "$id" ] && json show "$id" | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["device"]["rings"][0]["live"].get("avail_idx", 0) else 1)' &&
		break
	kill -0 "$tpid" 2>/dev/null || fail "testpmd exited"
	sleep 0.1
done
[ -n "$id" ] || fail "no READY device from testpmd"

json show "$id" | python3 -c '
import json, sys
d = json.load(sys.stdin)["device"]
bad = []
if d["dialect"] != "vhost-user": bad.append("dialect " + d["dialect"])
if "VERSION_1" not in d["driver_feature_names"]: bad.append("no VERSION_1")
if len(d["regions"]) < 1: bad.append("no regions")
for r in d["rings"]:
    if not (r["started"] and r["enabled"]): bad.append("ring %d not running" % r["index"])
    if "error" in r["live"]: bad.append("ring %d: %s" % (r["index"], r["live"]["error"]))
rx = d["rings"][0]["live"]
if rx.get("avail_idx", 0) == 0: bad.append("no RX buffers posted")
for x in rx.get("descriptors", []):
    if not x["in_memory"]: bad.append("RX descriptor outside memory")
print("device %d: pid %d, features %s, %d regions, RX avail_idx %d"
      % (d["id"], d["peer_pid"], "|".join(d["driver_feature_names"]), len(d["regions"]),
         rx.get("avail_idx", 0)))
for b in bad: print("  bad:", b)
sys.exit(1 if bad else 0)' || fail "device check failed"

echo "quit" >&3
exec 3>&-
for _ in $(seq 100); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$tpid" 2>/dev/null && fail "testpmd did not quit"
wait "$tpid"
tpid=''
for _ in $(seq 50); do
	n=$(json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')
	[ "$n" = 0 ] && break
	sleep 0.1
done
[ "$n" = 0 ] || fail "device still listed after testpmd quit"
echo "$vp_prog: device $id removed after testpmd quit"

kill -TERM "$dpid"
wait "$dpid" || fail "daemon exit status $? after SIGTERM"
dpid=''
echo "$vp_prog: PASS"
