#!/bin/bash
# Two real guests through vhost-pci (as qemu-twoguest.sh: a stock frontend guest on
# vhost-user to vhost-pcid, a backend guest with backend-vm= running vp-vm --guest-pci --app
# tap), and everything that can go away on the frontend's or the backend app's side does:
#   1. a round (ping + checksummed TCP both ways, started from the frontend);
#   2. the frontend guest reboots (QMP system_reset; QEMU runs without -no-reboot): the
#      device follows it, a round passes;
#   3. the frontend's QEMU is killed (SIGKILL) and started again: its device goes from the
#      backend guest and a new one comes; a round passes;
#   4. the backend app (vp-vm inside the backend guest) is killed and started again: a round
#      passes, in both directions;
# with one daemon and one backend VM throughout (same pids at the end, no restart).
#
#   tests/peers/qemu-twoguest-resil.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kit cannot be had, 0 on success,
# 1 on failure.
set -uo pipefail
vp_prog=qemu-twoguest-resil
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
BE=169.254.88.1 FE=169.254.88.2

fail() { tg_fail "$*" be fe; }

tg_require

work=$(mktemp -d /tmp/vp-qemu-twoguest-resil.XXXXXX)
trap tg_cleanup EXIT

tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"
tg_lock
t0=$(vp_now)

tg_guest be be "$BE/24"
tg_wait be 90 "ready" || fail "the backend guest did not come up"
bepid=$(tg_qemu_pid be)
tg_pcid "$pcid" be || fail "daemon did not start"

frontend() { tg_guest fe fe "$FE/24" -n "$work/net0.sock" --mac 52:54:00:88:00:02 --reboot; }

# 1. A first round.
from=$(tg_lines be)
frontend
tg_wait be 90 "pairs 1" "$from" || fail "no device in the backend guest"
tg_wait fe 90 "ready" || fail "the frontend did not come up"
tg_round fe 1 $BE 120 || fail "first round"

# 2. The frontend guest reboots.
tg_reboot fe || fail "the frontend did not reboot and come back"
tg_round fe 2 $BE 120 || fail "round after the frontend's reboot"

# 3. The frontend's QEMU dies and is started again.
from=$(tg_lines be)
kill -KILL "$(tg_qemu_pid fe)" || fail "no frontend QEMU to kill"
wait "${tg_pid[fe]}"
tg_pid[fe]=''
tg_wait be 60 "pairs 0" "$from" || fail "the dead frontend's device stayed in the backend guest"
from=$(tg_lines be)
frontend
tg_wait be 90 "pairs 1" "$from" || fail "no device for the restarted frontend"
tg_wait fe 90 "ready" || fail "the restarted frontend did not come up"
tg_round fe 3 $BE 120 || fail "round after the frontend's QEMU was restarted"

# 4. The backend app dies and is started again.
from=$(tg_lines be)
tg_cmd be app-kill || fail "app-kill"
tg_wait be 30 "app restarted" "$from" || fail "the backend app did not restart"
# The new vp-vm makes a new TAP: a round only once the bridge forwards on it (before, a
# frame vp-vm takes from the frontend is written to a TAP the bridge drops it on).
tg_wait be 30 "bridged vpB forwarding" "$from" || fail "the backend app's new TAP does not forward"
tg_round fe 4 $BE 120 || fail "round after the backend app was restarted"
tg_round be 1 $FE 120 || fail "backend -> frontend after the backend app was restarted"

[ "$(tg_qemu_pid be)" = "$bepid" ] || fail "the backend VM's QEMU changed"
kill -0 "$tg_dpid" || fail "the daemon died"
tg_cmd be quit
wait "${tg_pid[be]}" || fail "the backend guest's test failed"
tg_pid[be]=''
grep -q "such unplugs" "$work/daemon.log" && fail "an unplug timed out"
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
