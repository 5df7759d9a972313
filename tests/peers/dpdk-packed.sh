#!/bin/bash
# DPDK's dpdk-testpmd with net_virtio_user,packed_vq=1 (a stock vhost-user frontend on
# packed virtqueues) against a vp-vm backend port running the echo app: the link
# negotiates VIRTIO_F_RING_PACKED, and frames testpmd sends come back to it through
# the backend's packed walker. Run twice: testpmd straight on vp-vm, then on vhost-pcid
# (features= with RING_PACKED, backend=vp-vm) relaying the device over the native
# handshake (1.1: packed positions in the STOP ack). There testpmd closes its port after
# a first round and attaches a second one on the same socket: frames must flow both ways
# in both rounds, and no packed position may be lost. (testpmd's port stop/start does
# not stop a virtio-user device's rings: the stop/resume at acked positions is
# tests/daemon's packed_relay_resumes_at_acked_positions.)
#
#   tests/peers/dpdk-packed.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" without dpdk-testpmd, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=dpdk-packed
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
if [ -z "${DP_PK_DAEMON:-}" ]; then  # the two runs, each in a process of its own
	DP_PK_DAEMON=0 "$0" "$@" || exit $?
	DP_PK_DAEMON=1 exec "$0" "$@"
fi
[ "$DP_PK_DAEMON" = 1 ] && vp_prog=dpdk-packed-daemon
. "$(dirname "$0")/dpdk-lib.sh"

# The default set (VERSION_1, PROTOCOL_FEATURES, MRG_RXBUF, EVENT_IDX, INDIRECT_DESC)
# and RING_PACKED (bit 34): vhost-pcid offers packed rings only when asked.
pk_features=0x570008000

dp_vm --app echo
if [ "$DP_PK_DAEMON" = 1 ]; then
	dp_daemon "$(realpath "$1")" "allow-unsealed=on,features=$pk_features"
	echo "$vp_prog: through vhost-pcid (features=$pk_features, backend=vp-vm)"
fi
dp_testpmd "queues=1,packed_vq=1"
(( (feat >> 34) & 1 )) || fail "RING_PACKED (bit 34) not negotiated: $feat"
echo "$vp_prog: link up, features $feat (RING_PACKED)"
if [ "$DP_PK_DAEMON" = 1 ]; then
	# Round 1 on port 0, then round 2 on a port attached anew on the same socket.
	echo "set fwd io" >&3
	echo "start tx_first" >&3
	sleep 2
	echo "stop" >&3
	# Closing the port resets the device, and the relay has vp-vm ack a STOP (its
	# positions come with the ack); then a second device, served from fresh rings.
	echo "port stop 0" >&3
	echo "port close 0" >&3
	for _ in $(seq 100); do
		grep -q "link down (device 1)" "$work/vm.log" && break
		sleep 0.1
	done
	echo "port attach net_virtio_user1,path=$dp_sock,queue_size=256,queues=1,packed_vq=1" >&3
	echo "port start 0" >&3  # the id is free again
	for _ in $(seq 100); do
		[ "$(grep -c "link up: device" "$work/vm.log")" -ge 2 ] && break
		sleep 0.1
	done
	[ "$(grep -c "link up: device" "$work/vm.log")" -ge 2 ] ||
		fail "vp-vm did not get testpmd's second port"
fi
dp_io_round
if [ "$DP_PK_DAEMON" = 1 ]; then
	# One statistics block per "stop": the first is round 1, the last round 2.
	stats=$(grep -A3 "Accumulated forward statistics" "$work/testpmd.log" |
		grep -o 'RX-packets: *[0-9]*' | grep -o '[0-9]*$' | tr '\n' ' ')
	read -r rx1 _ <<<"$stats"
	[ -n "$rx1" ] && [ "$rx1" -gt 0 ] || fail "round 1 received nothing back ($stats)"
	rx2=$(awk '{ print $NF }' <<<"$stats")
	[ "$(wc -w <<<"$stats")" -ge 2 ] && [ "$rx2" -gt 0 ] ||
		fail "round 2 (after the reset) received nothing back ($stats)"
	echo "$vp_prog: RX per round: $stats"
	grep -q "where its packed rings stopped is lost" "$work/daemon.log" &&
		fail "vhost-pcid lost the packed positions"
fi
echo "$vp_prog: testpmd sent $tx, received $rx back over packed rings"
dp_vm_end
echo "$vp_prog: vp-vm echoed $(grep -o 'rx [0-9]* packets' "$work/vm.log")"
echo "$vp_prog: PASS"
