#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# vp-vm --pair21-guest without QEMU: vhost-pcid serves a 2.1 pair whose peer 0 is a
# "QEMU guest" (design=2.1,qemu=SOCK); a fake sysfs PCI tree lays out the slot that guest
# would see (docs/device.md 9) with the daemon's /proc/PID/fd paths as the BARs (.0 our
# section and a 256-byte register file with IVPosition 0, .1 the header, .2 the other's
# section). vp-vm --pair21-guest --sysfs-root finds it; a host vp-vm --pair21 joins at the
# daemon's socket. Frames verified each way (gen -> sink, then the other way round); the
# doorbells land in a file, so both sides poll.
#
#   test_pair21_guest.sh VP_VM VHOST_PCID VHOST_PCI_CTL
set -u
VM=${1:?usage: test_pair21_guest.sh VP_VM VHOST_PCID VHOST_PCI_CTL}
PCID=${2:?}
CTL=${3:?}
N=20000
T=$(mktemp -d /tmp/vp-p21guest-test-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "test_pair21_guest: FAIL: $*"
	for f in daemon.log g.log h.log; do [ -f "$T/$f" ] && tail -5 "$T/$f" | sed "s/^/  $f: /"; done
	exit 1
}

"$PCID" --server "path=$T/p21.sock,id=p21,design=2.1,qemu=$T/ivs.sock" --control "$T/ctl.sock" \
	--log-level info 2>"$T/daemon.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$T/ctl.sock" ] && [ -S "$T/p21.sock" ] && break; sleep 0.05; done
"$CTL" --control "$T/ctl.sock" --json pairs >"$T/pairs.json" || fail "vhost-pci-ctl pairs"
read -r hdr other mine < <(python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["pairs"][0]["qemu"]
print(q["header"], q["other_section"], q["section"])' "$T/pairs.json") || fail "no qemu peer"

s=$T/sys/0000:00:10
for f in 0 1 2; do mkdir -p "$s.$f" && printf '0x1af4\n' >"$s.$f/vendor" && printf '0x1110\n' >"$s.$f/device"; done
python3 -c 'import sys; open(sys.argv[1], "wb").write(bytes(256))' "$s.0/resource0"  # IVPosition 0
ln -s "$mine" "$s.0/resource2"
ln -s "$hdr" "$s.1/resource2"
ln -s "$other" "$s.2/resource2"

# run NAME ARGS...: vp-vm in the background, JSON in $T/NAME.json.
run() { local n=$1; shift; timeout -k 5 90 "$VM" "$@" --quiet --json >"$T/$n.json" 2>"$T/$n.log" & pids+=($!); }
j() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
check_sink() {
	for k in received:$N lost:0 corrupt:0 reordered:0 ok:True; do
		v=$(j "$T/$1.json" "${k%%:*}")
		[ "$v" = "${k#*:}" ] || fail "$2: ${k%%:*} $v, want ${k#*:}"
	done
}

run g --pair21-guest --sysfs-root "$T/sys" --mode poll --app sink --ends 1 --seconds 60
run h --pair21 "$T/p21.sock" --mode poll --app gen --count $N --size 64-1518 --connect-timeout 30
wait "${pids[-1]}" || fail "host generator failed"
wait "${pids[-2]}" || fail "guest sink failed"
check_sink g "guest sink"
grep -q "2.1 peer on PCI slot 0000:00:10" "$T/g.log" || fail "the guest peer did not say its slot"

run g2 --pair21-guest --sysfs-root "$T/sys" --mode poll --app gen --count $N --size 64-1518 \
	--connect-timeout 30
run h2 --pair21 "$T/p21.sock" --mode poll --app sink --ends 1 --seconds 60
wait "${pids[-1]}" || fail "host sink failed"
wait "${pids[-2]}" || fail "guest generator failed"
[ "$(j "$T/g2.json" tx_packets)" = $N ] || fail "guest generator sent $(j "$T/g2.json" tx_packets)"
check_sink h2 "host sink"
echo "test_pair21_guest: ok ($N frames each way)"
