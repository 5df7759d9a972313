#!/bin/bash
# Checksum and TCP segmentation offloads across a vhost-pci link between two stock QEMU 7.2
# guests (TCG): frontend virtio_net on vhost-user to vhost-pcid, backend VM with the guest
# kernel driver (vhost_pci_net.ko, role bek of tests/guest/tests/twoguest.sh), the daemon's
# server declaring what that backend honours (offloads=tso, docs/protocol.md "Offloads").
# Steps:
#   1. the frontend negotiates CSUM, GUEST_CSUM, HOST_TSO4/6 and GUEST_TSO4/6: vhost-pci-ctl's
#      driver_feature_names, the daemon's log, and the frontend driver's own virtio features
#      (sysfs) say so; ethtool -k shows tx checksumming and TSO on in both guests;
#   2. a TCP round each way (TG_KIB KiB, default 4096), each checked by sha256;
#   3. the large frames crossed whole: the backend driver received GSO frames from the
#      frontend (rx_gso, their mean size above the 1514-byte MTU frame) and sent it GSO
#      frames (tx_gso, likewise), with no offload header dropped (rx_drop_offload 0); the
#      frontend's interface received frames whose mean size is above the MTU;
#   4. a hostile frontend process (vp-vm --test-bad-desc hdr on the host, CSUM negotiated)
#      joins: vpnet1; it posts six frames whose headers no device may take (csum_start or
#      csum_offset past the frame, GSO without HOST_TSO, gso_size 0, an unknown GSO type, an
#      unknown flag): vpnet1 counts exactly six rx_drop_offload, keeps its link, and the
#      good frontend still passes a round;
#   5. the backend guest's kernel log has no WARNING, BUG or Oops;
#   6. the userspace backend: a new backend guest (role be: vp-vm --guest-pci --app tap,
#      which opts in to TSO) and frontend, the same offloads=tso: negotiated, a round each
#      way, and the TAP (TSO on) passed frames above the MTU both ways.
# The same driver without offloads= (the old set: none of these bits) is what
# qemu-twoguest-kmod.sh runs; bench/twoguest.sh measures the two side by side.
#
#   tests/peers/qemu-twoguest-offload.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU, the guest kit or the guest kernel's headers cannot
# be had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-twoguest-offload
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"	# the hostile frontend on the host; step 6's backend
BE=169.254.88.1 FE=169.254.88.2
export TG_KIB=${TG_KIB:-4096}
want='CSUM GUEST_CSUM HOST_TSO4 HOST_TSO6 GUEST_TSO4 GUEST_TSO6'

fail() { tg_fail "$*" be fe; }

tg_setup_kmod

# pair BE ROLE IFACE FE: backend guest BE (ROLE be or bek), the daemon serving it with
# offloads=tso, frontend guest FE; until BE has bridged IFACE and FE is ready.
pair() {
	local from
	tg_guest "$1" "$2" "$BE/24"
	tg_wait "$1" 90 "ready" || fail "the backend guest ($2) did not come up"
	tg_pcid "$pcid" "$1" offloads=tso || fail "daemon did not start"
	from=$(tg_lines "$1")
	tg_guest "$4" fe "$FE/24" -n "$work/net0.sock" --mac 52:54:00:88:00:02
	tg_wait "$1" 90 "bridged $3" "$from" || fail "no $3 in the backend guest"
	tg_wait "$4" 90 "ready" || fail "the frontend did not come up"
}
pair be bek vpnet0 fe

# offloads NAME: the guest's "offloads" markers (one per interface), printed; in $marks.
offloads() {
	local from
	from=$(tg_lines "$1")
	tg_cmd "$1" offloads || return 1
	tg_wait "$1" 30 "offloads \(end\|FAIL\)" "$from" || return 1
	marks=$(tail -n +"$from" "$work/$1.log" | grep -a "INFO tg: offloads " | grep -v "offloads end" |
		sed 's/.*INFO tg: offloads //' | tr -d '\r')
	[ -n "$marks" ] && ! grep -q FAIL <<<"$marks" || return 1
	sed "s/^/$vp_prog: $1: /" <<<"$marks"
}

# 1. What was negotiated, as the daemon, the frontend's driver and ethtool see it.
negotiated() {
	"$ctl" --control "$work/ctl.sock" --json list | python3 -c '
import json, sys
want = sys.argv[1].split()
devs = [d for d in json.load(sys.stdin)["devices"] if (d.get("backend") or {}).get("state") == "plugged"]
if len(devs) != 1:
    sys.exit("%d plugged devices, expected 1" % len(devs))
names = devs[0].get("driver_feature_names") or []
missing = [w for w in want if w not in names]
if missing:
    sys.exit("the frontend did not negotiate %s (it has %s)" % (" ".join(missing), " ".join(names)))
print("qemu-twoguest-offload: vhost-pci-ctl: device %s negotiated %s" % (devs[0]["id"], " ".join(names)))' \
		"$want"
}
negotiated || fail "the offloads are not negotiated"
grep -a "ready: server net0" "$work/daemon.log" | tail -1 | sed "s/^/$vp_prog: daemon: /"
"$ctl" --control "$work/ctl.sock" --json servers | python3 -c '
import json, sys
s = [s for s in json.load(sys.stdin)["servers"] if s["id"] == "net0"][0]
f = int(s["features"], 16)
if f & 0x3983 != 0x3983:    # CSUM GUEST_CSUM GUEST_TSO4/6 HOST_TSO4/6 (bits 0 1 7 8 11 12)
    sys.exit("server net0 offers %s, without the TSO set" % s["features"])' ||
	fail "vhost-pci-ctl servers does not show the offloads offered"
offloads fe || fail "no offload report from the frontend"
for w in $want; do
	grep -q " virtio.* $w\( \|$\)" <<<"$marks" || fail "the frontend's driver did not negotiate $w"
done
grep -q "tx-checksumming=on .*tcp-segmentation-offload=on" <<<"$marks" ||
	fail "frontend: tx checksumming or TSO off"
offloads be || fail "no offload report from the backend"
grep -q "^vpnet0 k.*tx-checksumming=on .*tcp-segmentation-offload=on generic-segmentation-offload=on generic-receive-offload=on" <<<"$marks" ||
	fail "backend vpnet0: tx checksumming, TSO, GSO or GRO off"

# 2. TCP each way, checked by sha256 (the round also pings).
tg_round fe 1 $BE 240 || fail "frontend -> backend"
tg_round be 1 $FE 240 || fail "backend -> frontend"

# mean_above_mtu WHO MARK: the "stat rx P/B tx P/B" of an offloads marker: frames above the
# MTU on average both ways.
mean_above_mtu() {
	python3 - "$1" "$2" <<'EOF'
import re, sys
who, m = sys.argv[1], sys.argv[2]
for d, p, b in re.findall(r"(rx|tx) (\d+)/(\d+)", m.split(" stat ", 1)[1]):
    p, b = int(p), int(b)
    if not p or b / p <= 1514:
        sys.exit("%s: %s %d frames, %d bytes: none above the MTU on average" % (who, d, p, b))
    print("qemu-twoguest-offload: %s: %s %d frames, %d bytes each on average" % (who, d, p, b // p))
EOF
}

# 3. Frames above the MTU crossed whole, both ways.
offloads be || fail "no offload report from the backend"
python3 - "$(grep '^vpnet0 ' <<<"$marks")" <<'EOF' || fail "the large frames did not cross whole"
import re, sys
m = sys.argv[1]
c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m)}
for d in ("rx", "tx"):
    n, b = c.get(d + "_gso", 0), c.get(d + "_gso_bytes", 0)
    if n == 0 or b / n <= 1514:
        sys.exit("vpnet0: %d %s GSO frames of %d bytes: none above the MTU" % (n, d, b))
    print("qemu-twoguest-offload: vpnet0: %s %d GSO frames, %d bytes each on average" % (d, n, b // n))
if c.get("rx_drop_offload", 0):
    sys.exit("vpnet0: %d offload headers dropped" % c["rx_drop_offload"])
EOF
offloads fe || fail "no offload report from the frontend"
mean_above_mtu frontend "$marks" || fail "the frontend's frames were not above the MTU"

# 4. A hostile frontend's headers: counted drops on its own interface, nothing else.
from=$(tg_lines be)
"$vpvm" --frontend --connect "$work/net0.sock" --app gen --rate 200 --seconds 3600 \
	--ram 16M --name hostile-hdr --features csum,guest_csum,mrg_rxbuf,event_idx,indirect_desc \
	--test-bad-desc hdr@64 --log-level info --quiet --json >"$work/hostile.json" \
	2>"$work/hostile.log" &
hostile_pid=$!
tg_wait be 90 "bridged vpnet1" "$from" || fail "no vpnet1 for the hostile frontend"
vp_wait_serial "$work/hostile.log" "$hostile_pid" 30 "posted a bad TX chain (hdr)" ||
	fail "the hostile frontend did not post its headers: $(tail -3 "$work/hostile.log")"
ok=''
for _ in $(seq 20); do
	offloads be || fail "no offload report from the backend"
	grep -q "^vpnet1 .* rx_drop_offload=6 " <<<"$marks" && { ok=1; break; }
	sleep 0.5
done
[ -n "$ok" ] || fail "vpnet1 did not count the six bad headers"
tg_cmd be diag && tg_wait be 10 "diag end" || fail "no diag from the backend"
tail -n +"$from" "$work/be.log" | grep -a "diag vpnet1: carrier 1 " >/dev/null ||
	fail "vpnet1 lost its link over the bad headers"
echo "$vp_prog: vpnet1: six bad headers dropped and counted, link up"
tg_round fe 2 $BE 240 || fail "frontend -> backend beside the hostile frontend"
kill "$hostile_pid"; wait "$hostile_pid" 2>/dev/null
tg_wait be 60 "vpnets 1 " "$from" || fail "vpnet1 did not go with the hostile frontend"

# 5. The backend's kernel is clean.
tg_step be dmesg 10 "dmesg clean" || fail "the backend guest's kernel log"
tg_stop fe
tg_cmd be quit
wait "${tg_pid[be]}" || fail "the backend guest's test failed (kernel log?)"
tg_pid[be]=''
kill -0 "$tg_dpid" || fail "the daemon died"

# 6. The same offloads with vp-vm's tap app as the backend, in a new backend guest.
fail() { tg_fail "$*" be2 fe2; }
kill "$tg_dpid"; wait "$tg_dpid" 2>/dev/null; tg_dpid=''
rm -rf "$work/run" "$work/ctl.sock" "$work/net0.sock"
pair be2 be vpB fe2
negotiated || fail "vp-vm backend: the offloads are not negotiated"
tg_round fe2 1 $BE 240 || fail "vp-vm backend: frontend -> backend"
tg_round be2 1 $FE 240 || fail "vp-vm backend: backend -> frontend"
offloads be2 || fail "no offload report from the vp-vm backend"
grep -q "^vpB k.*tx-checksumming=on .*tcp-segmentation-offload=on" <<<"$marks" ||
	fail "vp-vm backend: the TAP has no TSO"
mean_above_mtu "vp-vm's TAP" "$(grep '^vpB ' <<<"$marks")" ||
	fail "vp-vm backend: the TAP's frames were not above the MTU"
tg_stop fe2
tg_cmd be2 quit
wait "${tg_pid[be2]}" || fail "the vp-vm backend guest's test failed"
tg_pid[be2]=''
echo "$vp_prog: PASS in $(vp_elapsed "$t0" "$(vp_now)") s"
