#!/bin/bash
# A stock QEMU 7.2 guest (TCG, Debian kernel, unmodified virtio_net) whose NIC has two
# queue pairs (-netdev vhost-user,queues=2, -device virtio-net-pci,mq=on; vectors=0, so
# the driver runs on INTx) on a vhost-user socket served by a vp-vm backend offering two
# pairs (--queues 2, tap app: frames to and from a host TAP). The guest
# (tests/guest/tests/mq.sh, with the host's ethtool in its image):
#   1. negotiates MQ (bit 22; the backend's link-up features have it too), sees two
#      combined channels (ethtool -l) and queues tx-0, tx-1;
#   2. starts with one pair (one online CPU), then ethtool -L combined 2: QEMU enables
#      rings 2 and 3 (SET_VRING_ENABLE), the backend's server logs pairs 0x3 (CHANGED);
#      with XPS on TX queue 1, every ping to the TAP is answered, counted on queue 1;
#   3. ethtool -L combined 1: QEMU disables pair 1, the server logs pairs 0x1 (were
#      0x3), and every ping is still answered, on queue 0.
# The backend's per-pair counters must show the guest's frames on both pairs. Under TCG
# the NIC has no MSI-X (run-guest.sh's vectors=0): virtio_net runs every queue on the
# one INTx line, and multiqueue works all the same.
# The run holds /tmp/vp-guest-boot.lock (one guest boot at a time).
#
#   tests/peers/qemu-mq.sh VHOST_PCID VHOST_PCI_CTL VP_VM   (as scripts/test.sh calls
#                                                          every peer; only VP_VM is used)
#
# Exits 77 with "SKIP: reason" when QEMU, the guest kernel or the host's ethtool cannot
# be had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-mq
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
mac=52:54:00:a1:b2:d8
# A subnet and TAP name of our own: other tests may run TAPs at once.
net=10.$((RANDOM % 200 + 20)).$((RANDOM % 250))
tap=vpmq$$

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/backend.log" ] && tail -12 "$work/backend.log" | sed 's/^/  backend: /'
	[ -f "$work/mq.log" ] && grep -ah "VPGUEST" "$work/mq.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (TAP device, memfd guests)"
command -v ethtool >/dev/null || skip "no ethtool on the host (apt-get install ethtool)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"

work=$(mktemp -d /tmp/vp-qemu-mq.XXXXXX)
gpid='' bpid=''
cleanup() {
	for p in $bpid $gpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ "${VP_KEEP_LOGS:-0}" = 1 ]; then echo "$vp_prog: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The image: the kit's, with the host's ethtool and its libraries.
tg_ethtool=1
tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$vm" --backend --listen "$work/be.sock" --app tap --tap "$tap" --tap-addr "$net.1/24" \
	--queues 2 --quiet --log-level info >"$work/backend.out" 2>"$work/backend.log" &
bpid=$!
for _ in $(seq 100); do [ -S "$work/be.sock" ] && break; sleep 0.1; done
[ -S "$work/be.sock" ] || fail "backend did not listen"

tg_lock
"$here/../guest/run-guest.sh" -t mq -n "$work/be.sock" --mac "$mac" --queues 2 \
	--initrd "$work/initrd.cpio" -e VP_MAC="$mac" -e VP_IP="$net.2/24" \
	-e VP_PEER="$net.1" -e VP_QUEUES=2 -e VP_COUNT=20 -T 400 --name mq -l "$work/mq.log" \
	>"$work/guest.out" 2>&1 &
gpid=$!
wait "$gpid"
rc=$?
gpid=''
grep -ah "VPGUEST: INFO" "$work/mq.log" | sed 's/^/  /'
[ "$rc" = 0 ] || { tail -25 "$work/guest.out"; fail "guest test failed (rc $rc)"; }

# The backend saw what the guest did: MQ negotiated, pair 1 enabled, then disabled.
f=$(grep -o 'link up: device.*features 0x[0-9a-f]*' "$work/backend.log" | tail -1 |
    grep -o '0x[0-9a-f]*$')
[ -n "$f" ] && [ $(((f >> 22) & 1)) = 1 ] || fail "the backend's link-up features lack MQ ($f)"
# The server's READY and CHANGED lines, in order: the pairs mask each time.
masks=$(grep -o 'ready (generation [0-9]*, queue pairs 0x[0-9a-f]*)\|queue pairs 0x[0-9a-f]* (were 0x[0-9a-f]*)' \
	"$work/backend.log" | grep -o 'pairs 0x[0-9a-f]*' | cut -d' ' -f2 | tr '\n' ' ')
echo "$vp_prog: backend's live queue pairs, in order: $masks"
[[ " $masks" =~ \ 0x3\ (.*\ )?0x1\  ]] ||
	fail "the backend did not see pair 1 enabled, then disabled (masks: $masks)"
# Its per-pair counters (the report at its end): the guest's pings came on pair 1, then on
# pair 0 (20 each at least); the TAP's answers went out on pair 0.
kill "$bpid"; wait "$bpid" 2>/dev/null; bpid=''
for q in 0 1; do
	line=$(grep -o "queue pair $q: rx [0-9]* tx [0-9]*" "$work/backend.out")
	echo "$vp_prog: backend's $line"
	n=$(awk '{ print $5 }' <<<"$line")
	[ -n "$n" ] && [ "$n" -ge 20 ] || fail "the backend received ${n:-no} frames on pair $q"
done
echo "$vp_prog: PASS"
