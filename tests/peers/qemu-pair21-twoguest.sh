#!/bin/bash
# Two stock QEMU 7.2 guests (TCG, -M pc) as the two peers of one 2.1 pair (docs/window21.md
# 9); no peer on the host:
#   - vhost-pcid serves the pair (design=2.1,qemu=SOCK0,qemu1=SOCK1): it keeps both halves and
#     serves each on its own ivshmem server; vhost-pci-ctl pairs names, under "qemu" (peer 0)
#     and "qemu1" (peer 1), the /proc paths of the header and of the other's section for that
#     guest's read-only functions;
#   - each guest gets one PCI slot (docs/device.md 8): .0 ivshmem-doorbell on its server (its
#     section, IVPosition = its peer id, doorbells both ways), .1 and .2 ivshmem-plain over
#     memory-backend-file readonly=on (the header, the other's section);
#   - both run tests/guest/tests/pair21.sh (this build's vp-vm --pair21-guest): guest 0 a sink
#     for guest 1's generator, then a write into guest 1's section, then a generator for
#     guest 1's sink; guest 1 (VP_P21_FIRST=gen) the same in the other order;
#   - checked: COUNT frames each way, verified byte by byte by the receiving guest (size
#     64-1518); each guest's writes read back unchanged in that guest, and absent from the
#     other's section as the daemon holds it.
#
#   tests/peers/qemu-pair21-twoguest.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# Exits 77 with "SKIP: reason" where the other guest tests skip, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-pair21-twoguest
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
count=${VP_P21_COUNT:-20000}

fail() { tg_fail_logs "$*" daemon.log; }

tg_require  # exits 77 (SKIP) where the other guest tests skip

work=$(mktemp -d /tmp/vp-qemu-pair21-2g.XXXXXX)
gpids=() dpid=''
cleanup() {
	for p in "${gpids[@]}" $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ "${VP_KEEP_LOGS:-0}" = 1 ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

tg_lock  # one test boots guests at a time, machine-wide
tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$pcid" --server "path=$work/p21.sock,id=p21,design=2.1,qemu=$work/ivs0.sock,qemu1=$work/ivs1.sock" \
	--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && [ -S "$work/ivs1.sock" ] && break; sleep 0.1; done
[ -S "$work/ivs1.sock" ] || fail "the daemon did not serve the pair's two QEMU peers"

# What each guest's command line needs, as the daemon says it.
"$ctl" --control "$work/ctl.sock" --json pairs >"$work/pairs.json" || fail "vhost-pci-ctl pairs"
python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["pairs"][0]
assert p["peer0"] and p["peer1"], "the daemon does not hold both halves"
for key, peer in ("qemu", 0), ("qemu1", 1):
    q = p[key]
    assert q["peer"] == peer, q
    print(peer, q["header"], q["other_section"], q["section_size"])' "$work/pairs.json" \
	>"$work/qemus.txt" || fail "no two qemu peers in $(cat "$work/pairs.json")"

first=(sink gen)
while read -r id header other ssize; do
	tg_p21_slot_args "$work/ivs$id.sock" "$header" "$other" "$ssize"
	timeout 700 "$here/../guest/run-guest.sh" -t pair21 --name "pair21-guest$id" \
		--initrd "$work/initrd.cpio" -e VP_P21_COUNT="$count" -e VP_P21_FIRST="${first[$id]}" \
		-T 600 -l "$work/serial$id.log" "${tg_p21_slot[@]}" \
		>"$work/guest$id.out" 2>&1 &
	gpids+=($!)
done <"$work/qemus.txt"
[ "${#gpids[@]}" = 2 ] || fail "started ${#gpids[@]} guests"

rcs=()
for g in 0 1; do wait "${gpids[$g]}"; rcs+=($?); done
gpids=()
for g in 0 1; do grep -ah "VPGUEST: INFO" "$work/serial$g.log" | sed "s/^/  guest $g: /"; done
for g in 0 1; do
	[ "${rcs[$g]}" = 0 ] || { tail -5 "$work/guest$g.out"; fail "guest $g failed (rc ${rcs[$g]})"; }
done
grep -q "QEMU connected for peer 0" "$work/daemon.log" &&
	grep -q "QEMU connected for peer 1" "$work/daemon.log" ||
	fail "the daemon did not see both QEMUs connect"
# Each guest's own account (the script fails on any other count; checked here too).
for g in 0 1; do
	grep -aq "received $count lost 0 corrupt 0" "$work/serial$g.log" ||
		fail "guest $g did not receive $count verified frames"
	grep -aq "sent $count," "$work/serial$g.log" || fail "guest $g did not send $count frames"
	grep -aq "write to the other's section at 256: was" "$work/serial$g.log" ||
		fail "guest $g did not report its write attempt"
done
# The words each guest tried to overwrite, seen from the host: the other's section (the
# daemon's memfd) never held the guest's value.
while read -r id _ other _; do
	for off in 12 256; do
		v=$(od -An -tx4 -j "$off" -N4 "$other" | tr -d ' ')
		[ "$v" != deadbeef ] || fail "guest $id's write reached the other's section at $off"
		echo "  host: the section guest $id wrote to at $off holds 0x$v (it wrote 0xdeadbeef)"
	done
done <"$work/qemus.txt"
echo "$vp_prog: PASS: $count frames each way between two guests verified; each guest's writes into the other's section were ignored by QEMU (no fault, read back unchanged)"
