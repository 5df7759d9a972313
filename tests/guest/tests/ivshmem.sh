# Guest test: an ivshmem-doorbell device hot-plugged by the host (tests/peers/qemu-ivshmem.sh)
# appears, its BAR2 holds the host's marker, its doorbell reaches the host, and it goes
# away again when the host unplugs it.
#   VP_IVS_MARKER=0x...  64-bit value the host wrote at offset 0 of the shared memory (its
#                        complement is at the last 8 bytes)
#   VP_IVS_ID=N          the peer id the host gave the device (its IVPosition)
#   VP_IVS_PEER=N        the host's virtual peer: ring its vector 2 once the marker is read
# Markers: "ivshmem: waiting", "ivshmem: found ...", "ivshmem: marker ok ...",
# "ivshmem: rang ...", "ivshmem: gone", "ivshmem: ejected".
. /lib/vp.sh

find_ivshmem() {
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] &&
            [ "$(cat "$d/device" 2>/dev/null)" = 0x1110 ] && { echo "$d"; return 0; }
    done
    return 1
}
[ -n "$VP_IVS_MARKER" ] && [ -n "$VP_IVS_ID" ] && [ -n "$VP_IVS_PEER" ] ||
    vp_fail "VP_IVS_MARKER, VP_IVS_ID and VP_IVS_PEER must be set"
find_ivshmem >/dev/null && vp_fail "an ivshmem device is there before the host plugged one"
vp_info "waiting"
vp_wait_for 60 find_ivshmem >/dev/null || vp_fail "no 1af4:1110 device appeared in 60 s"
d=$(find_ivshmem)
vp_info "found $(basename "$d") class $(cat "$d/class")"
echo 1 >"$d/enable" || vp_fail "cannot enable $d"
# resource: one "start end flags" line per BAR; BAR0 registers, BAR2 shared memory.
bar0=$(awk 'NR == 1 { print $1 }' "$d/resource")
bar2=$(awk 'NR == 3 { print $1 }' "$d/resource")
end2=$(awk 'NR == 3 { print $2 }' "$d/resource")
size2=$((end2 - bar2 + 1))
[ "$size2" = 1048576 ] || vp_fail "BAR2 is $size2 bytes, not 1 MiB"
pos=$(devmem $((bar0 + 8)) 32)
[ $((pos)) = "$VP_IVS_ID" ] || vp_fail "IVPosition $pos, expected $VP_IVS_ID"
first=$(devmem "$bar2" 64)
last=$(devmem $((bar2 + size2 - 8)) 64)
[ $((first)) = $((VP_IVS_MARKER)) ] || vp_fail "BAR2[0] is $first, expected $VP_IVS_MARKER"
[ $((last)) = $((~VP_IVS_MARKER)) ] || vp_fail "BAR2[end-8] is $last, expected ~$VP_IVS_MARKER"
vp_info "marker ok $first at $(printf 0x%x "$bar2"), IVPosition $((pos))"
devmem $((bar0 + 12)) 32 $(((VP_IVS_PEER << 16) | 2)) || vp_fail "doorbell write failed"
vp_info "rang peer $VP_IVS_PEER vector 2"
vp_wait_for 60 test ! -e "$d" || vp_fail "$(basename "$d") still there 60 s after the doorbell"
vp_info "gone"
# The sysfs entry goes before acpiphp evaluates _EJ0 (which asks QEMU to release the
# device), in the same work item and under the PCI rescan lock. A rescan waits for that
# lock, so once it returns the eject was asked for and we may power off. QEMU finishes the
# unplug in its main loop and may send DEVICE_DELETED after our SHUTDOWN: the host runs it
# with -no-shutdown and waits for the event.
echo 1 >/sys/bus/pci/rescan || vp_fail "cannot rescan the PCI bus"
vp_info "ejected"
exit 0
