# Guest test: the NIC comes up (its driver posts RX buffers), the host inspects
# the backend, then drops the connection: QEMU takes the link down; QEMU
# reconnects (reconnect=1): the link comes back. Then it holds a few seconds
# so the host can see the new device.
#   VP_MAC=..      select the NIC
#   VP_HOLD=90     seconds to wait for each link change
#   VP_HOLD2=4     seconds to stay up at the end
. /lib/vp.sh

ifc=$(vp_up "$VP_MAC") || exit 1
c=/sys/class/net/$ifc/carrier
vp_info "up: $ifc, waiting for the host to drop the link"
vp_wait_for "${VP_HOLD:-90}" sh -c "[ \"\$(cat $c)\" = 0 ]" || vp_fail "link never went down"
vp_info "link down"
vp_wait_for "${VP_HOLD:-90}" vp_netif_ready "$ifc" || vp_fail "link did not come back"
vp_info "link up again"
sleep "${VP_HOLD2:-4}"
exit 0
