# Guest test: this guest boots WITHOUT its 2.1 slot; vhost-pcid hot-plugs it over QMP
# (design=2.1,qemu=SOCK,qmp=QMP: tests/peers/qemu-pair21-hotplug.sh) while the other peer, a
# host vp-vm, is there, and unplugs it when that peer leaves. Two rounds:
#  1. no slot at boot ("pair21hp: no slot at boot");
#  2. per round: wait for the slot (.0 doorbell, .1 header, .2 the other's section), list
#     the guest's ivshmem functions (lspci -n's fields from sysfs: busybox has no lspci),
#     vp-vm --pair21-guest --app sink: VP_P21_COUNT frames verified; then wait for the slot
#     to go (the host's generator left) and list again.
#   VP_P21_COUNT=N   frames per round
# Markers: "pair21hp: round R: plugged: ...", "pair21hp: round R: received N lost 0 corrupt 0",
# "pair21hp: round R: slot gone: ...".
. /lib/vp.sh

[ -n "$VP_P21_COUNT" ] || vp_fail "VP_P21_COUNT must be set"
[ -x /bin/vp-vm ] || vp_fail "no /bin/vp-vm in the image"
# The ivshmem functions (1af4:1110) as lspci -n shows them: "00:SS.F 1af4:1110".
ivshmem_fns() {
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d/vendor" ] || continue
        [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] &&
            printf '%s 1af4:1110; ' "${d##*/0000:}"
    done
}
# A 2.1 slot: functions .0 and .1 and .2, all ivshmem.
slot=''
find_slot() {
    slot=''
    for d in /sys/bus/pci/devices/*.1; do
        [ -e "$d/vendor" ] || continue
        [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] &&
            [ -e "${d%.1}.0" ] && [ -e "${d%.1}.2" ] && slot=${d%.1}
    done
    [ -n "$slot" ]
}
no_slot() { ! find_slot; }
num() { grep -o "\"$1\":[a-z0-9]*" "$2" | head -1 | cut -d: -f2; }

find_slot && vp_fail "a 2.1 slot at boot ($slot): the test needs a guest without one"
vp_info "no slot at boot: ivshmem functions: $(ivshmem_fns)"
for round in 1 2; do
    vp_wait_for 300 find_slot || vp_fail "round $round: no 2.1 slot was plugged"
    vp_info "round $round: plugged: $(ivshmem_fns)"
    LD_LIBRARY_PATH=/lib/vp /bin/vp-vm --pair21-guest --mode poll --ram 4M --name guest \
        --quiet --json --log-level info --app sink --ends 1 --seconds 200 --connect-timeout 200 \
        >/tmp/sink.json 2>/tmp/sink.log || { tail -5 /tmp/sink.log; vp_fail "round $round: vp-vm sink failed"; }
    rx=$(num received /tmp/sink.json)
    vp_info "round $round: received ${rx:-0} lost $(num lost /tmp/sink.json) corrupt $(num corrupt /tmp/sink.json)"
    [ "${rx:-0}" = "$VP_P21_COUNT" ] || vp_fail "round $round: received ${rx:-0} frames, want $VP_P21_COUNT"
    [ "$(num lost /tmp/sink.json)" = 0 ] && [ "$(num corrupt /tmp/sink.json)" = 0 ] &&
        [ "$(num ok /tmp/sink.json)" = true ] || vp_fail "round $round: lost or corrupt frames"
    vp_wait_for 120 no_slot || vp_fail "round $round: the slot stayed after the other peer left"
    vp_info "round $round: slot gone: ivshmem functions: $(ivshmem_fns)"
done
