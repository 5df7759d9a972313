# Guest test: the virtio-net interface exists, comes up and has carrier (no ethtool:
# /sys/class/net/IFACE/{operstate,carrier,address} and the virtio device's features).
#   VP_MAC=52:54:00:..  expect (and select) this MAC
#   VP_WAIT=20          seconds to wait for the interface and its carrier
#   VP_EXPECT_RX=1      also send an ARP request and require received packets: for a
#                       backend that reflects frames (e.g. testpmd io forwarding, one port)
. /lib/vp.sh

ifc=$(vp_up "$VP_MAC") || exit 1
d=/sys/class/net/$ifc
mac=$(cat "$d/address")
vp_info "iface=$ifc mac=$mac operstate=$(cat "$d/operstate") carrier=$(cat "$d/carrier") mtu=$(cat "$d/mtu")"
vp_info "virtio device=$(basename "$(readlink "$d/device")") features=$(cat "$d/device/features" 2>/dev/null)"
[ -z "$VP_MAC" ] || [ "$mac" = "$VP_MAC" ] || vp_fail "MAC $mac, expected $VP_MAC"

if [ "$VP_EXPECT_RX" = 1 ]; then
    ip addr add 169.254.200.1/24 dev "$ifc" || vp_fail "ip addr add failed"
    arping -c 1 -w 1 -I "$ifc" 169.254.200.2 >/dev/null 2>&1
    vp_wait_for 5 sh -c "[ \$(cat $d/statistics/rx_packets) -gt 0 ]"
    rx=$(cat "$d/statistics/rx_packets")
    tx=$(cat "$d/statistics/tx_packets")
    vp_info "tx_packets=$tx rx_packets=$rx"
    [ "$tx" -gt 0 ] || vp_fail "nothing sent (tx_packets=0)"
    [ "$rx" -gt 0 ] || vp_fail "nothing came back (tx_packets=$tx rx_packets=0)"
fi
exit 0
