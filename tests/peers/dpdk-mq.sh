#!/bin/bash
# DPDK's dpdk-testpmd with net_virtio_user,queues=2 (a stock vhost-user frontend with
# two queue pairs) against a vp-vm backend port offering two pairs (--queues 2) and
# running the echo app, which answers each frame on the pair it came on. testpmd
# forwards (io) on both RX/TX queues, so frames circulate on each pair; the backend's
# per-pair counters must show traffic on both pairs, and testpmd's own per-queue
# counters must too. MQ (VIRTIO_NET_F_MQ, bit 22) must be negotiated.
#
#   tests/peers/dpdk-mq.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" without dpdk-testpmd, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=dpdk-mq
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	tail -25 "$work/vm.log" "$work/testpmd.log" 2>/dev/null
	exit 1
}

command -v dpdk-testpmd >/dev/null || skip "no dpdk-testpmd (tests/peers/dpdk-daemon.sh installs it)"
[ "$(id -u)" = 0 ] || skip "needs root (testpmd's runtime directory)"

work=$(mktemp -d /tmp/vp-dpdk-mq.XXXXXX)
prefix=vpdm$$
vpid='' tpid=''
cleanup() {
	[ -n "$tpid" ] && kill -KILL "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
	exec 3>&- 2>/dev/null
	[ -n "${VP_KEEP_LOGS:-}" ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
	rm -rf "/var/run/dpdk/$prefix"
}
trap cleanup EXIT

# testpmd's --no-huge memory is an unsealed memfd: the backend opts in.
"$vm" --backend --listen "$work/be.sock" --app echo --queues 2 --allow-unsealed --mode irq \
	--seconds 60 --log-level info >"$work/vm.log" 2>&1 &
vpid=$!
for _ in $(seq 50); do [ -S "$work/be.sock" ] && break; sleep 0.1; done
[ -S "$work/be.sock" ] || fail "vp-vm did not listen"

mkfifo "$work/cmd"
nice -n 10 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci --file-prefix "$prefix" \
	--vdev "net_virtio_user0,path=$work/be.sock,queues=2,queue_size=256" -- \
	-i --nb-cores=1 --rxq=2 --txq=2 --total-num-mbufs=8192 <"$work/cmd" \
	>"$work/testpmd.log" 2>&1 &
tpid=$!
exec 3>"$work/cmd"

for _ in $(seq 300); do
	grep -q "link up" "$work/vm.log" && break
	kill -0 "$tpid" 2>/dev/null || fail "testpmd exited"
	sleep 0.1
done
line=$(grep -m1 "link up" "$work/vm.log") || fail "no link up in vp-vm"
feat=$(grep -o 'features 0x[0-9a-f]*' <<<"$line" | head -1 | cut -d' ' -f2)
[ -n "$feat" ] || fail "no features in '$line'"
(( (feat >> 22) & 1 )) || fail "MQ (bit 22) not negotiated: $feat"
echo "$vp_prog: link up, features $feat (MQ)"

# io forwarding: what comes back on a queue is sent again on it, on both queues.
echo "set fwd io" >&3
echo "start tx_first" >&3
sleep 2
echo "stop" >&3
echo "quit" >&3
exec 3>&-
for _ in $(seq 100); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$tpid" 2>/dev/null && fail "testpmd did not quit"
wait "$tpid"
tpid=''
rx=$(grep -A3 "Accumulated forward statistics" "$work/testpmd.log" | grep -o 'RX-packets: *[0-9]*' |
	head -1 | grep -o '[0-9]*$')
[ -n "$rx" ] && [ "$rx" -gt 0 ] || fail "testpmd received nothing back (RX ${rx:-?})"
echo "$vp_prog: testpmd received $rx back"

for _ in $(seq 50); do grep -q "link down" "$work/vm.log" && break; sleep 0.1; done
kill -TERM "$vpid"
wait "$vpid" || fail "vp-vm exit status $?"
vpid=''
grep -qi "broken" "$work/vm.log" && fail "a ring broke: $(grep -i -m1 broken "$work/vm.log")"
grep -q "result: OK" "$work/vm.log" || fail "vp-vm's echo did not report OK"
for q in 0 1; do
	n=$(grep -o "queue pair $q: rx [0-9]*" "$work/vm.log" | grep -o '[0-9]*$')
	[ -n "$n" ] && [ "$n" -gt 0 ] || fail "no frames on queue pair $q (${n:-no count})"
	echo "$vp_prog: $(grep -o "queue pair $q: .*" "$work/vm.log")"
done
echo "$vp_prog: PASS"
