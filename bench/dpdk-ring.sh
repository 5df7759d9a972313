#!/bin/bash
# Split beside packed virtqueues through the real path: DPDK testpmd's net_virtio_user
# (packed_vq=0, then 1) io-forwards a circulating burst through a vp-vm backend port
# running the echo app (tests/peers/dpdk-packed.sh is the pass/fail version). Prints the
# frames testpmd got back per second, per run and layout. Both processes share the
# machine's cores as they come (testpmd at nice 10 on core 0): compare the two layouts
# of one invocation, not figures across machines.
#
#   bench/dpdk-ring.sh VP_VM [SECONDS] [RUNS]      (root, dpdk-testpmd installed)
set -uo pipefail
vm=$(realpath "${1:?usage: $0 VP_VM [SECONDS] [RUNS]}")
secs=${2:-3}
runs=${3:-2}
command -v dpdk-testpmd >/dev/null || { echo "dpdk-ring: no dpdk-testpmd"; exit 77; }

work=$(mktemp -d /tmp/vp-dpdk-ring.XXXXXX)
prefix=vpdr$$
vpid='' tpid=''
cleanup() {
	[ -n "$tpid" ] && kill -KILL "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
	exec 3>&- 2>/dev/null
	rm -rf "$work" "/var/run/dpdk/$prefix"
}
trap cleanup EXIT

# One run: prints "<frames back per second> <features>", or nothing on failure.
run() {
	local packed=$1 rx feat
	rm -f "$work/be.sock" "$work/cmd"
	"$vm" --backend --listen "$work/be.sock" --app echo --allow-unsealed --mode irq \
		--log-level info >"$work/vm.log" 2>&1 &
	vpid=$!
	for _ in $(seq 50); do [ -S "$work/be.sock" ] && break; sleep 0.1; done
	mkfifo "$work/cmd"
	nice -n 10 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci --file-prefix "$prefix" \
		--vdev "net_virtio_user0,path=$work/be.sock,queues=1,queue_size=256,packed_vq=$packed" \
		-- -i --nb-cores=1 --total-num-mbufs=8192 <"$work/cmd" >"$work/testpmd.log" 2>&1 &
	tpid=$!
	exec 3>"$work/cmd"
	for _ in $(seq 300); do grep -q "link up" "$work/vm.log" && break; sleep 0.1; done
	feat=$(grep -m1 -o 'features 0x[0-9a-f]*' "$work/vm.log" | cut -d' ' -f2)
	printf 'set fwd io\nstart tx_first\n' >&3
	sleep "$secs"
	printf 'stop\nquit\n' >&3
	exec 3>&-
	wait "$tpid"
	tpid=''
	kill "$vpid" 2>/dev/null
	wait "$vpid" 2>/dev/null
	vpid=''
	rm -rf "/var/run/dpdk/$prefix"
	rx=$(grep -A3 "Accumulated forward statistics" "$work/testpmd.log" |
		grep -o 'RX-packets: *[0-9]*' | head -1 | grep -o '[0-9]*$')
	[ -n "$rx" ] && [ -n "$feat" ] && echo "$((rx / secs)) $feat"
}

echo "dpdk-ring: testpmd io-fwd <-> vp-vm echo, 64 B, ring 256, ${secs} s per run"
for r in $(seq "$runs"); do
	for packed in 0 1; do
		read -r pps feat < <(run "$packed") || { echo "dpdk-ring: run failed"; exit 1; }
		layout=split
		(( (feat >> 34) & 1 )) && layout=packed
		[ "$packed" = 1 ] && [ "$layout" != packed ] && { echo "dpdk-ring: packed not negotiated"; exit 1; }
		printf '  run %d  %-6s  %6.3f Mpps back  (features %s)\n' "$r" "$layout" \
			"$(echo "$pps / 1000000" | bc -l)" "$feat"
	done
done
