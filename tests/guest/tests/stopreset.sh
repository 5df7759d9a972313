# Guest test: the NIC is reset while a backend drives it (its driver unbound
# and bound again: QEMU stops the vhost-user rings with GET_VRING_BASE, then
# starts them again from the bases it got), and frames come back after each
# reset. The backend echoes what we send (ARP requests for a peer that does
# not exist). Reports
#   VPGUEST: INFO stopreset: traffic rx N          (before the first reset)
#   VPGUEST: INFO stopreset: reset K: traffic rx N (after reset K)
# and passes after VP_ROUNDS resets (default 2).
#   VP_MAC=..   select the NIC
. /lib/vp.sh

drv=/sys/bus/virtio/drivers/virtio_net

# up_with_traffic: bring the NIC up and wait until the backend echoes a frame.
up_with_traffic() {
    ifc=$(vp_wait_for "${VP_WAIT:-20}" vp_netif "$VP_MAC" >/dev/null && vp_netif "$VP_MAC") ||
        vp_fail "no virtio-net interface"
    ip link set "$ifc" up || vp_fail "ip link set $ifc up failed"
    ip addr add 169.254.77.1/16 dev "$ifc" 2>/dev/null
    rx0=$(cat "/sys/class/net/$ifc/statistics/rx_packets")
    for _ in $(seq 100); do
        arping -c 1 -w 1 -I "$ifc" 169.254.77.2 >/dev/null 2>&1 &
        sleep 0.2
        rx=$(cat "/sys/class/net/$ifc/statistics/rx_packets")
        [ "$rx" -gt "$rx0" ] && return 0
    done
    vp_fail "no frame came back on $ifc (rx $rx0)"
}

up_with_traffic
vp_info "traffic rx $rx"
for k in $(seq "${VP_ROUNDS:-2}"); do
    dev=$(basename "$(readlink "/sys/class/net/$ifc/device")")
    echo "$dev" >"$drv/unbind" || vp_fail "unbinding $dev failed"
    sleep 0.5
    echo "$dev" >"$drv/bind" || vp_fail "binding $dev again failed"
    up_with_traffic
    vp_info "reset $k: traffic rx $rx"
done
exit 0
