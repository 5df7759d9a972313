# Guest test: one of two real guests that talk to each other (tests/peers/qemu-twoguest*.sh,
# bench/twoguest.sh). Every guest serves the same four TCP ports with busybox nc:
#   5001  sends /tmp/blob (VP_TG_KIB KiB of random bytes, made at boot)
#   5002  reads to EOF and answers "SHA256 BYTES" of what it read
#   5003  answers the sha256 of /tmp/blob
#   5004  reads to EOF and answers the byte count (bench: no checksum in the timing)
# and takes commands, one a line, from its second serial port (ttyS1: the host writes
# them into a Unix socket chardev), so the host decides what happens when:
#   round N PEER [SIZE] ping PEER (one request, its reply within 10 s, then 5 more),
#                       fetch PEER's blob and check it against PEER's sum, send our blob
#                       and check PEER's answer. "tg: round N ok ..." or "tg: round N FAIL why".
#                       With SIZE, first 3 pings of SIZE data bytes that must leave unfragmented
#                       (jumbo: the IP FragCreates counter does not move)
#   mtu N               set our interfaces' MTU (be/bek: every bridge port, later ones too, and
#                       br0): "tg: mtu N ok" or "tg: mtu FAIL why"
#   flood PEER          endless TCP to PEER's port 5004 in the background, until flood-stop;
#                       "tg: flood started" once 1 MiB has left (else "tg: flood FAIL why")
#   flood-stop          end it: "tg: flood stopped"
#   kmod-reload         (bek) check that traffic crosses the vpnet interfaces, rmmod the module
#                       under it, insmod it again, wait for as many interfaces as before:
#                       "tg: kmod reloaded N" or "tg: kmod-reload FAIL why"
#   dmesg               "tg: dmesg clean" or "tg: dmesg FAIL line" (WARNING, BUG, Oops...)
#   offloads            per interface (fe: the virtio-net one, bek: every vpnet, be: every
#                       TAP of vp-vm's): "tg: offloads
#                       IFC k NAME=on|off ... [virtio BIT-NAMES] [S COUNTER=N ...] stat rx P/B
#                       tx P/B" (ethtool -k; fe: the virtio features its driver negotiated;
#                       bek: the driver's offload counters), then "tg: offloads end"
#   vpnet NAME          (bek) the interface's state: "tg: vpnet NAME carrier C reason 'WHY'
#                       COUNTER=N ..." (ethtool -S, the non-zero ones), "tg: vpnet NAME log
#                       LINE" for each kernel log line that names it, "tg: vpnet NAME end N"
#   bench PEER COUNT MIB  ping -c COUNT (min/avg/max), then MIB MiB of random bytes to PEER,
#                       timed until PEER has counted them: "tg: bench rtt_ms A/B/C up_mib
#                       N up_s S answer BYTES"
#   app-kill            (backend) SIGKILL vp-vm, start it again: "tg: app restarted"
#   vmlog WORD          (backend) vp-vm's log lines with WORD: "tg: vmlog LINE" each, then
#                       "tg: vmlog end N" (N lines)
#   quit                end the test (PASS; bek: FAIL if the kernel log is not clean)
#   profile start       ftrace's function_graph tracer on the module's functions and the main
#                       networking, copy, checksum, skb and interrupt functions (the kernel
#                       has no CONFIG_FUNCTION_PROFILER): "tg: profile untraceable NAME..."
#                       for those of the set it cannot trace, then "tg: profile started F
#                       functions"
#   profile stop N      stop it; the top N functions by self time: "tg: profile FUNC calls C
#                       per_frame P self_us S total_us T avg_us A" each (self: less the
#                       traced callees; total and avg: inclusive; not asleep), then "tg: profile end frames F lost L" (F: packets the vpnet
#                       interfaces sent and received meanwhile; L: trace events lost)
# Roles (VP_TG_ROLE):
#   fe  the NIC is a stock virtio-net (vhost-user on the host); address VP_TG_IP on it
#   be  a backend VM: vhost-pci devices are hot-plugged by vhost-pcid; vp-vm --backend
#       --guest-pci --app tap (VP_TG_MODE, default adaptive) gives each its own TAP (vpB,
#       vpB1, ...), and every TAP joins the bridge br0, which has VP_TG_IP. Whenever the
#       number of vhost-pci devices (pairs of 1af4:1110 functions) changes: "tg: pairs N".
#   bek the same backend VM and bridge, with the kernel driver instead of vp-vm: insmod
#       /lib/modules/extra/vhost_pci_net.ko (guest/linux/); each device's interface (vpnet0,
#       vpnet1, ...) joins br0. Whenever the set of interfaces changes: "tg: vpnets N NAME MAC
#       uuid UUID id DEVICE-ID; ..." (sysfs vhost_pci_uuid and vhost_pci_device_id).
# Markers: "tg: ready", "tg: pairs N", "tg: vpnets N ...", "tg: round N ok|FAIL", "tg: bench ...",
# (be, bek) "tg: bridged NAME forwarding" once the bridge forwards on a new port NAME (or
# "tg: bridged NAME not forwarding (...)" after 3 s).
. /lib/vp.sh
VP_NAME=tg

[ -n "$VP_TG_IP" ] || vp_fail "VP_TG_IP must be set"
kib=${VP_TG_KIB:-1024}
# Open it before "ready": a line the host writes while nobody holds the port is lost.
exec 3</dev/ttyS1 && stty raw -echo <&3 || vp_fail "no command port /dev/ttyS1"

now() { awk '{ print $1 }' /proc/uptime; }

# ---- the three servers ------------------------------------------------------------------
dd if=/dev/urandom of=/tmp/blob bs=1024 count="$kib" 2>/dev/null || vp_fail "no blob"
sha256sum /tmp/blob | cut -d' ' -f1 >/tmp/blob.sum
mkdir -p /srv
printf '#!/bin/sh\ncat /tmp/blob\n' >/srv/send
printf '#!/bin/sh\ncat /tmp/blob.sum\n' >/srv/sum
# What the peer sent: its sum and length go back on the same connection.
printf '#!/bin/sh\ntee /tmp/in | sha256sum | cut -d" " -f1 | tr "\\n" " "\nwc -c </tmp/in\nrm -f /tmp/in\n' >/srv/recv
printf '#!/bin/sh\nwc -c\n' >/srv/count
chmod +x /srv/send /srv/sum /srv/recv /srv/count
nc -ll -p 5001 -e /srv/send &
nc -ll -p 5002 -e /srv/recv &
nc -ll -p 5003 -e /srv/sum &
nc -ll -p 5004 -e /srv/count &

# ---- the backend role -------------------------------------------------------------------
pairs() {
    n=0
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] &&
            [ "$(cat "$d/device" 2>/dev/null)" = 0x1110 ] && n=$((n + 1))
    done
    echo $((n / 2))
}
app_start() {
    LD_LIBRARY_PATH=/lib/vp /bin/vp-vm --backend --guest-pci --app tap --tap vpB \
        --mode "${VP_TG_MODE:-adaptive}" --ram 4M --name be --quiet --log-level "${VP_TG_LOG:-info}" \
        >>/tmp/vm.out 2>>/tmp/vm.log &
    echo $! >/tmp/vm.pid
}
# The kernel driver's interfaces: "N NAME MAC uuid UUID id ID; ...", MAC as the driver set
# it (watch_be changes it before bridging).
ko=/lib/modules/extra/vhost_pci_net.ko
vpnets() {
    n=0 s=''
    for d in /sys/class/net/vpnet*; do
        [ -e "$d" ] || continue
        n=$((n + 1))
        m=$(cat "/tmp/mac.${d##*/}" 2>/dev/null || cat "$d/address")
        s="$s ${d##*/} $m uuid $(cat "$d/vhost_pci_uuid" 2>/dev/null) id $(cat "$d/vhost_pci_device_id" 2>/dev/null);"
    done
    echo "$n$s"
}
ethtool_() { LD_LIBRARY_PATH=/lib/vp /bin/ethtool "$@"; }
# port_forwarding PORT: wait (up to 3 s) until the bridge forwards on PORT: "forwarding", or
# "not forwarding (state S, operstate O)". A port brought up with its carrier on forwards only
# once linkwatch has made its operstate UP, up to a second later; until then the bridge drops
# what the port receives (br_handle_frame), and a frontend's frame taken then is lost
# (docs/guest-tests.md, "The first ping after a new bridge port").
port_forwarding() {
    for _ in $(seq 60); do
        [ "$(cat "/sys/class/net/$1/brport/state" 2>/dev/null)" = 3 ] && { echo forwarding; return; }
        sleep 0.05
    done
    echo "not forwarding (state $(cat "/sys/class/net/$1/brport/state" 2>/dev/null), operstate $(cat "/sys/class/net/$1/operstate" 2>/dev/null))"
}
# Bridge every TAP vp-vm makes and every interface the kernel driver makes (at the MTU of
# the last mtu command); report device count changes. Runs in the background.
echo 1500 >/tmp/mtu
watch_be() {
    last=-1 lastif=''
    while :; do
        for t in /sys/class/net/vpB* /sys/class/net/vpnet*; do
            [ -e "$t" ] || continue
            t=${t##*/}
            [ -e "/sys/class/net/$t/brport" ] && continue
            # The driver gives an interface its frontend's MAC. As a bridge port it needs
            # another: the bridge would take the frontend's address for its own (a local
            # entry) and deliver frames for the frontend from other ports to itself.
            case $t in
            vpnet*)
                a=$(cat "/sys/class/net/$t/address")
                case $a in 02:00:a9:fe:59:*) ;; *) echo "$a" >"/tmp/mac.$t" ;; esac
                ip link set "$t" address "$(printf '02:00:a9:fe:59:%02x' "$(cat "/sys/class/net/$t/ifindex")")" ;;
            esac
            ip link set "$t" mtu "$(cat /tmp/mtu)" && brctl addif br0 "$t" &&
                ip link set "$t" up && vp_info "bridged $t $(port_forwarding "$t")"
            case $t in
            vpnet*) [ -x /bin/ethtool ] &&
                vp_info "ethtool -i $t: $(ethtool_ -i "$t" | grep -E '^(driver|firmware-version|bus-info):' | tr '\n' ' ')" ;;
            esac
        done
        p=$(pairs)
        [ "$p" != "$last" ] && vp_info "pairs $p" && last=$p
        if [ "$VP_TG_ROLE" = bek ]; then
            for f in /tmp/mac.*; do
                [ -e "$f" ] && [ ! -e "/sys/class/net/${f#/tmp/mac.}" ] && rm -f "$f"
            done
            v=$(vpnets)
            [ "$v" != "$lastif" ] && vp_info "vpnets $v" && lastif=$v
        fi
        sleep 0.2
    done
}
if [ "$VP_TG_ROLE" = be ] || [ "$VP_TG_ROLE" = bek ]; then
    if [ "$VP_TG_ROLE" = be ]; then
        [ -x /bin/vp-vm ] || vp_fail "no /bin/vp-vm in the image"
        [ -c /dev/net/tun ] || vp_fail "no /dev/net/tun (tun module not loaded?)"
    else
        [ -f $ko ] || vp_fail "no $ko in the image"
    fi
    brctl addbr br0 || vp_fail "no bridge (bridge module not loaded?)"
    echo 0 >/sys/class/net/br0/bridge/forward_delay
    # A fixed MAC: a bridge takes its lowest port's otherwise, and every restart of vp-vm
    # makes new TAPs with new MACs (the peers' ARP caches would point nowhere for a while).
    ip link set br0 address 02:00:a9:fe:58:01
    ip addr add "$VP_TG_IP" dev br0 && ip link set br0 up || vp_fail "br0: cannot set $VP_TG_IP"
    if [ "$VP_TG_ROLE" = be ]; then
        app_start
    else
        insmod $ko || vp_fail "insmod $ko failed"
    fi
    watch_be &
    ifc=br0
else
    ifc=$(vp_up) || exit 1
    ip addr add "$VP_TG_IP" dev "$ifc" || vp_fail "cannot set $VP_TG_IP on $ifc"
fi
vp_info "ready $ifc ${VP_TG_IP} blob ${kib} KiB $(cat /tmp/blob.sum)"

# ---- commands ---------------------------------------------------------------------------
# fetch PEER PORT FILE: what PEER sends on PORT, within 60 s.
fetch() { timeout 60 nc "$1" "$2" >"$3" </dev/null; }

# ip_stat FIELD: a counter from the Ip line of /proc/net/snmp (FragCreates...).
ip_stat() {
    awk -v f="$1" '$1 == "Ip:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1 } else print $c }' /proc/net/snmp
}

round() { # N PEER [SIZE]
    n=$1 peer=$2 size=$3
    # One echo request, up to 10 s for its reply (neighbour resolution retries on its own):
    # the host starts a round only once the path exists (a backend's port forwards), so a
    # lost request is a lost frame (docs/guest-tests.md, "The first ping after a new bridge
    # port").
    ping -c 1 -W 10 "$peer" >/dev/null ||
        { vp_info "round $n FAIL first ping to $peer unanswered in 10 s"; return; }
    jumbo=''
    if [ -n "$size" ]; then
        f0=$(ip_stat FragCreates)
        got=$(ping -c 3 -i 0.2 -W 2 -s "$size" "$peer" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
        f1=$(ip_stat FragCreates)
        [ "${got:-0}" -ge 2 ] || { vp_info "round $n FAIL ping -s $size: ${got:-0}/3 replies"; return; }
        [ "$f0" = "$f1" ] || { vp_info "round $n FAIL ping -s $size: fragmented ($((f1 - f0)) fragments)"; return; }
        jumbo=" ping -s $size $got/3 unfragmented"
    fi
    got=$(ping -c 5 -i 0.2 -W 2 "$peer" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    [ "${got:-0}" -ge 4 ] || { vp_info "round $n FAIL ping: ${got:-0}/5 replies"; return; }
    fetch "$peer" 5003 /tmp/peer.sum || { vp_info "round $n FAIL no sum from $peer"; return; }
    t0=$(now)
    fetch "$peer" 5001 /tmp/down || { vp_info "round $n FAIL download from $peer"; return; }
    t1=$(now)
    want=$(cat /tmp/peer.sum) have=$(sha256sum /tmp/down | cut -d' ' -f1)
    bytes=$(wc -c </tmp/down)
    [ -n "$want" ] && [ "$want" = "$have" ] ||
        { vp_info "round $n FAIL download: $bytes bytes, sha256 $have, peer says $want"; return; }
    ans=$(timeout 60 nc "$peer" 5002 </tmp/blob)
    t2=$(now)
    [ "$ans" = "$(cat /tmp/blob.sum) $((kib * 1024))" ] ||
        { vp_info "round $n FAIL upload: peer read '$ans'"; return; }
    vp_info "round $n ok$jumbo ping $got/5 down $bytes bytes sha256 ok $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s up $((kib * 1024)) bytes sha256 ok $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')s"
}

bench() { # PEER COUNT MIB
    peer=$1
    ping -c 1 -w 60 "$peer" >/dev/null || { vp_info "bench FAIL no peer"; return; }
    rtt=$(ping -c "$2" -i 0.2 -W 2 "$peer" | sed -n 's/.*min\/avg\/max = \([^ ]*\) ms.*/\1/p')
    dd if=/dev/urandom of=/tmp/bench bs=1M count="$3" 2>/dev/null
    t0=$(now)
    timeout 120 nc "$peer" 5004 </tmp/bench >/tmp/bench.ans
    t1=$(now)
    vp_info "bench rtt_ms ${rtt:-none} up_mib $3 up_s $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') answer $(cat /tmp/bench.ans)"
}

# What the host prints when a step failed.
diag() {
    for f in /tmp/vm.log /tmp/vm.out; do
        [ -s $f ] && tail -n 30 $f | while read -r l; do vp_info "diag $f: $l"; done
    done
    if [ -s /tmp/vm.pid ]; then
        p=$(cat /tmp/vm.pid)
        vp_info "diag vp-vm $p: $(grep -h State /proc/$p/status 2>/dev/null || echo gone) wchan $(cat /proc/$p/wchan 2>/dev/null)"
    fi
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/device")" = 0x1110 ] || continue
        vp_info "diag ${d##*/}: enable $(cat "$d/enable") $(ls "$d" | grep resource | tr '\n' ' ')"
    done
    ip -s link | while read -r l; do vp_info "diag ip: $l"; done
    [ -d /sys/class/net/br0 ] && brctl show | while read -r l; do vp_info "diag br: $l"; done
    ip neigh | while read -r l; do vp_info "diag neigh: $l"; done
    grep -E '^(Ip|Icmp):' /proc/net/snmp | tr -s ' ' | while read -r l; do vp_info "diag snmp: $l"; done
    [ -d /sys/class/net/br0 ] && brctl showmacs br0 | while read -r l; do vp_info "diag fdb: $l"; done
    for d in /sys/class/net/*; do
        st=$d/statistics
        vp_info "diag ${d##*/}: rx $(cat $st/rx_packets)/$(cat $st/rx_bytes) drop $(cat $st/rx_dropped) tx $(cat $st/tx_packets)/$(cat $st/tx_bytes) drop $(cat $st/tx_dropped)"
    done
    if [ "$VP_TG_ROLE" = bek ]; then
        for d in /sys/class/net/vpnet*; do
            [ -e "$d" ] || continue
            q=$d/queues/tx-0/byte_queue_limits
            vp_info "diag ${d##*/}: carrier $(cat "$d/carrier" 2>/dev/null) operstate $(cat "$d/operstate") bql inflight $(cat $q/inflight 2>/dev/null) limit $(cat $q/limit 2>/dev/null) reason '$(cat "$d/vhost_pci_reason")'"
            [ -x /bin/ethtool ] && ethtool_ -S "${d##*/}" | grep -v ': 0$' | tr -s ' ' |
                while read -r l; do vp_info "diag ${d##*/} ethtool: $l"; done
        done
        dmesg | grep -E 'vpnet|vhost_pci|WARNING|BUG|Oops' | tail -20 | while read -r l; do vp_info "diag dmesg: $l"; done
    fi
    vp_info "diag end"
}

vpnet_state() { # NAME
    d=/sys/class/net/$1
    [ -e "$d" ] || { vp_info "vpnet $1 FAIL no such interface"; return; }
    c=$( ( [ -x /bin/ethtool ] && ethtool_ -S "$1" ) | grep -v ': 0$' | sed -n 's/^ *\([a-z0-9_]*\): \([0-9]*\)$/\1=\2/p' | tr '\n' ' ')
    vp_info "vpnet $1 carrier $(cat "$d/carrier" 2>/dev/null) reason '$(cat "$d/vhost_pci_reason")' $c"
    n=0
    dmesg | grep -a " $1: " >/tmp/vpnet.log
    while read -r l; do vp_info "vpnet $1 log $l"; n=$((n + 1)); done </tmp/vpnet.log
    vp_info "vpnet $1 end $n"
}

vmlog() { # WORD
    n=0
    grep -a -- "$1" /tmp/vm.log >/tmp/vmlog 2>/dev/null
    while read -r l; do vp_info "vmlog $l"; n=$((n + 1)); done </tmp/vmlog
    vp_info "vmlog end $n"
}

# Our interfaces: the bridge and its ports (be, bek), else the virtio-net one.
set_mtu() { # N
    if [ "$ifc" = br0 ]; then
        echo "$1" >/tmp/mtu
        for t in /sys/class/net/vpB* /sys/class/net/vpnet*; do
            [ -e "$t" ] || continue
            ip link set "${t##*/}" mtu "$1" 2>/tmp/mtu.err ||
                { vp_info "mtu FAIL ${t##*/}: $(cat /tmp/mtu.err)"; return; }
        done
    fi
    ip link set "$ifc" mtu "$1" 2>/tmp/mtu.err || { vp_info "mtu FAIL $ifc: $(cat /tmp/mtu.err)"; return; }
    vp_info "mtu $1 ok $ifc $(cat /sys/class/net/$ifc/mtu)"
}

txbytes() { cat "/sys/class/net/$ifc/statistics/tx_bytes"; }
flood() { # PEER
    b0=$(txbytes)
    timeout 600 nc "$1" 5004 </dev/zero >/dev/null 2>&1 &
    echo $! >/tmp/flood.pid
    vp_wait_for 60 sh -c "[ \$(cat /sys/class/net/$ifc/statistics/tx_bytes) -gt $((b0 + 1048576)) ]" &&
        vp_info "flood started to $1" || vp_info "flood FAIL less than 1 MiB left in 60 s"
}
flood_stop() {
    [ -s /tmp/flood.pid ] && kill "$(cat /tmp/flood.pid)" 2>/dev/null
    rm -f /tmp/flood.pid
    vp_info "flood stopped"
}

# Bytes received on every vpnet interface together.
vpnet_rx() {
    t=0
    for d in /sys/class/net/vpnet*; do
        [ -e "$d" ] && t=$((t + $(cat "$d/statistics/rx_bytes")))
    done
    echo $t
}
kmod_reload() {
    n=$(vpnets | cut -d' ' -f1)
    [ "$n" -gt 0 ] || { vp_info "kmod-reload FAIL no vpnet interface to reload under"; return; }
    r0=$(vpnet_rx)
    vp_wait_for 30 sh -c "[ \$(cat /sys/class/net/vpnet*/statistics/rx_bytes | awk '{ t += \$1 } END { print t }') -gt $((r0 + 262144)) ]" ||
        { vp_info "kmod-reload FAIL no traffic on the vpnet interfaces"; return; }
    rmmod vhost_pci_net 2>/tmp/kmod.err || { vp_info "kmod-reload FAIL rmmod: $(cat /tmp/kmod.err)"; return; }
    [ "$(vpnets | cut -d' ' -f1)" = 0 ] || { vp_info "kmod-reload FAIL interfaces left after rmmod: $(vpnets)"; return; }
    insmod $ko 2>/tmp/kmod.err || { vp_info "kmod-reload FAIL insmod: $(cat /tmp/kmod.err)"; return; }
    vp_wait_for 30 sh -c "[ \$(ls -d /sys/class/net/vpnet* 2>/dev/null | wc -l) = $n ]" ||
        { vp_info "kmod-reload FAIL $(vpnets | cut -d' ' -f1) of $n interfaces after insmod"; return; }
    vp_info "kmod reloaded $n"
}

# What each interface offloads, and the counters that show frames above the MTU crossed.
offloads() {
    [ -x /bin/ethtool ] || { vp_info "offloads FAIL no ethtool in the image"; return; }
    case $VP_TG_ROLE in
    bek) set -- /sys/class/net/vpnet* ;;
    be) set -- /sys/class/net/vpB* ;;
    *) set -- "/sys/class/net/$ifc" ;;
    esac
    for d in "$@"; do
        [ -e "$d" ] || continue
        t=${d##*/}
        k=$(ethtool_ -k "$t" | awk -F': ' '/^(scatter-gather|tx-checksumming|rx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):/ { split($2, v, " "); printf " %s=%s", $1, v[1] }')
        f=''
        if [ -r "$d/device/features" ]; then
            # virtio's sysfs features: one 0/1 character per bit, bit 0 first.
            f=" virtio$(awk '{ n = split("CSUM GUEST_CSUM - - - - - GUEST_TSO4 GUEST_TSO6 GUEST_ECN - HOST_TSO4 HOST_TSO6 HOST_ECN - MRG_RXBUF", b, " ")
                for (i = 1; i <= n; i++) if (b[i] != "-" && substr($0, i, 1) == "1") printf " %s", b[i] }' "$d/device/features")"
        fi
        c=''
        case $t in
        vpnet*) c=" S$(ethtool_ -S "$t" | awk '$1 ~ /^(rx_gso|rx_gso_bytes|tx_gso|tx_gso_bytes|rx_csum_partial|tx_csum_partial|rx_drop_offload|tx_drop_too_big):$/ { sub(":", "", $1); printf " %s=%s", $1, $2 }')" ;;
        esac
        st=$d/statistics
        vp_info "offloads $t k$k$f$c stat rx $(cat $st/rx_packets)/$(cat $st/rx_bytes) tx $(cat $st/tx_packets)/$(cat $st/tx_bytes)"
    done
    vp_info "offloads end"
}

# The kernel log: the lines that mean the kernel found itself wrong.
dmesg_bad() { dmesg | grep -E 'WARNING|BUG|Oops|Call Trace|general protection' | head -3; }

app_kill() {
    pid=$(cat /tmp/vm.pid)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    app_start
    vp_info "app restarted (was $pid, now $(cat /tmp/vm.pid))"
}

# The function_graph tracer on a chosen set: a profile of where the kernel's time goes.
trc=/sys/kernel/tracing
prof_funcs="net_rx_action __napi_poll napi_gro_receive netif_receive_skb_list_internal
 __netif_receive_skb br_handle_frame br_forward br_dev_xmit __dev_queue_xmit
 dev_hard_start_xmit ip_rcv ip_local_deliver tcp_v4_rcv tcp_rcv_established tcp_recvmsg
 tcp_sendmsg tcp_write_xmit tcp_ack __tcp_transmit_skb skb_copy_datagram_iter
 __skb_datagram_iter _copy_to_iter _copy_from_iter csum_partial __skb_checksum_complete
 skb_checksum __alloc_skb __napi_alloc_skb kfree_skb_reason consume_skb napi_consume_skb
 skb_release_data __handle_irq_event_percpu handle_edge_irq ksys_read ksys_write"
vpnet_pkts() {
    t=0
    for d in /sys/class/net/vpnet*; do
        [ -e "$d" ] && t=$((t + $(cat "$d/statistics/rx_packets") + $(cat "$d/statistics/tx_packets")))
    done
    echo $t
}
profile_start() {
    [ -d $trc/options ] || mount -t tracefs nodev $trc 2>/tmp/prof.err ||
        { vp_info "profile FAIL no tracefs: $(cat /tmp/prof.err)"; return; }
    echo 0 >$trc/tracing_on && echo nop >$trc/current_tracer && : >$trc/set_ftrace_filter ||
        { vp_info "profile FAIL cannot reset ftrace"; return; }
    # Room for every event of a 16 MiB transfer: a lost event would make the sums lie.
    echo 49152 >$trc/buffer_size_kb || { vp_info "profile FAIL no 48 MiB trace buffer"; return; }
    echo ':mod:vhost_pci_net' >>$trc/set_ftrace_filter 2>/dev/null
    miss=''
    for f in $prof_funcs; do echo "$f" >>$trc/set_ftrace_filter 2>/dev/null || miss="$miss $f"; done
    n=$(grep -vc "^#" $trc/set_ftrace_filter)
    [ "$n" -gt 0 ] || { vp_info "profile FAIL no traceable function"; return; }
    # Not traceable (inlined, notrace): their time is their callers' self time.
    [ -z "$miss" ] || vp_info "profile untraceable$miss"
    # funcgraph-tail names the function on every closing brace, so each duration has a name.
    echo 1 >$trc/options/funcgraph-tail
    # Time a call spends asleep (nc blocked in read) is not work.
    echo 0 >$trc/options/sleep-time
    echo function_graph >$trc/current_tracer || { vp_info "profile FAIL no function_graph tracer"; return; }
    : >$trc/trace
    vpnet_pkts >/tmp/prof.pkts
    echo 1 >$trc/tracing_on
    vp_info "profile started $n functions"
}
profile_stop() { # N
    echo 0 >$trc/tracing_on
    frames=$(($(vpnet_pkts) - $(cat /tmp/prof.pkts 2>/dev/null || echo 0)))
    lost=$(awk '/^overrun:/ { t += $2 } END { print t + 0 }' $trc/per_cpu/cpu*/stats)
    # "f() {" opens a call, "  1.234 us    |  f();" is a whole one, "+ 12.345 us   |  } /* f */"
    # closes one. Self time: a call's duration less its traced callees' (interrupts taken
    # inside it included), kept on a stack of open calls.
    awk -F'|' -v fr="$frames" '{ f = $2 }
        f ~ /\) \{ *$/ { sub(/\(\) \{ *$/, "", f); gsub(/ /, "", f); sp++; nm[sp] = f; ch[sp] = 0; next }
        $1 !~ / us *$/ { next }
        {
            d = $1; sub(/ us *$/, "", d); sub(/.* /, "", d)
            if (f ~ /\} \/\* /) {
                sub(/.*\} \/\* /, "", f); sub(/ \*\/.*/, "", f); gsub(/ /, "", f)
                c = 0
                # A close whose open came before tracing started has no frame.
                if (sp > 0 && nm[sp] == f) { c = ch[sp]; sp-- }
            } else if (f ~ /\(\);/) {
                sub(/\(\);.*/, "", f); gsub(/ /, "", f); c = 0
            } else next
            if (sp > 0) ch[sp] += d
            n[f]++; t[f] += d; self[f] += d - c
        }
        END { for (f in n) printf "%s %d %.2f %.0f %.0f %.2f\n", f, n[f], (fr > 0) ? n[f] / fr : 0,
            self[f], t[f], t[f] / n[f] }' \
        $trc/trace | sort -k4 -n -r | head -n "${1:-20}" >/tmp/prof.top
    while read -r f cn pf st tt av; do
        vp_info "profile $f calls $cn per_frame $pf self_us $st total_us $tt avg_us $av"
    done </tmp/prof.top
    echo nop >$trc/current_tracer
    : >$trc/set_ftrace_filter
    echo 1408 >$trc/buffer_size_kb
    vp_info "profile end frames $frames lost $lost"
}

while read -r cmd a b c <&3; do
    vp_info "cmd $cmd $a $b $c"
    case $cmd in
    round) round "$a" "$b" "$c" ;;
    bench) bench "$a" "$b" "$c" ;;
    app-kill) app_kill ;;
    vmlog) vmlog "$a" ;;
    vpnet) vpnet_state "$a" ;;
    mtu) set_mtu "$a" ;;
    flood) flood "$a" ;;
    flood-stop) flood_stop ;;
    kmod-reload) kmod_reload ;;
    offloads) offloads ;;
    profile)
        case $a in
        start) profile_start ;;
        stop) profile_stop "$b" ;;
        *) vp_info "profile FAIL start or stop N, not '$a'" ;;
        esac ;;
    dmesg)
        bad=$(dmesg_bad)
        if [ -n "$bad" ]; then vp_info "dmesg FAIL $(echo "$bad" | tr '\n' ' ')"; else vp_info "dmesg clean"; fi ;;
    diag) diag ;;
    quit)
        vp_info "quit"
        if [ "$VP_TG_ROLE" = bek ] && [ -n "$(dmesg_bad)" ]; then
            dmesg | tail -40 | while read -r l; do vp_info "dmesg: $l"; done
            vp_fail "the kernel log has a warning or oops: $(dmesg_bad | head -1)"
        fi
        exit 0 ;;
    "") ;;
    *) vp_info "unknown command '$cmd'" ;;
    esac
done
vp_fail "command port closed"
