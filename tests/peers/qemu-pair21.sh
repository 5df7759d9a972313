#!/bin/bash
# A stock QEMU 7.2 guest (TCG, -M pc) as one peer of a 2.1 pair (docs/window21.md 9), a
# userspace vp-vm on the host as the other:
#   - vhost-pcid serves the pair (design=2.1,qemu=SOCK): it keeps peer 0's half for the
#     guest and serves it on an ivshmem server; vhost-pci-ctl pairs names the /proc paths of
#     the header and of the other's section for the guest's read-only functions;
#   - the guest gets one PCI slot (docs/device.md 8): .0 ivshmem-doorbell on that server (our
#     section, IVPosition 0, doorbells both ways), .1 and .2 ivshmem-plain over
#     memory-backend-file readonly=on (the header, the other's section);
#   - the guest (tests/guest/tests/pair21.sh) runs this build's vp-vm --pair21-guest: a sink
#     for the host's generator, then a write into the other's section, then a generator for
#     the host's sink; the host's vp-vm joins the pair at the daemon's socket each time;
#   - checked: COUNT frames each way, verified byte by byte (size 64-1518); the guest's write
#     read back unchanged in the guest and absent from the section on the host.
#
# With VP_P21_IRQ=1 (test qemu-pair21-irq) the guest is -M q35 with an intel-iommu: it binds
# .0 to vfio-pci and its vp-vm runs --mode irq, woken by .0's MSI-X through VFIO; checked too:
# the guest's sink slept and was woken by the host's doorbells.
#
#   tests/peers/qemu-pair21.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# Exits 77 with "SKIP: reason" where the other guest tests skip, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-pair21
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
count=${VP_P21_COUNT:-20000}

fail() { tg_fail_logs "$*" daemon.log gen.log sink.log; }

tg_require  # exits 77 (SKIP) where the other guest tests skip

work=$(mktemp -d /tmp/vp-qemu-pair21.XXXXXX)
gpid='' dpid='' hpid=''
cleanup() {
	for p in $hpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ "${VP_KEEP_LOGS:-0}" = 1 ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

irq=() rate=0
if [ "${VP_P21_IRQ:-0}" = 1 ]; then
	# A generator faster than a TCG guest keeps its ring full, and a sink with work never
	# sleeps: paced, the guest's sink must sleep and be woken by our doorbells.
	rate=5000
	vp_prog=qemu-pair21-irq
	tg_modules=vfio-pci,vfio_iommu_type1
	irq=(-e VP_P21_VFIO=1 -e VP_P21_MODE=irq --append intel_iommu=on
	     -q -machine -q q35 -q -device -q intel-iommu)
fi
tg_lock  # one test boots guests at a time, machine-wide
tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

tg_pair21 "$pcid" "$ctl"  # sets dpid, other, tg_p21_slot

timeout 400 "$here/../guest/run-guest.sh" -t pair21 --name qemu-pair21 \
	--initrd "$work/initrd.cpio" -e VP_P21_COUNT="$count" -T 360 -l "$work/serial.log" "${irq[@]}" \
	"${tg_p21_slot[@]}" \
	>"$work/guest.out" 2>&1 &
gpid=$!

# Host -> guest: our generator joins as peer 1 and waits for the guest's sink.
timeout 300 "$vpvm" --pair21 "$work/p21.sock" --app gen --count "$count" --size 64-1518 --rate "$rate" \
	--mode irq --connect-timeout 240 --quiet --json >"$work/gen.json" 2>"$work/gen.log" &
hpid=$!
wait "$hpid" || fail "host generator failed (rc $?)"
hpid=''
grep -q '"ok":true' "$work/gen.json" || fail "host generator: $(cat "$work/gen.json")"
# Guest -> host: our sink, verifying every byte of the guest generator's frames.
timeout 300 "$vpvm" --pair21 "$work/p21.sock" --app sink --ends 1 --seconds 240 \
	--mode irq --quiet --json >"$work/sink.json" 2>"$work/sink.log" &
hpid=$!
wait "$hpid" || fail "host sink failed (rc $?)"
hpid=''
wait "$gpid"
grc=$?
gpid=''
grep -ah "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }

j() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
[ "$(j "$work/gen.json" tx_packets)" = "$count" ] || fail "host generator sent $(j "$work/gen.json" tx_packets)"
for k in received:$count lost:0 corrupt:0 reordered:0 ok:True; do
	v=$(j "$work/sink.json" "${k%%:*}")
	[ "$v" = "${k#*:}" ] || fail "host sink: ${k%%:*} $v, want ${k#*:}"
done
# The host slept on its eventfds (irq): what woke it were the guest's doorbells, which QEMU
# turns into writes of the eventfds the daemon announced for peer 1 (Fig. 4).
w=$(j "$work/sink.json" wakeups)
echo "  host: sink woken $w times, generator $(j "$work/gen.json" wakeups) times (irq mode)"
[ "$w" -gt 2 ] || fail "the host sink was woken $w times: the guest's doorbells did not reach it"
# The words the guest tried to overwrite, seen from the host: the section the host's peer
# owns (the daemon's memfd) never held the guest's value.
for off in 12 256; do
	v=$(od -An -tx4 -j "$off" -N4 "$other" | tr -d ' ')
	[ "$v" != deadbeef ] || fail "the guest's write reached the other's section at $off"
	echo "  host: the other's section at $off holds 0x$v (the guest wrote 0xdeadbeef)"
done
grep -q "write to the other's section at 256: was" "$work/serial.log" ||
	fail "the guest did not report its write attempt"
echo "$vp_prog: PASS: $count frames each way verified; the guest's writes into the other's section were ignored by QEMU (no fault, read back unchanged)"
