# Guest test: the kernel driver's 2.1 mode (guest/linux/vpnet21.c). This guest is one peer of a
# 2.1 pair through the slot vhost-pcid gives it (tests/peers/qemu-pair21-kmod.sh: .0
# ivshmem-doorbell, .1 the header, .2 the other's section, both readonly=on); the other peer
# is a host vp-vm running its tap app (169.254.21.1 on the host's TAP).
#  1. insmod: vp21_0 appears (not guessed: the header's magic in .1), 169.254.21.2/24, carrier
#     once the host's vp-vm has joined;
#  2. busybox nc serves a VP_P21K_KIB KiB random blob (5001), takes an upload and answers its
#     sha256 and size (5002), answers the blob's sha256 (5003); pings to the host; "ready";
#  3. the host checks both directions, then writes a bad avail index into its own section:
#     the link must go down with the reason in sysfs and dmesg, the guest stay up, no
#     WARNING/BUG/Oops; "broken: REASON";
#  4. ip link down/up (a new epoch): the link comes back once the host's peer resyncs;
#     pings to the host again; ethtool -S counters where ethtool is in the image;
#  5. rmmod: vp21_0 goes and our section's state word (.0 BAR2 + 8) reads 0 (detached).
# Markers: "pair21-kmod: ..." info lines; "ready", "broken: ...", "recovered".
. /lib/vp.sh

ko=/lib/modules/extra/vhost_pci_net.ko
IF=vp21_0 ME=169.254.21.2 HOST=169.254.21.1
kib=${VP_P21K_KIB:-1024}
[ -f $ko ] || vp_fail "no $ko in the image"
carrier() { [ "$(cat /sys/class/net/$IF/carrier 2>/dev/null)" = 1 ]; }
nocarrier() { [ "$(cat /sys/class/net/$IF/carrier 2>/dev/null)" = 0 ]; }
reason() { cat /sys/class/net/$IF/vhost_pci_reason 2>/dev/null; }
kmsg() { dmesg | grep -E 'vp21|vhost_pci|net21' | tail -"${1:-3}" | tr '\n' ' '; }
clean() {
    if dmesg | grep -qE 'WARNING|BUG|Oops|general protection'; then
        vp_fail "kernel log: $(dmesg | grep -E 'WARNING|BUG|Oops|general protection' | head -3)"
    fi
}
pingok() { # COUNT
    _out=$(ping -c "$1" -W 3 $HOST 2>&1)
    echo "$_out" | grep -q "$1 packets received" ||
        vp_fail "ping -c $1 $HOST: $(echo "$_out" | tail -2 | tr '\n' ' '); $(kmsg)"
    vp_info "ping -c $1 $HOST: $(echo "$_out" | tail -1)"
}

insmod $ko || vp_fail "insmod $ko failed"
vp_wait_for 30 test -e /sys/class/net/$IF ||
    vp_fail "no $IF ($(ls /sys/class/net | tr '\n' ' ')); $(kmsg)"
vp_info "probe: $(dmesg | grep -m1 '2.1 peer' | sed 's/^\[[^]]*\] //')"
ip addr add $ME/24 dev $IF || vp_fail "ip addr add"
ip link set $IF up || vp_fail "ip link set $IF up"
vp_wait_for 200 carrier || vp_fail "$IF has no carrier: $(kmsg)"
vp_wait_for 5 sh -c 'dmesg | grep -q "vp21_0: link up"'
vp_info "link up: carrier $(cat /sys/class/net/$IF/carrier); kernel log: $(dmesg | grep -E 'vp21_0: link' | tail -2 | sed 's/^\[[^]]*\] //' | tr '\n' ' ')"

dd if=/dev/urandom of=/tmp/blob bs=1024 count="$kib" 2>/dev/null
sha256sum /tmp/blob | cut -d' ' -f1 >/tmp/blob.sum
mkdir -p /srv
printf '#!/bin/sh\ncat /tmp/blob\n' >/srv/send
printf '#!/bin/sh\ntee /tmp/in | sha256sum | cut -d" " -f1 | tr "\\n" " "\nwc -c </tmp/in\nrm -f /tmp/in\n' >/srv/recv
printf '#!/bin/sh\ncat /tmp/blob.sum\n' >/srv/sum
chmod +x /srv/send /srv/recv /srv/sum
nc -ll -p 5001 -e /srv/send &
nc -ll -p 5002 -e /srv/recv &
nc -ll -p 5003 -e /srv/sum &
pingok 5
vp_info "ready: blob $kib KiB sha256 $(cat /tmp/blob.sum)"

# 3. The host's bad index: link down with a reason, nothing else.
vp_wait_for 300 nocarrier || vp_fail "the link never went down (the host's bad index): $(kmsg)"
vp_wait_for 10 sh -c '[ -n "$(cat /sys/class/net/vp21_0/vhost_pci_reason)" ]' ||
    vp_fail "carrier down without a reason: $(kmsg)"
vp_info "broken: $(reason)"
dmesg | grep -q "link down: the other peer broke the 2.1 rules" ||
    vp_fail "no reason in the kernel log: $(kmsg)"
vp_info "kernel log: $(dmesg | grep -m1 'link broken' | sed 's/^\[[^]]*\] //')"
clean

# 4. A new epoch: the host's vp-vm resyncs and the link is back.
ip link set $IF down && ip link set $IF up || vp_fail "ip link down/up"
vp_wait_for 60 carrier || vp_fail "no carrier after down/up: $(kmsg)"
[ -z "$(reason)" ] || vp_fail "still a reason after down/up: $(reason)"
pingok 3
if [ -x /bin/ethtool ]; then  # the host's, with its libraries in /lib/vp (tg_initrd)
    s=$(LD_LIBRARY_PATH=/lib/vp /bin/ethtool -S $IF 2>&1) || vp_fail "ethtool -S $IF: $s"
    vp_info "ethtool -S: $(echo "$s" | grep -E 'rx_packets|tx_packets|irqs_rx|irqs_tx|doorbells:|resyncs|broken|link_changes' | tr -s ' \n' ' ')"
    for k in rx_packets tx_packets irqs_rx broken; do
        v=$(echo "$s" | awk -v k="$k:" '$1 == k { print $2 }')
        [ "${v:-0}" -gt 0 ] || vp_fail "ethtool -S: $k is ${v:-missing}"
    done
fi
clean
vp_info "recovered"

# 5. Unload: the driver detaches (state 0 in our section: the other peer stops sending).
bar=$(sed -n 3p /sys/bus/pci/devices/0000:00:10.0/resource | cut -d' ' -f1)
[ "$(busybox devmem $((bar + 8)) 32)" = 0x00000001 ] || vp_fail "our state word is not 1 while attached"
rmmod vhost_pci_net || vp_fail "rmmod failed"
[ ! -e /sys/class/net/$IF ] || vp_fail "$IF still there after rmmod"
st=$(busybox devmem $((bar + 8)) 32)
[ "$st" = 0x00000000 ] || vp_fail "our state word after rmmod is $st, not 0 (detached)"
clean
vp_info "unloaded: $IF gone, our section says detached"
