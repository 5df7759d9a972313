# Guest test: a multiqueue NIC (QEMU virtio-net-pci,mq=on on a vhost-user netdev with
# queues=N). Needs /bin/ethtool (the host's, its libraries in /lib/vp: qemu-mq.sh builds
# the image). Checks, in order:
#   1. virtio_net negotiated VIRTIO_NET_F_MQ (bit 22 of the sysfs features), ethtool -l
#      shows N combined channels at most;
#   2. ethtool -L combined N (the driver starts with one pair per online CPU: one here),
#      /sys/class/net/IF/queues then has tx-0..tx-(N-1); XPS sends this CPU's frames on the last TX queue only, and every ping to the
#      peer is answered, with ethtool -S counting them on that queue;
#   3. ethtool -L combined 1 (the device disables the other pairs), tx-0 alone in sysfs,
#      every ping answered, now counted on TX queue 0.
# Markers:
#   VPGUEST: INFO mq: features bit 22 = 1, combined max M current C, queues rx-0 tx-0 ...
#   VPGUEST: INFO mq: combined N: queues rx-0 ... tx-(N-1)
#   VPGUEST: INFO mq: combined N: ping PEER: GOT/COUNT replies, tx queue Q +K packets
#   VPGUEST: INFO mq: combined 1: ping PEER: GOT/COUNT replies, tx queue 0 +K packets
#   VP_IP, VP_PEER   our address (a.b.c.d/nn) and the peer to ping (required)
#   VP_QUEUES=2      queue pairs the NIC has
#   VP_COUNT=20      echo requests per round (all must be answered)
#   VP_MAC           select the NIC
. /lib/vp.sh

[ -n "$VP_IP" ] && [ -n "$VP_PEER" ] || vp_fail "VP_IP and VP_PEER must be set"
[ -x /bin/ethtool ] || vp_fail "no /bin/ethtool in the image"
nq=${VP_QUEUES:-2}
count=${VP_COUNT:-20}
eth() { LD_LIBRARY_PATH=/lib/vp /bin/ethtool "$@"; }
ifc=$(vp_up "$VP_MAC") || exit 1

# 1. What the driver made of the device.
feat=$(cat "/sys/class/net/$ifc/device/features") || vp_fail "no sysfs features for $ifc"
[ "${feat:22:1}" = 1 ] || vp_fail "virtio_net did not negotiate MQ (bit 22): $feat"
# "Combined:" appears twice: the maximum, then the current setting.
combined() { eth -l "$ifc" | awk '/^Combined:/ { print $2 }' | sed -n "${1}p"; }
max=$(combined 1)
cur=$(combined 2)
queues=$(ls "/sys/class/net/$ifc/queues" | tr '\n' ' ')
vp_info "features bit 22 = 1, combined max ${max:-?} current ${cur:-?}, queues $queues, $(grep -c ^processor /proc/cpuinfo) online CPU(s)"
[ "$max" = "$nq" ] || vp_fail "ethtool -l: combined max ${max:-missing}, want $nq"
ip addr add "$VP_IP" dev "$ifc" || vp_fail "ip addr add $VP_IP dev $ifc failed"

tx_packets() { eth -S "$ifc" | awk -v k="tx_queue_$1_packets:" '$1 == k { print $2 }'; }

# set_combined N: ethtool -L, then check the driver took it: ethtool -l says N, the
# stack has exactly tx-0..tx-(N-1) (sysfs shows the queues in use).
set_combined() {
    out=$(eth -L "$ifc" combined "$1" 2>&1) || vp_fail "ethtool -L $ifc combined $1: $out"
    c=$(combined 2)
    [ "$c" = "$1" ] || vp_fail "ethtool -l: combined current ${c:-missing} after -L combined $1"
    queues=$(ls "/sys/class/net/$ifc/queues" | tr '\n' ' ')
    [ "$(ls -d "/sys/class/net/$ifc/queues"/tx-* | wc -l)" = "$1" ] &&
        [ -d "/sys/class/net/$ifc/queues/tx-$(($1 - 1))" ] ||
        vp_fail "combined $1: queues $queues"
    vp_info "combined $1: queues $queues"
}

# round N Q: pings with TX queue Q the one this CPU sends on; all answered, counted on Q.
round() {
    if [ "$2" != 0 ]; then
        # XPS: this CPU (0) sends on queue Q only (the driver's own map has it on all).
        for q in $(seq 0 $((nq - 1))); do
            m=0
            [ "$q" != "$2" ] || m=1
            echo "$m" >"/sys/class/net/$ifc/queues/tx-$q/xps_cpus" ||
                vp_fail "cannot set tx-$q/xps_cpus"
        done
    fi
    before=$(tx_packets "$2")
    t=0
    until ping -c 1 -W 1 "$VP_PEER" >/dev/null 2>&1; do
        t=$((t + 1))
        [ $t -lt 60 ] || vp_fail "combined $1: no answer from $VP_PEER in 60s"
    done
    out=$(ping -c "$count" -i 0.2 -W 5 "$VP_PEER" 2>&1)
    got=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    after=$(tx_packets "$2")
    d=$((${after:-0} - ${before:-0}))
    vp_info "combined $1: ping $VP_PEER: ${got:-0}/$count replies, tx queue $2 +$d packets"
    [ "${got:-0}" -ge "$count" ] || vp_fail "combined $1: ${got:-0}/$count replies"
    [ "$d" -ge "$count" ] || vp_fail "combined $1: tx queue $2 sent $d packets, want $count"
}

# 2. Every pair in use, frames on the last one.
set_combined "$nq"
round "$nq" $((nq - 1))
# 3. Back to one pair: the device disables the others, traffic stays.
set_combined 1
round 1 0
exit 0
