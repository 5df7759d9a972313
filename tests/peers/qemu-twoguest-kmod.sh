#!/bin/bash
# Two real guests through vhost-pci with the guest kernel driver (guest/linux/,
# vhost_pci_net.ko) as the backend, under stock QEMU 7.2 (TCG):
#   - the backend VM (role bek of tests/guest/tests/twoguest.sh): stock Debian kernel, -M pc,
#     QMP, served by vhost-pcid with backend-vm=; it insmods the module, and every
#     interface the module makes (vpnet0, vpnet1, ...) joins a bridge with 169.254.88.1;
#   - frontend guests: stock virtio_net on vhost-user to vhost-pcid, 169.254.88.2 and .3.
# Steps:
#   1. the first frontend boots: vpnet0 appears (the daemon's QMP hot-plug), with the
#      frontend's UUID and device id (sysfs, checked against vhost-pci-ctl); ping and a
#      checksummed TCP transfer (TG_KIB KiB, default 1024) each way, from each side;
#   2. a second frontend: vpnet1 with its UUID and id; a round from it and to it, and
#      one from the first again (both interfaces carry traffic);
#   2b. hostile frontend processes beside them (vp-vm --test-bad-desc on the host, as in
#      qemu-twoguest.sh), one at a time while frontend 1 floods vpnet0 with TCP: range, loop
#      and len. The daemon hot-plugs each one's device and the module makes vpnet2 for it
#      (checked by device id), which goes link-down at the bad chain: the reason in its
#      kernel log line, sysfs and the driver page (daemon log, vhost-pci-ctl), rx_bad_desc 1
#      in ethtool -S; frontend 2 passes a round meanwhile; stopping the process unplugs the
#      device (vpnet2 goes); frontend 1 passes a round after its flood; the kernel log has no
#      WARNING, BUG or Oops;
#   3. MTU 9000 on the backend's bridge and ports and on the first frontend: 8000-byte pings
#      that leave unfragmented, and a round each way;
#   4. the frontends leave one by one (hot-remove): vpnet1 goes, vpnet0 still works, vpnet0
#      goes; the backend guest's kernel log has no WARNING, BUG or Oops.
#
#   tests/peers/qemu-twoguest-kmod.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU, the guest kit or the guest kernel's headers cannot
# be had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-twoguest-kmod
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
# Only for the hostile frontend processes on the host: the backend guest runs the module
# (tg_initrd packs vp-vm when vpvm is set).
hostile_vm=$vpvm
vpvm=''
BE=169.254.88.1 FE1=169.254.88.2 FE2=169.254.88.3

fail() { tg_fail "$*" be fe1 fe2; }

tg_setup_kmod

tg_guest be bek "$BE/24"
tg_wait be 90 "ready" || fail "the backend guest did not come up"
tg_wait be 5 "vpnets 0" || fail "vpnet interfaces in the backend guest before any frontend"
tg_pcid "$pcid" be || fail "daemon did not start"

# check_vpnets N: the backend guest's last "vpnets" marker names N interfaces, vpnetI the
# device of frontend I+1 (vhost-pci-ctl: the device whose peer pid is that frontend's QEMU)
# by UUID and device id. The MAC is the frontend's when the daemon knows it (its config
# space); stock QEMU's vhost-user-net never sends that (only vhost-vdpa does), so the driver
# picks a random, locally administered one.
check_vpnets() {
	local m i pids=()
	m=$(tg_marker be "vpnets ")
	echo "$vp_prog: backend guest: $m"
	for i in $(seq "$1"); do pids+=("$(tg_qemu_pid "fe$i")"); done
	"$ctl" --control "$work/ctl.sock" --json list | python3 -c '
import json, sys
n, marker, pids = int(sys.argv[1]), sys.argv[2].split(None, 1)[1], sys.argv[3:]
devs = {str(d["peer_pid"]): d for d in json.load(sys.stdin)["devices"]
        if (d.get("backend") or {}).get("state") == "plugged"}
parts = [p.split() for p in marker.split(";") if p.strip()]
if int(parts[0][0]) != n or len(parts) != n:
    sys.exit("%s interfaces, expected %d" % (parts[0][0], n))
parts[0] = parts[0][1:]
for i, (name, mac, _, uuid, _, did) in enumerate(parts):
    d = devs.get(pids[i])
    if name != "vpnet%d" % i or not d:
        sys.exit("%s: expected vpnet%d for the device of pid %s (%s)" % (name, i, pids[i], sorted(devs)))
    if d["uuid"].lower() != uuid.lower() or str(d["id"]) != did:
        sys.exit("%s: uuid %s id %s, vhost-pci-ctl has %s %s" % (name, uuid, did, d["uuid"], d["id"]))
    want = d.get("mac")
    if want and mac != want:
        sys.exit("%s: MAC %s, the frontend has %s" % (name, mac, want))
    if not want and not int(mac.split(":")[0], 16) & 2:
        sys.exit("%s: MAC %s is not locally administered (random)" % (name, mac))
print("qemu-twoguest-kmod: %d interfaces, each with its frontend\x27s UUID and device id" % n)' \
		"$1" "$m" "${pids[@]}"
}

# join N IP: frontend guest feN comes; vpnet(N-1) appears and is bridged; a round from each
# side (the backend's is round N).
join() {
	local from
	from=$(tg_lines be)
	tg_guest "fe$1" fe "$2/24" -n "$work/net0.sock" --mac "52:54:00:88:00:0$((1 + $1))"
	tg_wait be 90 "vpnets $1 " "$from" || fail "no interface for frontend $1 in the backend guest"
	tg_wait be 30 "bridged vpnet$(($1 - 1)) forwarding" "$from" ||
		fail "vpnet$(($1 - 1)) was not bridged, or does not forward"
	check_vpnets "$1" || fail "the interfaces do not match the frontends"
	tg_wait "fe$1" 90 "ready" || fail "frontend $1 did not come up"
	tg_round "fe$1" 1 $BE 120 || fail "frontend $1 -> backend"
	tg_round be "$1" "$2" 120 || fail "backend -> frontend $1"
}

# 1. The first frontend. 2. A second one, and the first again.
join 1 $FE1
join 2 $FE2
tg_round fe1 2 $BE 120 || fail "frontend 1 -> backend beside frontend 2"

# 2b. hostile N KIND WHY: the Nth hostile frontend process (twoguest-lib.sh), of KIND; the
#     module takes its interface down with WHY, and only it.
hostile() {
	local from m
	tg_step fe1 "flood $BE" 70 "flood started" || fail "no flood from frontend 1"
	from=$(tg_lines be)
	vpvm=$hostile_vm tg_hostile_start "$2" 3 || fail "$2: hostile frontend"
	tg_wait be 30 "bridged vpnet2" "$from" && tg_wait be 30 "vpnets 3 " "$from" ||
		fail "$2: no vpnet2 for the hostile frontend"
	tg_hostile_failed "$3" || fail "$2: hostile frontend"
	m=$(tg_marker be "vpnets 3 " "$from")
	"$ctl" --control "$work/ctl.sock" --json list | python3 -c '
import json, sys
pid, marker = int(sys.argv[1]), sys.argv[2]
d = [d for d in json.load(sys.stdin)["devices"] if d["peer_pid"] == pid]
ifs = {p.split()[0]: p.split()[-1] for p in marker.split(";")[:-1] if len(p.split()) >= 6}
sys.exit(not d or ifs.get("vpnet2") != str(d[0]["id"]))' "$tg_hostile_pid" "${m#vpnets 3 }" ||
		fail "$2: vpnet2 is not the hostile frontend's device ($m)"
	# In the backend guest: link down, the reason in sysfs and in the Nth "link down" line of
	# vpnet2's kernel log, one refused chain counted.
	from=$(tg_lines be)
	tg_cmd be "vpnet vpnet2" && tg_wait be 10 "vpnet vpnet2 \(end\|FAIL\)" "$from" ||
		fail "$2: no answer from the backend guest"
	m=$(tg_marker be "vpnet vpnet2 carrier" "$from")
	echo "$vp_prog: backend guest: $m"
	grep -q "carrier 0 reason '[^']*$3" <<<"$m" || fail "$2: vpnet2 is not down with '$3'"
	grep -q " rx_bad_desc=1 " <<<"$m" || fail "$2: vpnet2 did not count one refused chain"
	m=$(tail -n +"$from" "$work/be.log" | grep -a "INFO tg: vpnet vpnet2 log .*vpnet2: link down: " |
		sed 's/.*INFO tg: vpnet vpnet2 log //' | tr -d '\r')
	[ "$(echo "$m" | grep -c .)" = "$1" ] && echo "$m" | tail -1 | grep -q -- "$3" ||
		fail "$2: the kernel log does not have vpnet2's link down with '$3' ($m)"
	echo "$vp_prog: backend guest: $(echo "$m" | tail -1)"
	tg_round fe2 "1$1" $BE 120 || fail "frontend 2 beside the hostile frontend ($2)"
	from=$(tg_lines be)
	tg_hostile_stop 2 || fail "$2: hostile frontend"
	tg_wait be 30 "vpnets 2 " "$from" || fail "$2: vpnet2 stayed after its device was unplugged"
	tg_step fe1 flood-stop 10 "flood stopped" || fail "flood-stop"
	tg_round fe1 "1$1" $BE 120 || fail "frontend 1 after its flood beside the hostile frontend ($2)"
	tg_step be dmesg 10 "dmesg clean" || fail "the backend guest's kernel log after $2"
}
hostile 1 range "outside guest memory"
hostile 2 loop "loop?"
hostile 3 len "outside guest memory"

# 3. Jumbo frames between the backend and the first frontend.
tg_step be "mtu 9000" 10 "mtu 9000 ok" || fail "MTU 9000 in the backend guest"
tg_step fe1 "mtu 9000" 10 "mtu 9000 ok" || fail "MTU 9000 in frontend 1"
tg_round fe1 3 $BE 120 8000 || fail "frontend 1 -> backend at MTU 9000"
tg_round be 3 $FE1 120 8000 || fail "backend -> frontend 1 at MTU 9000"

# 4. The frontends leave: their interfaces go.
from=$(tg_lines be)
tg_stop fe2
tg_wait be 60 "vpnets 1 " "$from" || fail "vpnet1 did not disappear"
tg_round fe1 4 $BE 120 || fail "frontend 1 after frontend 2 left"
from=$(tg_lines be)
tg_stop fe1
tg_wait be 60 "vpnets 0" "$from" || fail "vpnet0 did not disappear"
tg_cmd be quit
wait "${tg_pid[be]}" || fail "the backend guest's test failed (kernel log?)"
tg_pid[be]=''
kill -0 "$tg_dpid" || fail "the daemon died"
n=$(grep -c "unplugged from backend VM" "$work/daemon.log")
[ "$n" = 5 ] || fail "$n unplugs logged, expected 5 (2 frontends, 3 hostile)"
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
