#!/bin/bash
# vhost-pcid hot-plugs a 2.1 slot into a RUNNING QEMU 7.2 guest (TCG, -M pc) over QMP and
# unplugs it when the other peer leaves (docs/window21.md 9, docs/vhost-pcid.md qmp=):
#   - the daemon serves the pair (design=2.1,qemu=SOCK,qmp=QMP); the guest boots with QMP
#     and no 2.1 slot (tests/guest/tests/pair21hp.sh checks that);
#   - two rounds: a host vp-vm generator joins the pair -> the daemon picks a free slot
#     (query-pci), adds .1 and .2 (ivshmem-plain over memory-backend-file readonly=on),
#     the chardev to its ivshmem server, then .0 (ivshmem-doorbell, multifunction=on) last,
#     which the guest is told of; the guest's vp-vm --pair21-guest sink verifies COUNT
#     frames; the generator leaves -> the daemon's device_del of .0 ejects the slot, the
#     guest sees it go; the next round plugs it again (rejoin);
#   - checked: the guest's markers (no slot at boot; per round plugged, COUNT frames
#     verified, slot gone), the daemon's counters (vhost-pci-ctl pairs: plugs, unplugs, no
#     failures) and its log.
#
#   tests/peers/qemu-pair21-hotplug.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# Exits 77 with "SKIP: reason" where the other guest tests skip, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-pair21-hotplug
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
count=${VP_P21_COUNT:-20000}

fail() { tg_fail_logs "$*" daemon.log gen.log; }

tg_require  # exits 77 (SKIP) where the other guest tests skip

work=$(mktemp -d /tmp/vp-qemu-pair21-hp.XXXXXX)
gpid='' dpid='' hpid=''
cleanup() {
	for p in $hpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ "${VP_KEEP_LOGS:-0}" = 1 ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

# marker TEXT SEC: wait for the guest's serial marker (or its end).
marker() {
	local t=$(($2 * 10))
	while [ $t -gt 0 ]; do
		grep -aq "$1" "$work/serial.log" 2>/dev/null && return 0
		kill -0 "$gpid" 2>/dev/null || return 1
		sleep 0.1
		t=$((t - 1))
	done
	return 1
}
# pairs KEY...: those keys of the guest's "qemu" object, one line.
pairs() {
	"$ctl" --control "$work/ctl.sock" --json pairs >"$work/pairs.json" || fail "vhost-pci-ctl pairs"
	python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["pairs"][0]["qemu"]
print(" ".join(str(q[k]) for k in sys.argv[2:]))' "$work/pairs.json" "$@"
}

tg_lock  # one test boots guests at a time, machine-wide
tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$pcid" --server "path=$work/p21.sock,id=p21,design=2.1,qemu=$work/ivshmem.sock,qmp=$work/qmp.sock" \
	--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && [ -S "$work/ivshmem.sock" ] && break; sleep 0.1; done
[ -S "$work/ivshmem.sock" ] || fail "the daemon did not serve the pair's QEMU peer"

timeout 600 "$here/../guest/run-guest.sh" -t pair21hp --name qemu-pair21-hotplug \
	--initrd "$work/initrd.cpio" -e VP_P21_COUNT="$count" -T 540 -l "$work/serial.log" \
	-q -qmp -q "unix:$work/qmp.sock,server=on,wait=off" >"$work/guest.out" 2>&1 &
gpid=$!
marker "pair21hp: no slot at boot" 300 || fail "the guest did not boot without its slot"
[ "$(pairs slot_state plugs)" = "none 0" ] || fail "plugged with no other peer: $(pairs slot_state plugs)"

for round in 1 2; do
	timeout 300 "$vpvm" --pair21 "$work/p21.sock" --app gen --count "$count" --size 64-1518 \
		--mode irq --connect-timeout 240 --quiet --json >"$work/gen.json" 2>"$work/gen.log" &
	hpid=$!
	wait "$hpid" || fail "round $round: host generator failed (rc $?)"
	hpid=''
	grep -q '"ok":true' "$work/gen.json" || fail "round $round: host generator: $(cat "$work/gen.json")"
	marker "pair21hp: round $round: received $count lost 0 corrupt 0" 60 ||
		fail "round $round: the guest did not verify $count frames"
	marker "pair21hp: round $round: slot gone" 150 || fail "round $round: the slot did not go"
	for _ in $(seq 50); do [ "$(pairs unplugs)" = "$round" ] && break; sleep 0.1; done
	read -r st plugs unplugs failures < <(pairs slot_state plugs unplugs plug_failures)
	echo "  host: round $round: slot $st, plugs $plugs, unplugs $unplugs, failures $failures"
	[ "$st $plugs $unplugs $failures" = "none $round $round 0" ] ||
		fail "round $round: the daemon says slot $st, plugs $plugs, unplugs $unplugs, failures $failures"
done
wait "$gpid"
grc=$?
gpid=''
grep -ah "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
grep -a "slot plugged into\|slot .* left" "$work/daemon.log" | sed 's/^.*info: /  daemon: /'
[ "$(grep -c "slot plugged into" "$work/daemon.log")" = 2 ] || fail "the daemon did not log two plugs"
echo "$vp_prog: PASS: the slot was hot-plugged into the running guest twice ($count frames verified each time) and went when the other peer left"
