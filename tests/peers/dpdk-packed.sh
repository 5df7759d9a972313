#!/bin/bash
# DPDK's dpdk-testpmd with net_virtio_user,packed_vq=1 (a stock vhost-user frontend on
# packed virtqueues) against a vp-vm backend port running the echo app: the link
# negotiates VIRTIO_F_RING_PACKED, and frames testpmd sends come back to it through
# the backend's packed walker. (vhost-pcid never offers packed rings: its backend-VM
# paths carry split positions only; a vp_port backend does.)
#
#   tests/peers/dpdk-packed.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" without dpdk-testpmd, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=dpdk-packed
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
. "$(dirname "$0")/dpdk-lib.sh"

dp_vm --app echo
dp_testpmd "queues=1,packed_vq=1"
(( (feat >> 34) & 1 )) || fail "RING_PACKED (bit 34) not negotiated: $feat"
echo "$vp_prog: link up, features $feat (RING_PACKED)"
dp_io_round
echo "$vp_prog: testpmd sent $tx, received $rx back over packed rings"
dp_vm_end
echo "$vp_prog: vp-vm echoed $(grep -o 'rx [0-9]* packets' "$work/vm.log")"
echo "$vp_prog: PASS"
