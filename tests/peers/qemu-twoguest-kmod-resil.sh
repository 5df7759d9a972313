#!/bin/bash
# Two real guests through vhost-pci with the guest kernel driver as the backend (as
# qemu-twoguest-kmod.sh: a stock virtio_net frontend guest on vhost-user to vhost-pcid, a
# backend guest with backend-vm= running vhost_pci_net.ko, its vpnet interfaces bridged),
# and everything around the driver goes away and comes back:
#   1. a round (ping + checksummed TCP both ways, started from the frontend);
#   2. the frontend guest reboots (QMP system_reset): vpnet0 follows it, a round passes;
#   3. rmmod under traffic: TCP floods both ways, the backend guest unloads the module while
#      they run and loads it again; vpnet0 comes back, a round passes from each side;
#   4. hot-remove under traffic: TCP floods both ways, the frontend's QEMU is killed
#      (SIGKILL): the daemon unplugs the device, vpnet0 goes; the frontend's QEMU is started
#      again: vpnet0 comes back with it, a round passes from each side;
#   5. the backend guest's kernel log has no WARNING, BUG or Oops (checked after each step).
# One daemon and one backend VM throughout (same pids at the end).
#
#   tests/peers/qemu-twoguest-kmod-resil.sh VHOST_PCID VHOST_PCI_CTL [VP_VM (unused)]
#
# Exits 77 with "SKIP: reason" when QEMU, the guest kit or the guest kernel's headers cannot
# be had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-twoguest-kmod-resil
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

usage="usage: $0 VHOST_PCID VHOST_PCI_CTL [VP_VM]"
pcid=$(realpath "${1:?$usage}")
ctl=$(realpath "${2:?$usage}")
BE=169.254.88.1 FE=169.254.88.2

fail() { tg_fail "$*" be fe; }

tg_setup_kmod

tg_guest be bek "$BE/24"
tg_wait be 90 "ready" || fail "the backend guest did not come up"
bepid=$(tg_qemu_pid be)
tg_pcid "$pcid" be || fail "daemon did not start"

frontend() { tg_guest fe fe "$FE/24" -n "$work/net0.sock" --mac 52:54:00:88:00:02 --reboot; }
clean() { tg_step be dmesg 10 "dmesg clean" || fail "the backend guest's kernel log after $1"; }
# floods: TCP both ways until flood-stop.
floods() {
	tg_step fe "flood $BE" 70 "flood started" || fail "no flood from the frontend"
	tg_step be "flood $FE" 70 "flood started" || fail "no flood from the backend"
}

# 1. A first round.
from=$(tg_lines be)
frontend
tg_wait be 90 "vpnets 1 " "$from" || fail "no vpnet0 in the backend guest"
tg_wait fe 90 "ready" || fail "the frontend did not come up"
tg_round fe 1 $BE 120 || fail "first round"

# 2. The frontend guest reboots.
tg_reboot fe || fail "the frontend did not reboot and come back"
tg_round fe 2 $BE 120 || fail "round after the frontend's reboot"
clean "the frontend's reboot"

# 3. rmmod and insmod under traffic.
floods
from=$(tg_lines be)
tg_step be kmod-reload 90 "kmod reloaded 1" || fail "rmmod/insmod under traffic"
# A round only once the bridge forwards on the new vpnet0: before, it drops what vpnet0 takes.
tg_wait be 30 "bridged vpnet0 forwarding" "$from" || fail "the reloaded vpnet0 does not forward"
tg_step be flood-stop 10 "flood stopped" || fail "flood-stop"
tg_step fe flood-stop 10 "flood stopped" || fail "flood-stop"
tg_round fe 3 $BE 120 || fail "frontend -> backend after the module was reloaded"
tg_round be 3 $FE 120 || fail "backend -> frontend after the module was reloaded"
clean "rmmod/insmod under traffic"

# 4. The frontend's QEMU dies under traffic (the device is hot-removed) and comes back.
floods
from=$(tg_lines be)
kill -KILL "$(tg_qemu_pid fe)" || fail "no frontend QEMU to kill"
wait "${tg_pid[fe]}"
tg_pid[fe]=''
tg_wait be 60 "vpnets 0" "$from" || fail "vpnet0 stayed after its frontend died"
tg_step be flood-stop 10 "flood stopped" || fail "flood-stop"
from=$(tg_lines be)
frontend
tg_wait be 90 "vpnets 1 " "$from" || fail "no vpnet0 for the restarted frontend"
tg_wait be 30 "bridged vpnet0 forwarding" "$from" || fail "the new vpnet0 does not forward"
tg_wait fe 90 "ready" || fail "the restarted frontend did not come up"
tg_round fe 4 $BE 120 || fail "frontend -> backend after the frontend's QEMU was restarted"
tg_round be 4 $FE 120 || fail "backend -> frontend after the frontend's QEMU was restarted"
clean "the hot-remove under traffic"

[ "$(tg_qemu_pid be)" = "$bepid" ] || fail "the backend VM's QEMU changed"
kill -0 "$tg_dpid" || fail "the daemon died"
tg_cmd be quit
wait "${tg_pid[be]}" || fail "the backend guest's test failed (kernel log?)"
tg_pid[be]=''
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
