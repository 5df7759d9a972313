#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# vp-vm --pair21-guest without QEMU: vhost-pcid serves a 2.1 pair whose peer 0 is a
# "QEMU guest" (design=2.1,qemu=SOCK); a fake sysfs PCI tree lays out the slot that guest
# would see (docs/device.md 9) with the daemon's /proc/PID/fd paths as the BARs (.0 our
# section and a 256-byte register file with IVPosition 0, .1 the header, .2 the other's
# section). vp-vm --pair21-guest --sysfs-root finds it; a host vp-vm --pair21 joins at the
# daemon's socket. Frames verified each way (gen -> sink, then the other way round); the
# doorbells land in a file, so both sides poll. Then the ivshmem server as a QEMU sees it,
# twice (a QEMU that leaves is replaced by the next): our id 0, our section as the shared
# memory, the other peer's two vectors under id 1 and our own two under id 0.
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
read -r hdr other mine ssize < <(python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["pairs"][0]["qemu"]
print(q["header"], q["other_section"], q["section"], q["section_size"])' "$T/pairs.json") ||
	fail "no qemu peer"

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
# ivs_check SOCK SECTION_SIZE ID: what QEMU's ivshmem-doorbell reads from the server at SOCK
# (QEMU docs/specs/ivshmem-spec.rst): our id ID, our section as the shared memory, the other
# peer's two vectors under its id and our own two under ID.
ivs_check() {
	python3 - "$@" <<'PY'
import array, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
msgs = []
while len(msgs) < 7:
    fds = array.array("i")
    data, anc, _, _ = s.recvmsg(8, socket.CMSG_SPACE(4))
    assert len(data) == 8, "short message"
    for lvl, typ, d in anc:
        fds.frombytes(d[:len(d) - len(d) % 4])
    msgs.append((struct.unpack("<q", data)[0], list(fds)))
(ver, f0), (me, f1), (shm, (shmfd,)) = msgs[:3]
assert ver == 0 and not f0 and me == int(sys.argv[3]) and not f1 and shm == -1, msgs[:3]
assert os.fstat(shmfd).st_size == int(sys.argv[2]), "shared memory is not our section"
peers = [(v, len(f)) for v, f in msgs[3:]]
other = 1 - me
assert peers == [(other, 1), (other, 1), (me, 1), (me, 1)], peers
for _, f in msgs:
    for fd in f:
        os.close(fd)
PY
}
for conn in 1 2; do
	ivs_check "$T/ivs.sock" "$ssize" 0 ||
		fail "QEMU connection $conn: the ivshmem server's setup is wrong"
	for _ in $(seq 50); do grep -q "QEMU of peer 0 left" "$T/daemon.log" && break; sleep 0.05; done
done
[ "$(grep -c "QEMU connected for peer 0" "$T/daemon.log")" = 2 ] ||
	fail "the daemon did not serve a second QEMU"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null

# Both peers QEMU guests (qemu= and qemu1=): the daemon holds both halves and serves one
# ivshmem server per guest; each "guest" is a vp-vm --pair21-guest over its own fake slot,
# IVPosition 0 and 1. Frames verified each way between the two.
"$PCID" --server "path=$T/p2.sock,id=p2,design=2.1,qemu=$T/ivs0.sock,qemu1=$T/ivs1.sock" \
	--control "$T/ctl2.sock" --log-level info 2>"$T/daemon.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$T/ctl2.sock" ] && [ -S "$T/ivs1.sock" ] && break; sleep 0.05; done
"$CTL" --control "$T/ctl2.sock" --json pairs >"$T/pairs2.json" || fail "vhost-pci-ctl pairs (2)"
python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["pairs"][0]
assert p["peer0"] and p["peer1"] and p["joins"] == 2, p
for key, peer in ("qemu", 0), ("qemu1", 1):
    q = p[key]
    assert q["peer"] == peer and q["ivshmem"].endswith("/ivs%d.sock" % peer), q
    print(peer, q["header"], q["section"], q["other_section"], q["section_size"])
' "$T/pairs2.json" >"$T/qemus.txt" || fail "two qemu peers expected in $(cat "$T/pairs2.json")"
while read -r id hdr mine other ssize; do
	s=$T/sys$id/0000:00:1$id
	for f in 0 1 2; do mkdir -p "$s.$f" && printf '0x1af4\n' >"$s.$f/vendor" && printf '0x1110\n' >"$s.$f/device"; done
	python3 -c 'import sys; b = bytearray(256); b[8] = int(sys.argv[2]); open(sys.argv[1], "wb").write(b)' \
		"$s.0/resource0" "$id"  # IVPosition
	ln -s "$mine" "$s.0/resource2"
	ln -s "$hdr" "$s.1/resource2"
	ln -s "$other" "$s.2/resource2"
	ivs_check "$T/ivs$id.sock" "$ssize" "$id" || fail "QEMU peer $id: the ivshmem server's setup is wrong"
done <"$T/qemus.txt"
for dir in 01 10; do  # guest 0 -> guest 1, then back
	tx=${dir:0:1} rx=${dir:1:1}
	run s$dir --pair21-guest --sysfs-root "$T/sys$rx" --mode poll --app sink --ends 1 --seconds 60
	run g$dir --pair21-guest --sysfs-root "$T/sys$tx" --mode poll --app gen --count $N \
		--size 64-1518 --connect-timeout 30
	wait "${pids[-1]}" || fail "guest $tx generator failed"
	wait "${pids[-2]}" || fail "guest $rx sink failed"
	[ "$(j "$T/g$dir.json" tx_packets)" = $N ] || fail "guest $tx sent $(j "$T/g$dir.json" tx_packets)"
	check_sink s$dir "guest $rx sink"
	grep -q "peer $rx of a window" "$T/s$dir.log" || fail "guest $rx did not find itself peer $rx"
done
# Both halves are the daemon's: a third peer at path= is refused ("the pair is full"; vp-vm
# keeps asking until its time is up, as it does for a full pair of processes).
timeout -k 5 30 "$VM" --pair21 "$T/p2.sock" --mode poll --app sink --seconds 1 --connect-timeout 1 \
	--quiet --json >"$T/third.json" 2>"$T/third.log"
grep -q "refused us: the pair is full" "$T/third.log" || fail "a third peer was not refused"
"$CTL" --control "$T/ctl2.sock" --json pairs >"$T/pairs3.json" || fail "vhost-pci-ctl pairs (3)"
python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["pairs"][0]; assert p["refused"] >= 1 and p["joins"] == 2, p' \
	"$T/pairs3.json" || fail "the third peer was not refused: $(cat "$T/pairs3.json")"
grep -q "pair is full" "$T/daemon.log" || fail "the daemon did not say why it refused the third peer"
echo "test_pair21_guest: ok ($N frames each way, two QEMU connections served; two QEMU peers of one pair: $N frames each way)"
