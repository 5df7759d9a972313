# Guest test: one of two real guests that talk to each other (tests/peers/qemu-twoguest*.sh,
# bench/twoguest.sh). Every guest serves the same four TCP ports with busybox nc:
#   5001  sends /tmp/blob (VP_TG_KIB KiB of random bytes, made at boot)
#   5002  reads to EOF and answers "SHA256 BYTES" of what it read
#   5003  answers the sha256 of /tmp/blob
#   5004  reads to EOF and answers the byte count (bench: no checksum in the timing)
# and takes commands, one a line, from its second serial port (ttyS1: the host writes
# them into a Unix socket chardev), so the host decides what happens when:
#   round N PEER        ping PEER (waits up to 60 s for the first reply, then 5 more),
#                       fetch PEER's blob and check it against PEER's sum, send our blob
#                       and check PEER's answer. "tg: round N ok ..." or "tg: round N FAIL why"
#   bench PEER COUNT MIB  ping -c COUNT (min/avg/max), then MIB MiB of random bytes to PEER,
#                       timed until PEER has counted them: "tg: bench rtt_ms A/B/C up_mib
#                       N up_s S answer BYTES"
#   app-kill            (backend) SIGKILL vp-vm, start it again: "tg: app restarted"
#   vmlog WORD          (backend) vp-vm's log lines with WORD: "tg: vmlog LINE" each, then
#                       "tg: vmlog end N" (N lines)
#   quit                end the test (PASS)
# Roles (VP_TG_ROLE):
#   fe  the NIC is a stock virtio-net (vhost-user on the host); address VP_TG_IP on it
#   be  a backend VM: vhost-pci devices are hot-plugged by vhost-pcid; vp-vm --backend
#       --guest-pci --app tap (VP_TG_MODE, default adaptive) gives each its own TAP (vpB,
#       vpB1, ...), and every TAP joins the bridge br0, which has VP_TG_IP. Whenever the
#       number of vhost-pci devices (pairs of 1af4:1110 functions) changes: "tg: pairs N".
# Markers: "tg: ready", "tg: pairs N", "tg: round N ok|FAIL", "tg: bench ...".
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
# Bridge every TAP vp-vm makes; report device count changes. Runs in the background.
watch_be() {
    last=-1
    while :; do
        for t in /sys/class/net/vpB*; do
            [ -e "$t" ] || continue
            t=${t##*/}
            [ -e "/sys/class/net/$t/brport" ] && continue
            brctl addif br0 "$t" && ip link set "$t" up && vp_info "bridged $t"
        done
        p=$(pairs)
        [ "$p" != "$last" ] && vp_info "pairs $p" && last=$p
        sleep 0.2
    done
}
if [ "$VP_TG_ROLE" = be ]; then
    [ -x /bin/vp-vm ] || vp_fail "no /bin/vp-vm in the image"
    [ -c /dev/net/tun ] || vp_fail "no /dev/net/tun (tun module not loaded?)"
    brctl addbr br0 || vp_fail "no bridge (bridge module not loaded?)"
    echo 0 >/sys/class/net/br0/bridge/forward_delay
    # A fixed MAC: a bridge takes its lowest port's otherwise, and every restart of vp-vm
    # makes new TAPs with new MACs (the peers' ARP caches would point nowhere for a while).
    ip link set br0 address 02:00:a9:fe:58:01
    ip addr add "$VP_TG_IP" dev br0 && ip link set br0 up || vp_fail "br0: cannot set $VP_TG_IP"
    app_start
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

round() { # N PEER
    n=$1 peer=$2
    ping -c 1 -w 60 "$peer" >/dev/null ||
        { vp_info "round $n FAIL no ping reply from $peer in 60 s"; return; }
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
    vp_info "round $n ok ping $got/5 down $bytes bytes sha256 ok $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s up $((kib * 1024)) bytes sha256 ok $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')s"
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
    vp_info "diag end"
}

vmlog() { # WORD
    n=0
    grep -a -- "$1" /tmp/vm.log >/tmp/vmlog 2>/dev/null
    while read -r l; do vp_info "vmlog $l"; n=$((n + 1)); done </tmp/vmlog
    vp_info "vmlog end $n"
}

app_kill() {
    pid=$(cat /tmp/vm.pid)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    app_start
    vp_info "app restarted (was $pid, now $(cat /tmp/vm.pid))"
}

while read -r cmd a b c <&3; do
    vp_info "cmd $cmd $a $b $c"
    case $cmd in
    round) round "$a" "$b" ;;
    bench) bench "$a" "$b" "$c" ;;
    app-kill) app_kill ;;
    vmlog) vmlog "$a" ;;
    diag) diag ;;
    quit) vp_info "quit"; exit 0 ;;
    "") ;;
    *) vp_info "unknown command '$cmd'" ;;
    esac
done
vp_fail "command port closed"
