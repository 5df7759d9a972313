# Guest test: the NIC comes up (its driver posts RX buffers) and stays up while the
# host inspects the backend, drops the connection, and QEMU reconnects
# (reconnect=1). The link may flap; a slow guest can miss the flap when the
# reconnect comes first, so seeing it is reported, not required: the host checks
# the drop and the reconnect itself. At the end the link must be up.
#   VP_MAC=..      select the NIC
#   VP_HOLD=30     seconds to wait for a link flap
#   VP_HOLD2=4     seconds to stay up at the end
. /lib/vp.sh

ifc=$(vp_up "$VP_MAC") || exit 1
cc=/sys/class/net/$ifc/carrier_changes
c0=$(cat "$cc")
vp_info "up: $ifc (carrier_changes $c0), waiting for the host to drop the link"
if vp_wait_for "${VP_HOLD:-30}" sh -c "[ \"\$(cat $cc)\" != $c0 ]"; then
    vp_info "link flap seen (carrier_changes $(cat "$cc"))"
else
    vp_info "no link flap seen in ${VP_HOLD:-30} s"
fi
vp_wait_for 60 vp_netif_ready "$ifc" || vp_fail "link not up at the end"
vp_info "link up"
sleep "${VP_HOLD2:-4}"
exit 0
