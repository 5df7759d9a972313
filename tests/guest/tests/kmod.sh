# Guest test: the vhost-pci-net kernel driver (guest/linux/) binds a cold-plugged vhost-pci
# device served by tests/peers/kmod_host.c (run by tests/peers/qemu-kmod.sh).
#   VP_KMOD_MAC=..   the frontend's MAC (vpnet0 must carry it)
#   VP_KMOD_UUID=..  the frontend's UUID (sysfs vhost_pci_uuid)
#   VP_KMOD_ID=N     the device id (sysfs vhost_pci_device_id)
# The host answers DRIVER_OK with a STOP (generation 4) and then READY (generation 6);
# after that the module is unloaded and loaded three times. Markers: "kmod: up ...",
# "kmod: restarted", "kmod: reload N", "kmod: clean".
. /lib/vp.sh

ko=/lib/modules/extra/vhost_pci_net.ko
[ -f $ko ] || vp_fail "no $ko in the image"
carrier() { [ "$(cat /sys/class/net/vpnet0/carrier 2>/dev/null)" = 1 ]; }
load() {
    insmod $ko || vp_fail "insmod $ko failed"
    vp_wait_for 30 test -e /sys/class/net/vpnet0 ||
        vp_fail "no vpnet0 ($(ls /sys/class/net | tr '\n' ' ')); $(dmesg | grep vhost_pci | tail -3)"
    ip link set vpnet0 up || vp_fail "ip link set vpnet0 up"
    vp_wait_for 30 carrier || vp_fail "vpnet0 has no carrier: $(dmesg | grep -E 'vpnet|vhost_pci' | tail -3)"
}
load
mac=$(cat /sys/class/net/vpnet0/address)
uuid=$(cat /sys/class/net/vpnet0/vhost_pci_uuid)
id=$(cat /sys/class/net/vpnet0/vhost_pci_device_id)
[ "$mac" = "$VP_KMOD_MAC" ] || vp_fail "vpnet0 MAC $mac, the frontend's is $VP_KMOD_MAC"
[ "$uuid" = "$VP_KMOD_UUID" ] || vp_fail "vhost_pci_uuid $uuid, expected $VP_KMOD_UUID"
[ "$id" = "$VP_KMOD_ID" ] || vp_fail "vhost_pci_device_id $id, expected $VP_KMOD_ID"
vp_info "up mac $mac uuid $uuid device $id"
# The host's STOP then READY: the driver logs each generation it accepts as ready.
vp_wait_for 30 sh -c 'dmesg | grep -q "ready, generation 6"' ||
    vp_fail "no READY at generation 6 after the STOP: $(dmesg | grep -E 'vpnet|vhost_pci' | tail -3)"
vp_wait_for 30 carrier || vp_fail "no carrier after the STOP/READY cycle"
vp_info "restarted"
for n in 1 2 3; do
    rmmod vhost_pci_net || vp_fail "rmmod failed (round $n)"
    [ ! -e /sys/class/net/vpnet0 ] || vp_fail "vpnet0 still there after rmmod"
    load
    vp_info "reload $n"
done
rmmod vhost_pci_net || vp_fail "final rmmod failed"
if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace|general protection'; then
    vp_fail "the kernel log has a warning or oops"
fi
vp_info "clean"
exit 0
