# Shared by the peer scripts that serve DPDK's dpdk-testpmd (net_virtio_user, a stock
# vhost-user frontend) from a vp-vm backend port: dpdk-packed.sh, dpdk-mq.sh. Set
# vp_prog and vm (the vp-vm binary), then source this file.
# shellcheck shell=bash

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	tail -25 "$work/vm.log" "$work/testpmd.log" 2>/dev/null
	exit 1
}

command -v dpdk-testpmd >/dev/null || skip "no dpdk-testpmd (tests/peers/dpdk-daemon.sh installs it)"
[ "$(id -u)" = 0 ] || skip "needs root (testpmd's runtime directory)"

work=$(mktemp -d "/tmp/vp-$vp_prog.XXXXXX")
prefix=vpd$$
vpid='' tpid='' dpid=''
dp_sock=$work/be.sock  # where testpmd connects: vp-vm, or a vhost-pcid in front of it
dp_cleanup() {
	[ -n "$tpid" ] && kill -KILL "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	exec 3>&- 2>/dev/null
	[ -n "${VP_KEEP_LOGS:-}" ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
	rm -rf "/var/run/dpdk/$prefix"
}
trap dp_cleanup EXIT

# dp_vm ARGS...: a vp-vm backend port on $work/be.sock running ARGS. testpmd's
# --no-huge memory is an unsealed memfd: the backend opts in.
dp_vm() {
	"$vm" --backend --listen "$work/be.sock" --allow-unsealed --mode irq --seconds 60 \
		--log-level info "$@" >"$work/vm.log" 2>&1 &
	vpid=$!
	for _ in $(seq 50); do [ -S "$work/be.sock" ] && break; sleep 0.1; done
	[ -S "$work/be.sock" ] || fail "vp-vm did not listen"
}

# dp_daemon VHOST_PCID SPEC...: vhost-pcid in front of vp-vm, serving $work/net0.sock with
# backend=$work/be.sock and SPEC; testpmd then connects to it.
dp_daemon() {
	local pcid=$1
	shift
	"$pcid" --server "path=$work/net0.sock,id=net0,backend=$work/be.sock,$*" \
		--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
	dpid=$!
	for _ in $(seq 50); do [ -S "$work/net0.sock" ] && break; sleep 0.1; done
	[ -S "$work/net0.sock" ] || fail "vhost-pcid did not listen"
	dp_sock=$work/net0.sock
}

# dp_testpmd VDEV_OPTIONS [TESTPMD_OPTIONS...]: testpmd on $dp_sock, commands on fd 3;
# then waits for vp-vm's link up and sets $feat to the features negotiated.
dp_testpmd() {
	local vdev=$1 line
	shift
	mkfifo "$work/cmd"
	nice -n 10 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci --file-prefix "$prefix" \
		--vdev "net_virtio_user0,path=$dp_sock,queue_size=256,$vdev" -- \
		-i --nb-cores=1 --total-num-mbufs=8192 "$@" <"$work/cmd" >"$work/testpmd.log" 2>&1 &
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
}

# io forwarding on one port for 2 s: what comes back is sent again, so a burst
# circulates. Sets $rx and $tx, testpmd's own counts (written at its exit).
dp_io_round() {
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
	rx=$(grep -A3 "Accumulated forward statistics" "$work/testpmd.log" |
		grep -o 'RX-packets: *[0-9]*' | head -1 | grep -o '[0-9]*$')
	tx=$(grep -A3 "Accumulated forward statistics" "$work/testpmd.log" |
		grep -o 'TX-packets: *[0-9]*' | head -1 | grep -o '[0-9]*$')
	[ -n "$rx" ] && [ "$rx" -gt 0 ] || fail "testpmd received nothing back (RX ${rx:-?}, TX ${tx:-?})"
}

# vp-vm saw the link go down cleanly, exits 0 with no broken ring and its app OK.
dp_vm_end() {
	for _ in $(seq 50); do grep -q "link down" "$work/vm.log" && break; sleep 0.1; done
	grep -q "link down (device 1): frontend" "$work/vm.log" || fail "no clean link down after testpmd quit"
	kill -TERM "$vpid"
	wait "$vpid" || fail "vp-vm exit status $?"
	vpid=''
	# (A reply to a frontend that hung up meanwhile fails with "Broken pipe": no ring.)
	grep -i "broken" "$work/vm.log" | grep -qv "Broken pipe" &&
		fail "a ring broke: $(grep -i broken "$work/vm.log" | grep -v -m1 "Broken pipe")"
	grep -q "result: OK" "$work/vm.log" || fail "vp-vm's echo did not report OK"
}
