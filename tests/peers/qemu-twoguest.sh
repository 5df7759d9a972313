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
#   2b. hostile frontend processes through the real path: a host vp-vm frontend
#      (--test-bad-desc, memfd RAM, a power of two, sealed) joins, its device is hot-plugged,
#      and after 64 good frames it posts a bad TX chain (an address outside its memory; then,
#      in a second run, a descriptor loop). vp-vm --guest-pci in the backend guest fails
#      that device with the reason (its log, the driver page: the daemon's log and
#      vhost-pci-ctl); the backend guest lives on, both good frontends pass a round; the
#      hostile process stops and its device is unplugged;
#   3. bad frontend guests through the real path: 384 MiB of RAM (not a power of two) and
#      RAM in a plain file (unsealed) are refused with their reasons (daemon log,
#      vhost-pci-ctl: both counted, each the last refusal in turn); the backend guest
#      survives and the first device keeps working;
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

tg_args "$@"
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

wait_log() { vp_wait_serial "$work/daemon.log" "$tg_dpid" "$1" "$2"; } # SECONDS PATTERN

# 2b. hostile KIND WHY: a hostile frontend process (twoguest-lib.sh) on the same socket; its
#     device breaks with WHY in the backend guest, and only it.
hostile() {
	local from
	from=$(tg_lines be)
	tg_hostile_start "$1" 3 || fail "$1: hostile frontend"
	tg_hostile_failed "$2" || fail "$1: hostile frontend"
	# vp-vm's own log in the backend guest says it too.
	tg_cmd be "vmlog failed:" && tg_wait be 10 "vmlog end" "$from" ||
		fail "$1: no answer from the backend guest"
	tail -n +"$from" "$work/be.log" | grep -a "INFO tg: vmlog " | grep -q -- "device failed: .*$2" ||
		fail "$1: vp-vm in the backend guest did not log the failed device"
	tg_round fe1 "1$3" $BE 120 || fail "frontend 1 beside the hostile frontend ($1)"
	tg_round fe2 "1$3" $BE 120 || fail "frontend 2 beside the hostile frontend ($1)"
	tg_hostile_stop 2 || fail "$1: hostile frontend"
}
hostile range "outside guest memory" 1
hostile loop "loop?" 2
json servers | python3 -c '
import json, sys
s = json.load(sys.stdin)["servers"][0]
if s["refused"]:
    print("qemu-twoguest: refused %d, last: %s" % (s["refused"], s["last_refusal"]))
sys.exit(s["refused"] != 0)' || fail "a frontend was refused before the bad ones (a hostile one is served)"

# 3. Bad frontends, real guests: 384 MiB of RAM (not a power of two: QEMU would assert on
#    such a BAR) and RAM in a plain file (not sealed: it could shrink under the backend
#    VM). Each is refused with its reason, and nothing in the backend guest changes.
from=$(tg_lines be)
tg_guest odd fe 169.254.88.9/24 -n "$work/net0.sock" --mac 52:54:00:88:00:09 -m 384M --any-mem
wait_log 90 "refusing the frontend.*not a power of two" || fail "384 MiB of frontend RAM was not refused"
echo "$vp_prog: $(grep -m1 "refusing the frontend" "$work/daemon.log" | sed 's/.*warn: //')"
tg_stop odd
# servers JSON: refused (at least 1: QEMU may retry) and why, in the daemon's words.
refusals() { # MIN PATTERN
	json servers | python3 -c '
import json, sys
s = json.load(sys.stdin)["servers"][0]
print("qemu-twoguest: vhost-pci-ctl: refused %d, last: %s" % (s["refused"], s["last_refusal"]))
sys.exit(s["refused"] < int(sys.argv[1]) or sys.argv[2] not in (s["last_refusal"] or ""))' "$@"
}
refusals 1 "power of two" || fail "vhost-pci-ctl does not show the refusal"
n_odd=$(json servers | python3 -c 'import json, sys; print(json.load(sys.stdin)["servers"][0]["refused"])')
tg_guest unsealed fe 169.254.88.9/24 -n "$work/net0.sock" --mac 52:54:00:88:00:09 \
	--mem-path "$work/unsealed.ram"
# The library refuses it already at SET_MEM_TABLE (vhost-pcid never serves memory that can
# shrink without allow-unsealed=on), before the backend-VM check would.
wait_log 90 "dropping frontend: .*no F_SEAL_SHRINK" || fail "unsealed frontend RAM was not refused"
echo "$vp_prog: $(grep -m1 "no F_SEAL_SHRINK" "$work/daemon.log" | sed 's/.*warn: //')"
tg_stop unsealed
# The library's refusal is counted and shown too, not only the daemon's.
refusals $((n_odd + 1)) "can shrink under the backend" ||
	fail "vhost-pci-ctl does not show the unsealed refusal"
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
[ "$n" = 4 ] || fail "$n unplugs logged, expected 4 (2 frontends, 2 hostile)"
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
