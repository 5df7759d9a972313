# Guest test: the vhost-pci-net kernel driver's data path (guest/linux/), against the tiny
# host behind the frontend in tests/peers/kmod_net.c (run by tests/peers/qemu-kmod-data.sh).
#   VP_KD_MIB=N      MiB each way per bulk run (default 2)
#   VP_KD_HOSTILE=1  last, ask the host for a hostile descriptor (outside its RAM, or a
#                    loop: the host decides): the link must go down with a reason, the
#                    guest stay up, the kernel log stay clean
#   VP_KD_QUICK=1    pings only, no bulk, jumbo or rmmod (before a hostile request)
#   VP_KD_STRESS=N   rounds of small datagrams both ways at once (default 10; 0 skips)
# /kmod-guest (tests/peers/kmod_guest.c, static) does the UDP bulk and host-ping parts.
# Markers: "kmod-data: ..." info lines, one per step.
. /lib/vp.sh

ko=/lib/modules/extra/vhost_pci_net.ko
kg=/kmod-guest
mib=${VP_KD_MIB:-2}
[ -f $ko ] || vp_fail "no $ko in the image"
[ -x $kg ] || vp_fail "no $kg in the image"
carrier() { [ "$(cat /sys/class/net/vpnet0/carrier 2>/dev/null)" = 1 ]; }
stat() { cat /sys/class/net/vpnet0/statistics/"$1"; }
load() {
    insmod $ko || vp_fail "insmod $ko failed"
    vp_wait_for 30 test -e /sys/class/net/vpnet0 ||
        vp_fail "no vpnet0 ($(ls /sys/class/net | tr '\n' ' ')); $(dmesg | grep vhost_pci | tail -3)"
    ip addr add 10.77.0.2/24 dev vpnet0 || vp_fail "ip addr add"
    ip link set vpnet0 up || vp_fail "ip link set vpnet0 up"
    vp_wait_for 30 carrier || vp_fail "vpnet0 has no carrier: $(dmesg | grep -E 'vpnet|vhost_pci' | tail -3)"
}
# kmod-guest CMD...: its line becomes an info marker; failure fails the test.
kgrun() {
    _out=$($kg "$@" 2>&1)
    _rc=$?
    vp_info "$_out"
    [ $_rc = 0 ] || vp_fail "kmod-guest $*: $_out; $(dmesg | grep -E 'vpnet|vhost_pci' | tail -3)"
}
pingok() { # COUNT SIZE
    _out=$(ping -c "$1" -s "$2" -W 2 10.77.0.1 2>&1)
    echo "$_out" | grep -q "$1 packets received" ||
        vp_fail "ping -c $1 -s $2: $(echo "$_out" | tail -2 | tr '\n' ' ')"
    vp_info "ping -c $1 -s $2: $(echo "$_out" | tail -1)"
}
counters() {
    vp_info "counters: rx $(stat rx_packets)/$(stat rx_bytes) tx $(stat tx_packets)/$(stat tx_bytes) rx_dropped $(stat rx_dropped) tx_dropped $(stat tx_dropped)"
}

load
vp_info "up: $(cat /sys/class/net/vpnet0/address) mtu $(cat /sys/class/net/vpnet0/mtu)"
pingok 20 56
kgrun pingme 20 56
if [ "${VP_KD_QUICK:-0}" != 1 ]; then
n=$((mib * 1048576 / 1400))
kgrun tx $n 1400
kgrun rx $n 1400
# Small frames (128 bytes on the wire): the per-frame cost.
kgrun tx 20000 70
kgrun rx 20000 70
# Both directions at once, small frames: the most notifications per second each way
# (a lost one once stalled the rings with both directions running). Each side checked.
rounds=${VP_KD_STRESS:-10}
r=0
while [ $r -lt "$rounds" ]; do
    $kg tx 20000 70 >/tmp/kd-stx.log 2>&1 &
    stx=$!
    $kg rx 20000 70 >/tmp/kd-srx.log 2>&1 ||
        vp_fail "stress round $r: rx: $(cat /tmp/kd-srx.log); $(dmesg | grep -E 'vpnet|vhost_pci' | tail -3)"
    wait $stx || vp_fail "stress round $r: tx: $(cat /tmp/kd-stx.log)"
    r=$((r + 1))
    vp_info "stress $r/$rounds: $(cat /tmp/kd-stx.log) | $(cat /tmp/kd-srx.log)"
done
counters
[ "$(stat tx_dropped)" = 0 ] || vp_fail "tx_dropped $(stat tx_dropped) at MTU 1500"

# Jumbo frames: several 2 KiB receive buffers per frame (mergeable) toward the
# frontend, multi-descriptor chains from it.
ip link set vpnet0 mtu 9000 || vp_fail "ip link set vpnet0 mtu 9000 (max_mtu?)"
pingok 5 8000
kgrun pingme 5 8000
n=$((mib * 1048576 / 8900))
kgrun tx $n 8900
kgrun rx $n 8900
ip link set vpnet0 mtu 1500 || vp_fail "back to MTU 1500"
counters

# rmmod under traffic both ways, then everything again from where the rings stopped.
$kg tx 1000000 1400 >/tmp/kd-tx.log 2>&1 &
txp=$!
$kg rx 1000000 1400 >/tmp/kd-rx.log 2>&1 &
rxp=$!
base=$(stat rx_packets)
vp_wait_for 60 sh -c "[ \$(cat /sys/class/net/vpnet0/statistics/rx_packets) -gt $((base + 2000)) ]" ||
    vp_fail "no traffic before rmmod: $(cat /tmp/kd-tx.log /tmp/kd-rx.log)"
rmmod vhost_pci_net || vp_fail "rmmod under traffic failed"
kill $txp $rxp 2>/dev/null
wait $txp $rxp 2>/dev/null
[ ! -e /sys/class/net/vpnet0 ] || vp_fail "vpnet0 still there after rmmod"
vp_info "rmmod under traffic done"
load
pingok 5 56
kgrun tx 2000 1400
kgrun rx 2000 1400
vp_info "reloaded: traffic resumed"
counters
fi

if [ "${VP_KD_HOSTILE:-0}" = 1 ]; then
    $kg hostile || vp_fail "kmod-guest hostile"
    vp_wait_for 30 sh -c '! [ "$(cat /sys/class/net/vpnet0/carrier)" = 1 ]' ||
        vp_fail "the link stayed up after the hostile descriptor"
    reason=$(cat /sys/class/net/vpnet0/vhost_pci_reason)
    [ -n "$reason" ] || vp_fail "link down without a vhost_pci_reason"
    dmesg | grep -q "vpnet0: link down" || vp_fail "no 'link down' in the kernel log"
    vp_info "hostile: link down: $reason"
    rmmod vhost_pci_net || vp_fail "rmmod after the hostile descriptor failed"
    vp_info "hostile: the guest is still up"
fi
if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace|general protection'; then
    vp_fail "the kernel log has a warning or oops"
fi
vp_info "clean"
exit 0
