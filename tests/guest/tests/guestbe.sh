# Guest test: this guest is a backend VM. A vhost-pci device (docs/device.md) was
# cold-plugged by the host (tests/peers/qemu-guestbe.sh): an ivshmem-plain info function
# and an ivshmem-doorbell memory function whose BAR2 is the RAM of a frontend on the host.
# vp-vm (packed into the image with its libraries) runs --backend --guest-pci --app echo
# in poll mode; the host sends frames and checks that each comes back. When the host is
# done it publishes GONE: vp-vm lets the device go, is stopped, and its report must show
# VP_GB_COUNT frames echoed on one link.
#   VP_GB_COUNT=N   frames the host sends
# Markers: "guestbe: functions ...", "guestbe: vp-vm running", "guestbe: device gone",
# "guestbe: echoed N".
. /lib/vp.sh

[ -n "$VP_GB_COUNT" ] || vp_fail "VP_GB_COUNT must be set"
[ -x /bin/vp-vm ] || vp_fail "no /bin/vp-vm in the image"
n=0
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && n=$((n + 1))
done
vp_info "functions: $n ivshmem"
[ $n = 2 ] || vp_fail "want 2 ivshmem functions (info + memory), found $n"

LD_LIBRARY_PATH=/lib/vp /bin/vp-vm --backend --guest-pci --app echo --mode poll --ram 4M \
    --name guest --quiet --json --log-level info >/tmp/vm.json 2>/tmp/vm.log &
vm=$!
vp_info "vp-vm running (pid $vm)"
gone() { grep -q "removed: frontend gone" /tmp/vm.log; }
alive() { kill -0 $vm 2>/dev/null; }
vp_wait_for 200 sh -c "grep -q 'removed: frontend gone' /tmp/vm.log || ! kill -0 $vm" ||
    { tail -5 /tmp/vm.log; vp_fail "the host never said GONE"; }
alive || { tail -5 /tmp/vm.log; vp_fail "vp-vm ended early"; }
gone && vp_info "device gone"
kill -TERM $vm
wait $vm
grep -E "link|guest-pci" /tmp/vm.log | head -8 | while read -r l; do vp_info "$l"; done
rx=$(grep -o '"rx_packets":[0-9]*' /tmp/vm.json | cut -d: -f2)
ups=$(grep -o '"link_ups":[0-9]*' /tmp/vm.json | cut -d: -f2)
vp_info "echoed ${rx:-0} frames, link ups ${ups:-0}"
[ "${rx:-0}" = "$VP_GB_COUNT" ] || vp_fail "echoed ${rx:-0} frames, want $VP_GB_COUNT"
[ "${ups:-0}" = 1 ] || vp_fail "link ups ${ups:-0}, want 1"
