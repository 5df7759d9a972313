# Guest-side helpers for test scripts: ". /lib/vp.sh" (busybox sh).
# A test script passes by exiting 0 and fails by calling vp_fail REASON (or exiting non-zero);
# /init prints the PASS/FAIL marker.

vp_info() { echo "VPGUEST: INFO ${VP_NAME:-test}: $*"; }

vp_fail() {
    echo "$*" >/tmp/vp-reason
    exit 1
}

# vp_netif [MAC]: print the name of the first virtio-net interface (or the one with MAC).
# VP_IFACE overrides.
vp_netif() {
    if [ -n "$VP_IFACE" ]; then
        echo "$VP_IFACE"
        return 0
    fi
    for d in /sys/class/net/*; do
        [ -e "$d/device/driver" ] || continue
        drv=$(basename "$(readlink "$d/device/driver")")
        [ "$drv" = virtio_net ] || continue
        if [ -n "$1" ] && [ "$(cat "$d/address")" != "$1" ]; then
            continue
        fi
        basename "$d"
        return 0
    done
    return 1
}

# vp_wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
vp_wait_for() {
    _t=$(($1 * 10))
    shift
    while [ $_t -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        _t=$((_t - 1))
    done
    return 1
}

# vp_netif_ready IFACE: operstate up and carrier 1.
vp_netif_ready() {
    [ "$(cat "/sys/class/net/$1/operstate" 2>/dev/null)" = up ] &&
        [ "$(cat "/sys/class/net/$1/carrier" 2>/dev/null)" = 1 ]
}

# vp_up [MAC]: find the interface, bring it up, wait for carrier; prints its name.
vp_up() {
    _if=$(vp_wait_for "${VP_WAIT:-20}" vp_netif "$1" >/dev/null && vp_netif "$1") ||
        vp_fail "no virtio-net interface${1:+ with MAC $1} ($(ls /sys/class/net | tr '\n' ' '))"
    ip link set "$_if" up || vp_fail "ip link set $_if up failed"
    vp_wait_for "${VP_WAIT:-20}" vp_netif_ready "$_if" ||
        vp_fail "$_if not ready: operstate=$(cat "/sys/class/net/$_if/operstate") carrier=$(cat "/sys/class/net/$_if/carrier" 2>/dev/null)"
    echo "$_if"
}

# vp_icmp FIELD: a counter from the Icmp line of /proc/net/snmp (InEchos, OutEchoReps...).
vp_icmp() {
    awk -v f="$1" '$1 == "Icmp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1 } else print $c }' /proc/net/snmp
}
