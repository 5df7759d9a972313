# Guest test: configure an IP address and ping a peer (or answer a peer's pings).
#   VP_IP=10.0.0.1/24   address for the virtio-net interface (required)
#   VP_PEER=10.0.0.2    ping this address; without it, answer pings instead (responder)
#   VP_COUNT=5          echo requests to send (or, as responder, to receive)
#   VP_MIN=$VP_COUNT    replies needed to pass (pinger)
#   VP_WAIT=30          seconds to wait for link and for the peer's first answer
#   VP_MAC              select the interface by MAC
. /lib/vp.sh

[ -n "$VP_IP" ] || vp_fail "VP_IP not set (kernel command line VP_IP=a.b.c.d/nn)"
count=${VP_COUNT:-5}
ifc=$(vp_up "$VP_MAC") || exit 1
ip addr add "$VP_IP" dev "$ifc" || vp_fail "ip addr add $VP_IP dev $ifc failed"
vp_info "iface=$ifc mac=$(cat "/sys/class/net/$ifc/address") ip=$VP_IP"

if [ -z "$VP_PEER" ]; then
    # Responder: pass once COUNT echo requests were answered and the pinger went quiet
    # for 3 s (it may still be sending its last ones).
    wait=${VP_WAIT:-30}
    deadline=$(($(cut -d. -f1 /proc/uptime) + wait + 3 * count))
    last=-1 quiet=0
    while :; do
        n=$(vp_icmp OutEchoReps)
        if [ "$n" != "$last" ]; then last=$n quiet=0; else quiet=$((quiet + 1)); fi
        [ "$n" -ge "$count" ] && [ $quiet -ge 30 ] && break
        [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ] ||
            vp_fail "answered $n of $count echo requests before the deadline"
        sleep 0.1
    done
    vp_info "answered $n echo requests"
    exit 0
fi

# Pinger: wait until the peer answers once (it may still be booting), then count.
t=0
until ping -c 1 -W 1 "$VP_PEER" >/dev/null 2>&1; do
    t=$((t + 1))
    [ $t -lt "${VP_WAIT:-30}" ] || vp_fail "no answer from $VP_PEER in ${VP_WAIT:-30}s ($(ip neigh show dev "$ifc" | head -1))"
done
vp_info "peer $VP_PEER answers after ${t} retries"
out=$(ping -c "$count" -W 5 "$VP_PEER" 2>&1)
echo "$out" | tail -3
got=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
vp_info "ping $VP_PEER: ${got:-0}/$count replies"
[ "${got:-0}" -ge "${VP_MIN:-$count}" ] || vp_fail "ping $VP_PEER: ${got:-0}/$count replies (need ${VP_MIN:-$count})"
exit 0
