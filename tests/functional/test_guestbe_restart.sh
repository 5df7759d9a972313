#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# vp-vm inside a backend VM killed (SIGKILL: no STOP, no driver page) while frames flow,
# and started again on the same running device. The window still says where the rings
# were at the handshake; the new vp-vm must resume at the rings' used index instead
# (walking from the old index breaks the ring: "avail idx N is M ahead"), and echo again.
# guestbe-host's fake sysfs tree stands in for the guest's PCI tree.
#
#   test_guestbe_restart.sh VP_VM GUESTBE_HOST
set -u
VM=${1:?usage: test_guestbe_restart.sh VP_VM GUESTBE_HOST}
# Under ASan, LeakSanitizer's exit-time scan of vp-vm --guest-pci was seen to hang
# (see test_guestbe.sh): leaks are checked by the other suites.
VM_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
HOST=${2:?}
T=$(mktemp -d /tmp/vp-guestbe-restart-XXXXXX)
hpid='' vpid=''
cleanup() {
	for p in $vpid $hpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "test_guestbe_restart: FAIL: $*"; tail -n 6 "$T"/vm*.log | sed 's/^/  vm: /'; exit 1; }
wait_log() { # FILE PATTERN
	for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
echoing() { # N: vp-vm N's progress line (once a second) shows frames coming in
	for _ in $(seq 100); do
		grep -Eq "rx +[0-9.]*[1-9]" "$T/vm$1.log" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

timeout 60 "$HOST" fake "$T/sys" 1000000000 40 >"$T/host.out" 2>&1 &
hpid=$!
wait_log "$T/host.out" ready || fail "the host never published its device"
env ASAN_OPTIONS="$VM_ASAN" "$VM" --backend --guest-pci --sysfs-root "$T/sys" --app echo --mode poll --seconds 30 \
	--json >"$T/vm1.json" 2>"$T/vm1.log" &
vpid=$!
wait_log "$T/vm1.log" "link up" || fail "the first vp-vm never brought the link up"
echoing 1 || fail "the first vp-vm echoed nothing"
kill -KILL "$vpid"
wait "$vpid" 2>/dev/null
env ASAN_OPTIONS="$VM_ASAN" "$VM" --backend --guest-pci --sysfs-root "$T/sys" --app echo --mode poll --seconds 2 \
	--quiet --json >"$T/vm2.json" 2>"$T/vm2.log" &
vpid=$!
wait "$vpid"
vpid=''
grep -q "resuming at the ring's used index" "$T/vm2.log" ||
	fail "the second vp-vm did not resume at the used index"
grep -q "broken" "$T/vm2.log" && fail "a ring broke after the restart"
n=$(grep -o '"rx_packets":[0-9]*' "$T/vm2.json" | cut -d: -f2)
[ "${n:-0}" -gt 0 ] || fail "the second vp-vm echoed nothing"
echo "test_guestbe_restart: ok (the second vp-vm echoed $n frames)"
