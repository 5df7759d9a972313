#!/bin/bash
# Two real guests talking through vhost-pci, end to end, under stock QEMU 7.2 (TCG):
#   - the backend VM: stock Debian kernel, -M pc, QMP on a Unix socket, served by vhost-pcid
#     with backend-vm=; inside it vp-vm --backend --guest-pci --app tap (adaptive mode) gives
#     every vhost-pci device its own TAP, and the TAPs join a bridge with 169.254.88.1;
#   - frontend guests: stock kernel, stock virtio_net, -netdev vhost-user to vhost-pcid
#     (memfd RAM, a power of two), 169.254.88.2 and .3.
# Both run tests/guest/tests/twoguest.sh and take commands on a second serial port. Steps:
#   1. the first frontend boots: its device appears in the backend guest (sysfs, "pairs 1");
#      ping and a checksummed TCP transfer (TG_KIB KiB, default 1024) each way, started
#      from the frontend, then from the backend;
#   2. a second frontend: a second device, a second TAP; the same round from it;
#   3. bad frontend guests through the real path: 384 MiB of RAM (not a power of two) and
#      RAM in a plain file (unsealed) are refused with their reasons (daemon log,
#      vhost-pci-ctl); the backend guest survives and the first device keeps working;
#   4. the frontends leave one by one: their devices disappear from the backend guest.
#
#   tests/peers/qemu-twoguest.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kit cannot be had, 0 on success,
# 1 on failure.
set -uo pipefail
vp_prog=qemu-twoguest
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

usage="usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM"
pcid=$(realpath "${1:?$usage}")
ctl=$(realpath "${2:?$usage}")
vpvm=$(realpath "${3:?$usage}")
BE=169.254.88.1 FE1=169.254.88.2 FE2=169.254.88.3

fail() { tg_fail "$*" be fe1 fe2; }

tg_require

work=$(mktemp -d /tmp/vp-qemu-twoguest.XXXXXX)
trap tg_cleanup EXIT
json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }

tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"
tg_lock
t0=$(vp_now)

# The backend VM first (the daemon's QMP client retries until it is there), then the daemon.
tg_guest be be "$BE/24" ${TG_BE_ARGS:-}
tg_wait be 90 "ready" || fail "the backend guest did not come up"
tg_wait be 5 "pairs 0" || fail "vhost-pci devices in the backend guest before any frontend"
tg_pcid "$pcid" be || fail "daemon did not start"

# join N IP TAP: frontend guest feN comes; the backend guest gets device N and TAP TAP; a
# round from each side (the backend's is round N).
join() {
	local from
	from=$(tg_lines be)
	tg_guest "fe$1" fe "$2/24" -n "$work/net0.sock" --mac "52:54:00:88:00:0$((1 + $1))"
	tg_wait be 90 "pairs $1" "$from" || fail "device $1 did not appear in the backend guest"
	tg_wait be 30 "bridged $3" "$from" || fail "no TAP $3 for device $1"
	tg_wait "fe$1" 90 "ready" || fail "frontend $1 did not come up"
	tg_round "fe$1" 1 $BE 120 || fail "frontend $1 -> backend"
	tg_round be "$1" "$2" 120 || fail "backend -> frontend $1"
}

# 1. The first frontend. 2. A second frontend: a second device and TAP.
join 1 $FE1 vpB
join 2 $FE2 vpB1
json list | python3 -c '
import json, sys
ds = [d for d in json.load(sys.stdin)["devices"] if (d.get("backend") or {}).get("state") == "plugged"]
print("qemu-twoguest: vhost-pci-ctl: %d devices plugged: %s" % (len(ds),
      ", ".join("%d at %s+%s" % (d["id"], d["backend"]["info_pci"], d["backend"]["memory_pci"]) for d in ds)))
sys.exit(len(ds) != 2)' || fail "vhost-pci-ctl does not show two plugged devices"

# 3. Bad frontends, real guests: 384 MiB of RAM (not a power of two: QEMU would assert on
#    such a BAR) and RAM in a plain file (not sealed: it could shrink under the backend
#    VM). Each is refused with its reason, and nothing in the backend guest changes.
from=$(tg_lines be)
wait_log() { # SECONDS PATTERN
	local _
	for _ in $(seq $(($1 * 10))); do
		grep -q -- "$2" "$work/daemon.log" && return 0
		sleep 0.1
	done
	return 1
}
tg_guest odd fe 169.254.88.9/24 -n "$work/net0.sock" --mac 52:54:00:88:00:09 -m 384M --any-mem
wait_log 90 "refusing the frontend.*not a power of two" || fail "384 MiB of frontend RAM was not refused"
echo "$vp_prog: $(grep -m1 "refusing the frontend" "$work/daemon.log" | sed 's/.*warn: //')"
tg_stop odd
tg_guest unsealed fe 169.254.88.9/24 -n "$work/net0.sock" --mac 52:54:00:88:00:09 \
	--mem-path "$work/unsealed.ram"
# The library refuses it already at SET_MEM_TABLE (vhost-pcid never serves memory that can
# shrink without allow-unsealed=on), before the backend-VM check would.
wait_log 90 "dropping frontend: .*no F_SEAL_SHRINK" || fail "unsealed frontend RAM was not refused"
echo "$vp_prog: $(grep -m1 "no F_SEAL_SHRINK" "$work/daemon.log" | sed 's/.*warn: //')"
tg_stop unsealed
json servers | python3 -c '
import json, sys
s = json.load(sys.stdin)["servers"][0]
print("qemu-twoguest: vhost-pci-ctl: refused %d, last: %s" % (s["refused"], s["last_refusal"]))
sys.exit(s["refused"] < 1 or "power of two" not in (s["last_refusal"] or ""))' ||
	fail "vhost-pci-ctl does not show the refusal"
grep -a "INFO tg: pairs" <(tail -n +"$from" "$work/be.log") | grep -v "pairs 2" &&
	fail "a refused frontend changed the backend guest's devices"
tg_round fe1 2 $BE 120 || fail "frontend 1 after the bad frontends"

# 4. The frontends leave: their devices go.
from=$(tg_lines be)
tg_stop fe2
tg_wait be 60 "pairs 1" "$from" || fail "the second device did not disappear"
tg_round fe1 3 $BE 120 || fail "frontend 1 after frontend 2 left"
from=$(tg_lines be)
tg_stop fe1
tg_wait be 60 "pairs 0" "$from" || fail "the first device did not disappear"
from=$(tg_lines be)
tg_cmd be quit
wait "${tg_pid[be]}" || fail "the backend guest's test failed"
tg_pid[be]=''
kill -0 "$tg_dpid" || fail "the daemon died"
n=$(grep -c "unplugged from backend VM" "$work/daemon.log")
[ "$n" = 2 ] || fail "$n unplugs logged, expected 2"
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
