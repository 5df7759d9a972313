#!/bin/bash
# DPDK's dpdk-testpmd with net_virtio_user,queues=2 (a stock vhost-user frontend with
# two queue pairs) against a vp-vm backend port offering two pairs (--queues 2) and
# running the echo app, which answers each frame on the pair it came on. testpmd
# forwards (io) on both RX/TX queues, so frames circulate on each pair; MQ
# (VIRTIO_NET_F_MQ, bit 22) must be negotiated and vp-vm's per-pair counters must
# show frames both ways on both pairs. Run twice: testpmd straight on vp-vm, then on
# vhost-pcid (queues=2) relaying the device to vp-vm over the native handshake, four
# rings; there testpmd enables pair 1 after pair 0, which the relay follows (CHANGED).
#
#   tests/peers/dpdk-mq.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" without dpdk-testpmd, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=dpdk-mq
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
if [ -z "${DP_MQ_DAEMON:-}" ]; then  # the two runs, each in a process of its own
	DP_MQ_DAEMON=0 "$0" "$@" || exit $?
	DP_MQ_DAEMON=1 exec "$0" "$@"
fi
[ "$DP_MQ_DAEMON" = 1 ] && vp_prog=dpdk-mq-daemon
. "$(dirname "$0")/dpdk-lib.sh"

dp_vm --app echo --queues 2
if [ "$DP_MQ_DAEMON" = 1 ]; then
	dp_daemon "$(realpath "$1")" queues=2,allow-unsealed=on
	echo "$vp_prog: through vhost-pcid (queues=2, backend=vp-vm)"
fi
dp_testpmd "queues=2" --rxq=2 --txq=2
(( (feat >> 22) & 1 )) || fail "MQ (bit 22) not negotiated: $feat"
echo "$vp_prog: link up, features $feat (MQ)"
dp_io_round
echo "$vp_prog: testpmd sent $tx, received $rx back"
dp_vm_end
for q in 0 1; do
	line=$(grep -o "queue pair $q: rx [0-9]* tx [0-9]*" "$work/vm.log")
	n=$(awk '{ print ($5 < $7) ? $5 : $7 }' <<<"$line")
	[ -n "$n" ] && [ "$n" -gt 0 ] || fail "queue pair $q did not carry frames both ways ('$line')"
	echo "$vp_prog: $line"
done
echo "$vp_prog: PASS"
