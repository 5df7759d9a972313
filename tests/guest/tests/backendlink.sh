# Guest test: the link follows whether a backend drives the NIC. The host
# starts with no backend, then starts, kills and restarts one; this script
# reports each carrier change and each time frames come back (the backend
# echoes what we send: ARP requests for a peer that does not exist), as
#   VPGUEST: INFO backendlink: carrier 0|1 (rx N)
#   VPGUEST: INFO backendlink: traffic rx N
# It passes once it has seen the link go down and come back with traffic
# VP_ROUNDS times (default 2), and fails after VP_HOLD seconds (default 150).
#   VP_MAC=..   select the NIC
. /lib/vp.sh

ifc=$(vp_wait_for "${VP_WAIT:-20}" vp_netif "$VP_MAC" >/dev/null && vp_netif "$VP_MAC") ||
    vp_fail "no virtio-net interface"
ip link set "$ifc" up || vp_fail "ip link set $ifc up failed"
ip addr add 169.254.77.1/16 dev "$ifc" || vp_fail "ip addr add failed"
st=/sys/class/net/$ifc
deadline=$(($(cut -d. -f1 /proc/uptime) + ${VP_HOLD:-150}))
rounds=0 downs=0 last_c=x seen_traffic=0 base_rx=0
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ]; do
    c=$(cat "$st/carrier" 2>/dev/null || echo 0)
    rx=$(cat "$st/statistics/rx_packets")
    if [ "$c" != "$last_c" ]; then
        vp_info "carrier $c (rx $rx)"
        [ "$c" = 0 ] && [ "$last_c" != x ] && downs=$((downs + 1))
        last_c=$c seen_traffic=0 base_rx=$rx
    fi
    if [ "$c" = 1 ]; then
        # Something to echo: an ARP request for an address nobody has.
        arping -c 1 -w 1 -I "$ifc" 169.254.77.2 >/dev/null 2>&1 &
        if [ $seen_traffic = 0 ] && [ "$rx" -gt "$base_rx" ]; then
            vp_info "traffic rx $rx"
            seen_traffic=1
            [ $downs -gt 0 ] && rounds=$((rounds + 1))
            if [ $rounds -ge "${VP_ROUNDS:-2}" ]; then
                vp_info "link went down $downs times and came back with traffic $rounds times"
                exit 0
            fi
        fi
    fi
    sleep 0.2
done
vp_fail "saw $downs link downs and $rounds returns with traffic in ${VP_HOLD:-150} s"
