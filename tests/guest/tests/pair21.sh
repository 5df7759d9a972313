# Guest test: this guest is one peer of a 2.1 pair (docs/window21.md 9). vhost-pcid gave it
# its half as one PCI slot (tests/peers/qemu-pair21.sh): .0 ivshmem-doorbell (our section,
# read-write), .1 ivshmem-plain (the header) and .2 ivshmem-plain (the other peer's section),
# both readonly=on. The other peer is a vp-vm on the host (qemu-pair21.sh) or another guest
# running this script with VP_P21_FIRST=gen (qemu-pair21-twoguest.sh).
#  1. vp-vm --pair21-guest --app sink: the other's generator's VP_P21_COUNT frames, verified;
#  2. a write into the other's section (its control block and its ring) through /dev/mem
#     (busybox devmem), while the other peer is attached: each word read back must be what
#     it was (the write has no effect), and we must survive it (no fault);
#  3. vp-vm --pair21-guest --app gen: VP_P21_COUNT frames to the other's sink (it verifies).
# With VP_P21_FIRST=gen the order is 2, 3, 1, so that two guests running this script meet:
# its write waits for the other's sink (1), the other's write for its sink.
#   VP_P21_COUNT=N   frames each way
#   VP_P21_FIRST=sink|gen  (default sink)
#   VP_P21_MODE=poll|irq|adaptive  vp-vm's --mode (default poll)
#   VP_P21_VFIO=1    bind .0 to vfio-pci first (its MSI-X as vp-vm's wake-ups: needs an
#                    IOMMU in the guest and the vfio-pci module); the sink must then have
#                    slept and been woken by the other's doorbells
# Markers: "pair21: slot ...", "pair21: received N", "pair21: write to the other's section
# at OFF: was V, wrote W, reads R", "pair21: sent N".
. /lib/vp.sh

[ -n "$VP_P21_COUNT" ] || vp_fail "VP_P21_COUNT must be set"
[ -x /bin/vp-vm ] || vp_fail "no /bin/vp-vm in the image"
slot=''
for d in /sys/bus/pci/devices/*.1; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && slot=${d%.1}
done
[ -n "$slot" ] || vp_fail "no ivshmem function .1 (the 2.1 header)"
vp_info "slot $(basename "$slot"): .0 $(cat "$slot.0/device") .1 .2 $(cat "$slot.2/device")"
if [ "${VP_P21_VFIO:-0}" = 1 ]; then
    echo vfio-pci >"$slot.0/driver_override"
    echo "${slot##*/}.0" >/sys/bus/pci/drivers_probe
    drv=$(readlink "$slot.0/driver")
    [ "${drv##*/}" = vfio-pci ] || vp_fail "cannot bind .0 to vfio-pci (driver: ${drv:-none})"
    grp=$(readlink "$slot.0/iommu_group")
    vp_info "bound .0 to vfio-pci, IOMMU group ${grp##*/}: $(ls "$slot.0/iommu_group/devices" | tr '\n' ' ')"
fi
vm() {
    LD_LIBRARY_PATH=/lib/vp /bin/vp-vm --pair21-guest --mode "${VP_P21_MODE:-poll}" --ram 4M --name guest \
        --quiet --json --log-level info "$@"
}
num() { grep -o "\"$1\":[a-z0-9]*" "$2" | head -1 | cut -d: -f2; }

step_sink() {
    # With VFIO: what the kernel counts on .0's MSI-X while the sink runs (diagnostics).
    [ "${VP_P21_VFIO:-0}" = 1 ] &&
        (sleep 2; grep -i "vfio\|msi" /proc/interrupts | tr -s ' ' >/tmp/irqs) &
    vm --app sink --ends 1 --seconds 200 --connect-timeout 200 >/tmp/sink.json 2>/tmp/sink.log ||
        { tail -5 /tmp/sink.log; vp_fail "vp-vm sink failed"; }
    grep -m1 "2.1 peer on PCI slot" /tmp/sink.log | while read -r l; do vp_info "$l"; done
    grep -m1 "interrupts:" /tmp/sink.log | while read -r l; do vp_info "$l"; done
    rx=$(num received /tmp/sink.json)
    vp_info "received ${rx:-0} lost $(num lost /tmp/sink.json) corrupt $(num corrupt /tmp/sink.json)"
    vp_info "sink woken $(num wakeups /tmp/sink.json) times (mode ${VP_P21_MODE:-poll})"
    if [ "${VP_P21_VFIO:-0}" = 1 ]; then
        vp_info "MSI-X in /proc/interrupts during the sink: $(tr '\n' ';' </tmp/irqs 2>/dev/null)"
        vp_info "kernel: $(dmesg | grep -i "dmar\|vfio\|remapp" | tail -6 | tr '\n' ';')"
        [ "$(num wakeups /tmp/sink.json)" -gt 2 ] 2>/dev/null ||
            vp_fail "the sink was woken $(num wakeups /tmp/sink.json) times: no interrupts"
    fi
    [ "${rx:-0}" = "$VP_P21_COUNT" ] || vp_fail "received ${rx:-0} frames, want $VP_P21_COUNT"
    [ "$(num lost /tmp/sink.json)" = 0 ] && [ "$(num corrupt /tmp/sink.json)" = 0 ] &&
        [ "$(num ok /tmp/sink.json)" = true ] || vp_fail "the sink saw lost or corrupt frames"
}

# The other's section, function .2's BAR2: wait for the other's sink (its state word, offset
# 8, is 1 once attached), then try to overwrite a word of its control block that nobody
# writes (0x0c, padding: always 0) and its first descriptor (the ring at 0x100, last written
# by the other's generator, if it ran yet; a sink posts nothing): words that cannot change
# under us, so any change is ours.
step_proof() {
    bar=$(sed -n 3p "$slot.2/resource" | cut -d' ' -f1)
    vp_wait_for 200 sh -c "[ \$(busybox devmem $((bar + 8)) 32) = 0x00000001 ]" ||
        vp_fail "the other's sink never attached (state $(busybox devmem $((bar + 8)) 32))"
    for off in 12 256; do
        a=$((bar + off))
        was=$(busybox devmem $a 32)
        busybox devmem $a 32 0xDEADBEEF || vp_fail "devmem write at $off failed"
        now=$(busybox devmem $a 32)
        vp_info "write to the other's section at $off: was $was, wrote 0xDEADBEEF, reads $now"
        [ "$now" = "$was" ] || vp_fail "the write at $off took effect ($was -> $now)"
    done
}

step_gen() {
    vm --app gen --count "$VP_P21_COUNT" --size 64-1518 --connect-timeout 200 \
        >/tmp/gen.json 2>/tmp/gen.log || { tail -5 /tmp/gen.log; vp_fail "vp-vm gen failed"; }
    tx=$(num tx_packets /tmp/gen.json)
    vp_info "sent ${tx:-0}, doorbells rung $(num signals /tmp/gen.json), woken $(num wakeups /tmp/gen.json) times"
    [ "${tx:-0}" = "$VP_P21_COUNT" ] || vp_fail "sent ${tx:-0} frames, want $VP_P21_COUNT"
}

case ${VP_P21_FIRST:-sink} in
sink) step_sink; step_proof; step_gen ;;
gen) step_proof; step_gen; step_sink ;;
*) vp_fail "VP_P21_FIRST=$VP_P21_FIRST is not sink or gen" ;;
esac
