# Guest test: a NIC on packed rings (QEMU virtio-net-pci,packed=on). On each
# boot: checks that virtio_net negotiated VIRTIO_F_RING_PACKED (bit 34 of the
# device's sysfs features), pings the host's peer through the backend (every
# request answered), then holds until the link goes down (the host stops the
# backend: PASS) or the host reboots the guest (and the same runs again).
# Markers:
#   VPGUEST: INFO packed: features bit 34 = 1
#   VPGUEST: INFO packed: ping PEER: GOT/COUNT replies
#   VPGUEST: INFO packed: carrier 0
#   VP_IP, VP_PEER   our address (a.b.c.d/nn) and the peer to ping (required)
#   VP_COUNT=20      echo requests (all must be answered)
#   VP_HOLD=90       seconds to wait for the peer, then for the link to go down
#   VP_MAC           select the NIC
. /lib/vp.sh

[ -n "$VP_IP" ] && [ -n "$VP_PEER" ] || vp_fail "VP_IP and VP_PEER must be set"
count=${VP_COUNT:-20}
hold=${VP_HOLD:-90}
ifc=$(vp_up "$VP_MAC") || exit 1
feat=$(cat "/sys/class/net/$ifc/device/features") || vp_fail "no sysfs features for $ifc"
vp_info "features bit 34 = ${feat:34:1} ($feat)"
[ "${feat:34:1}" = 1 ] || vp_fail "virtio_net did not negotiate RING_PACKED (bit 34)"
ip addr add "$VP_IP" dev "$ifc" || vp_fail "ip addr add $VP_IP dev $ifc failed"

t=0
until ping -c 1 -W 1 "$VP_PEER" >/dev/null 2>&1; do
    t=$((t + 1))
    [ $t -lt "$hold" ] || vp_fail "no answer from $VP_PEER in ${hold}s"
done
out=$(ping -c "$count" -i 0.2 -W 5 "$VP_PEER" 2>&1)
got=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
vp_info "ping $VP_PEER: ${got:-0}/$count replies"
[ "${got:-0}" -ge "$count" ] || vp_fail "${got:-0}/$count replies"

carrier_is() { [ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null || echo 0)" = "$1" ]; }
vp_wait_for "$hold" carrier_is 0 || vp_fail "the link never went down"
vp_info "carrier 0"
exit 0
