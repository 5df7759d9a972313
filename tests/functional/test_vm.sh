#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Functional tests of the userspace VMs: real processes, real sockets.
#
#   test_vm.sh VP_VM VP_VSWITCH VP_DEMO
#
# Each case starts its VMs in a private directory, checks their JSON reports
# (one line each, --json) and kills whatever is left. Prints one line per
# case and a summary; exits 1 if any case failed.
set -u

VM=${1:?usage: test_vm.sh VP_VM VP_VSWITCH VP_DEMO}
VSW=${2:?}
DEMO=${3:?}
T=$(mktemp -d /tmp/vp-vm-test-XXXXXX)
pids=()
pass=0 fail=0 skip=0

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start a process in the background with its stdout/stderr in $T/NAME.{json,log}.
bg() { # NAME cmd...
	local name=$1; shift
	"$@" >"$T/$name.json" 2>"$T/$name.log" &
	pids+=($!)
	eval "pid_$name=$!"
}

# Wait for a background process (with a time limit); returns its status.
waitfor() { # NAME SECONDS
	local p t=0; p=$(eval echo "\$pid_$1")
	while kill -0 "$p" 2>/dev/null; do
		sleep 0.05; t=$((t + 1))
		if [ $t -gt $(($2 * 20)) ]; then
			echo "    $1 still running after $2 s: killing it" >&2
			kill -9 "$p" 2>/dev/null
		fi
	done
	wait "$p"
}

stop() { # NAME: SIGTERM and reap
	local p; p=$(eval echo "\$pid_$1")
	kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
	return 0
}

# A number or boolean from a one-line JSON report.
jget() { # FILE KEY
	grep -o "\"$2\":[^,}]*" "$1" 2>/dev/null | head -1 | cut -d: -f2
}

sock_wait() { # PATH
	local t=0
	while [ ! -S "$1" ] && [ $t -lt 100 ]; do sleep 0.02; t=$((t + 1)); done
}

failmsg=""
expect() { # DESCRIPTION FILE KEY VALUE
	local v; v=$(jget "$2" "$3")
	if [ "$v" != "$4" ]; then
		failmsg+="    $1: $3 is '${v}', want '$4' ($(basename "$2"))"$'\n'
	fi
}

run_case() { # NAME FUNCTION
	failmsg=""
	rm -f "$T"/*.sock "$T"/*.json "$T"/*.log
	local t0=$SECONDS
	"$2"
	# Every VM stopped: no sanitizer report in any log (ASan/UBSan builds).
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	pids=()
	if grep -l -E 'Sanitizer|runtime error:' "$T"/*.log >/dev/null 2>&1; then
		failmsg+="    sanitizer report in $(grep -l -E 'Sanitizer|runtime error:' "$T"/*.log | xargs -n1 basename)"$'\n'
	fi
	if [ -z "$failmsg" ] && [ "${skipped:-}" != yes ]; then
		pass=$((pass + 1)); echo "ok   $1 ($((SECONDS - t0)) s)"
	elif [ "${skipped:-}" = yes ]; then
		skip=$((skip + 1)); echo "skip $1: $skipmsg"; skipped=""
		return
	else
		fail=$((fail + 1)); echo "FAIL $1"
		printf '%s' "$failmsg"
		for f in "$T"/*.log "$T"/*.json; do
			[ -s "$f" ] || continue
			echo "    --- $(basename "$f")"; tail -5 "$f" | sed 's/^/    /'
		done
	fi
}

Q=(--json --quiet --log-level warn)

# ---- cases ----

t_help() {
	"$VM" --help | grep -q '^Usage: vp-vm' || failmsg+="    vp-vm --help"$'\n'
	"$VSW" --help | grep -q '^Usage: vp-vswitch' || failmsg+="    vp-vswitch --help"$'\n'
	"$DEMO" --help | grep -q '^Usage: vp-demo' || failmsg+="    vp-demo --help"$'\n'
	"$VM" chain --help >/dev/null || failmsg+="    vp-vm chain --help"$'\n'
	return 0
}

t_bad_options() {
	local args
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		"$VM" $args >"$T/out" 2>"$T/err"
		local rc=$?
		if [ $rc -ne 2 ] || ! grep -q '^vp-vm: ' "$T/err" || [ -s "$T/out" ]; then
			failmsg+="    vp-vm $args: exit $rc, stderr '$(head -1 "$T/err")'"$'\n'
		fi
	done <<'EOF'
--bogus
--backend --listen /x --app nope
--backend --listen /x --size 10
--backend --listen /x --size 100-60
--backend --listen /x --rate fast
--backend --listen /x --ram 3M
--backend --listen /x --ring 100
--backend --listen /x --mode sometimes
--backend --listen /x --burst 0
--backend
--frontend --listen /x
--backend --listen /x --vhost-user
--backend --listen /x --app fwd
--backend --listen /x --app sink --port2 listen=/x
--backend --listen /x --port2 what=ever --app fwd
--backend --listen /x --seconds -1
--backend --listen /x --app sink --tap t0
--backend --listen /x extra
--backend --listen
--backend --listen /x --app sink --tx-first 10
--backend --listen /x --app echo --tx-first lots
--backend --listen /x --features bogus
--backend --listen /x --features 0x1000000
--backend --listen /x --max-links 0
--backend --listen /x --max-links 33
--frontend --connect /x --test-bad-desc nope
--frontend --connect /x --test-bad-desc loop@x
--backend --listen /x --test-bad-desc loop
--backend --listen /x --coalesce 0,50
--backend --listen /x --coalesce 8,0
--backend --listen /x --coalesce 8
chain 1
chain 3 --app sink
EOF
	"$VSW" --bogus 2>/dev/null; [ $? -eq 2 ] || failmsg+="    vp-vswitch --bogus"$'\n'
	"$VSW" 2>/dev/null; [ $? -eq 2 ] || failmsg+="    vp-vswitch without --listen"$'\n'
	"$DEMO" --seconds x 2>/dev/null; [ $? -eq 2 ] || failmsg+="    vp-demo --seconds x"$'\n'
	return 0
}

# 100k frames each way, every byte verified, the device announced natively.
t_fe_to_be() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --count 100000 --size 64-1518 "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	expect "generator" "$T/gen.json" tx_packets 100000
	expect "generator" "$T/gen.json" ok true
	expect "sink" "$T/sink.json" received 100000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" reordered 0
	expect "sink" "$T/sink.json" ok true
}

# --queues 2 both sides: gen spreads 8 flows over the two pairs by a hash of each
# flow's stream (4 each), the sink checks every flow whole and in order, and
# that each came on the pair it hashes to; then the other way round.
t_multiqueue() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --queues 2 --ends 8 --seconds 20 \
		"${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --queues 2 --count 100000 \
		--size 64-1518 "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	expect "generator" "$T/gen.json" tx_packets 100000
	expect "generator" "$T/gen.json" ok true
	expect "sink" "$T/sink.json" received 100000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" reordered 0
	expect "sink" "$T/sink.json" wrong_queue 0
	expect "sink" "$T/sink.json" ok true
	for k in rx0 rx1; do
		[ "$(jget "$T/sink.json" $k)" -gt 20000 ] 2>/dev/null ||
			failmsg+="    sink: $k is '$(jget "$T/sink.json" $k)', want > 20000 (both pairs used)"$'\n'
	done
	bg gen2 "$VM" --backend --listen "$T/be2.sock" --app gen --queues 2 --count 50000 "${Q[@]}"
	sock_wait "$T/be2.sock"
	bg sink2 "$VM" --frontend --connect "$T/be2.sock" --app sink --queues 2 --ends 8 \
		--seconds 20 "${Q[@]}"
	waitfor gen2 20; waitfor sink2 20
	expect "backend generator" "$T/gen2.json" tx_packets 50000
	expect "frontend sink" "$T/sink2.json" received 50000
	expect "frontend sink" "$T/sink2.json" wrong_queue 0
	expect "frontend sink" "$T/sink2.json" ok true
}

t_be_to_fe() {
	bg gen "$VM" --backend --listen "$T/be.sock" --app gen --count 100000 --size 64-1518 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg sink "$VM" --frontend --connect "$T/be.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	expect "generator" "$T/gen.json" tx_packets 100000
	expect "sink" "$T/sink.json" received 100000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" ok true
}

# Zero copy is the default for gen and a frontend sink: the copying calls
# (--copy) and header-only frames (templates) must verify the same, and a
# backend gen with sizes on both sides of a lent buffer (2036 B) must keep
# order when a frame falls back to the copying path.
t_copy_and_zero_copy() {
	local dir args
	for dir in fe2be be2fe; do
		for args in "--copy --size 64-1518" "--verify header --size 64-1518" \
			    "--size 64-4000"; do
			rm -f "$T"/*.sock
			# shellcheck disable=SC2086
			if [ $dir = fe2be ]; then
				bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 20 $args "${Q[@]}"
				sock_wait "$T/be.sock"
				bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --count 50000 $args "${Q[@]}"
			else
				bg gen "$VM" --backend --listen "$T/be.sock" --app gen --count 50000 $args "${Q[@]}"
				sock_wait "$T/be.sock"
				bg sink "$VM" --frontend --connect "$T/be.sock" --app sink --ends 1 --seconds 20 $args "${Q[@]}"
			fi
			waitfor gen 20; waitfor sink 20
			expect "$dir $args: generator" "$T/gen.json" tx_packets 50000
			expect "$dir $args: sink" "$T/sink.json" received 50000
			expect "$dir $args: sink" "$T/sink.json" lost 0
			expect "$dir $args: sink" "$T/sink.json" corrupt 0
			expect "$dir $args: sink" "$T/sink.json" reordered 0
			expect "$dir $args: sink" "$T/sink.json" ok true
		done
	done
}

# Two echo VMs that each inject 500 frames keep 1000 circling (testpmd's
# 'start tx_first'); every frame sent by one is received by the other.
t_echo_loop() {
	bg be "$VM" --backend --listen "$T/be.sock" --app echo --tx-first 500 --seconds 3 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg fe "$VM" --frontend --connect "$T/be.sock" --app echo --tx-first 500 --seconds 2 "${Q[@]}"
	waitfor fe 10; waitfor be 10
	local ftx frx btx brx
	ftx=$(jget "$T/fe.json" tx_packets); frx=$(jget "$T/fe.json" rx_packets)
	btx=$(jget "$T/be.json" tx_packets); brx=$(jget "$T/be.json" rx_packets)
	if [ -z "$ftx" ] || [ -z "$btx" ] || [ "$frx" -lt 100000 ] || [ "$brx" -lt 100000 ]; then
		failmsg+="    loop too slow or dead: fe rx $frx tx $ftx, be rx $brx tx $btx"$'\n'
	# What one side sent, the other received, but for frames in flight.
	elif [ $((btx - frx)) -lt 0 ] || [ $((btx - frx)) -gt 1000 ] ||
	     [ $((ftx - brx)) -lt 0 ] || [ $((ftx - brx)) -gt 1000 ]; then
		failmsg+="    loop lost or made frames: fe rx $frx tx $ftx, be rx $brx tx $btx"$'\n'
	fi
}

# Interrupt mode both sides: a backend waiting for RX buffers must not miss
# the frontend's kick. The wait (then vmlib's vm_wait) once disarmed (and drained) the kick fds
# before sleeping, and every buffer posted in that gap cost a 20 ms timeout:
# 200k frames took ~7 s; they take well under a second now (pinned to two
# CPUs: unpinned, the gap is rarely hit).
t_irq_no_lost_wakeups() {
	bg gen "$VM" --backend --listen "$T/be.sock" --app gen --mode irq --cpu 1 --count 400000 --verify header "${Q[@]}"
	sock_wait "$T/be.sock"
	local t0; t0=$(date +%s%N)
	bg sink "$VM" --frontend --connect "$T/be.sock" --app sink --mode irq --cpu 0 --ring 1024 --ends 1 --seconds 20 --verify header "${Q[@]}"
	waitfor sink 20; waitfor gen 20
	local ms=$((($(date +%s%N) - t0) / 1000000))
	expect "sink" "$T/sink.json" received 400000
	expect "sink" "$T/sink.json" lost 0
	[ "$ms" -lt 5000 ] || failmsg+="    400k frames in irq mode took $ms ms (lost wake-ups?)"$'\n'
}

# A sink that stops taking frames must not keep a generator alive: it gives
# up 2 s after its end and reports.
t_gen_peer_stalls() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --mode poll "${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --seconds 1.5 --log-level warn --json --quiet
	sleep 0.7
	kill -STOP "$pid_sink"
	local t0=$SECONDS
	waitfor gen 10
	kill -CONT "$pid_sink"
	[ $((SECONDS - t0)) -le 6 ] || failmsg+="    generator took $((SECONDS - t0)) s to give up"$'\n'
	grep -q 'has not taken' "$T/gen.log" || failmsg+="    no warning about the stalled peer in gen.log"$'\n'
	[ -n "$(jget "$T/gen.json" tx_packets)" ] || failmsg+="    generator wrote no report"$'\n'
}

# Jumbo frames take several RX buffers (mergeable) and several TX slots.
t_jumbo_both_ways() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --count 20000 --size 1519-9000 "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	expect "fe->be sink" "$T/sink.json" received 20000
	expect "fe->be sink" "$T/sink.json" ok true
	rm -f "$T/be.sock"
	bg gen2 "$VM" --backend --listen "$T/be.sock" --app gen --count 20000 --size 1519-9000 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg sink2 "$VM" --frontend --connect "$T/be.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	waitfor gen2 20; waitfor sink2 20
	expect "be->fe sink" "$T/sink2.json" received 20000
	expect "be->fe sink" "$T/sink2.json" ok true
}

t_ping_echo() {
	bg echo "$VM" --backend --listen "$T/be.sock" --app echo "${Q[@]}"
	sock_wait "$T/be.sock"
	bg ping "$VM" --frontend --connect "$T/be.sock" --app ping --count 2000 "${Q[@]}"
	waitfor ping 20
	expect "ping" "$T/ping.json" pongs 2000
	expect "ping" "$T/ping.json" lost 0
	expect "ping" "$T/ping.json" ok true
	local p50; p50=$(jget "$T/ping.json" p50)
	[ "${p50:-0}" -gt 0 ] || failmsg+="    ping: no p50"$'\n'
	# A stream through the echo: the generator checks its own frames back.
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --count 50000 "${Q[@]}"
	waitfor gen 20
	expect "gen via echo" "$T/gen.json" received 50000
	expect "gen via echo" "$T/gen.json" lost 0
	expect "gen via echo" "$T/gen.json" ok true
	# Frames larger than a lent buffer take the echo's copy path, in order.
	bg gen2 "$VM" --frontend --connect "$T/be.sock" --app gen --count 20000 --size 64-9000 "${Q[@]}"
	waitfor gen2 20
	expect "jumbo gen via echo" "$T/gen2.json" received 20000
	expect "jumbo gen via echo" "$T/gen2.json" lost 0
	expect "jumbo gen via echo" "$T/gen2.json" reordered 0
	expect "jumbo gen via echo" "$T/gen2.json" ok true
	stop echo
}

# The vSwitch path: stock vhost-user frontends on a switch that copies twice.
t_vswitch() {
	bg vsw "$VSW" --listen "$T/vs.sock" --json --quiet --log-level warn
	sock_wait "$T/vs.sock"
	bg sink "$VM" --frontend --vhost-user --connect "$T/vs.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	bg gen "$VM" --frontend --vhost-user --connect "$T/vs.sock" --app gen --count 100000 --size 64-1518 "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	stop vsw
	expect "sink" "$T/sink.json" received 100000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" ok true
	expect "switch" "$T/vsw.json" fwd_packets 100001   # + the END frame
}

t_chain3() {
	"$VM" chain 3 --count 50000 --json --quiet >"$T/chain.json" 2>"$T/chain.log"
	local rc=$?
	[ $rc -eq 0 ] || failmsg+="    chain exit $rc"$'\n'
	expect "chain" "$T/chain.json" delivered 50000
	expect "chain" "$T/chain.json" lost 0
	expect "chain" "$T/chain.json" ok true
	# Forwarders receive into their TX slots; jumbo frames go around them.
	"$VM" chain 4 --count 20000 --size 64-9000 --json --quiet >"$T/chainj.json" 2>"$T/chainj.log"
	rc=$?
	[ $rc -eq 0 ] || failmsg+="    jumbo chain exit $rc"$'\n'
	expect "jumbo chain" "$T/chainj.json" delivered 20000
	expect "jumbo chain" "$T/chainj.json" lost 0
	expect "jumbo chain" "$T/chainj.json" ok true
	# Interrupt moderation on every link (irq): every frame, in order.
	"$VM" chain 4 --count 50000 --coalesce 32,50 --json --quiet >"$T/chainm.json" \
		2>"$T/chainm.log"
	rc=$?
	[ $rc -eq 0 ] || failmsg+="    moderated chain exit $rc"$'\n'
	expect "moderated chain" "$T/chainm.json" delivered 50000
	expect "moderated chain" "$T/chainm.json" lost 0
	expect "moderated chain" "$T/chainm.json" ok true
}

# A frontend VM survives its backend going away and comes back up when a
# new backend listens (a rebooted peer); the new backend gets verified data.
# After a backend restart under a running generator: it linked up twice and
# the new sink got a verified stream with the END frame.
restart_ok() { # GEN-JSON SINK-JSON [LABEL]
	local got l=${3:+$3 }
	expect "${l}generator" "$1" link_ups 2
	expect "${l}generator" "$1" ok true
	expect "${l}new sink" "$2" corrupt 0
	expect "${l}new sink" "$2" ends 1
	got=$(jget "$2" received)
	[ "${got:-0}" -gt 1000 ] || failmsg+="    ${l}new sink received only '${got}'"$'\n'
	return 0
}

t_backend_restart() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink "${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --seconds 3 --rate 200k "${Q[@]}"
	sleep 0.7
	stop sink
	rm -f "$T/be.sock"
	bg sink2 "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 10 "${Q[@]}"
	waitfor gen 15; waitfor sink2 15
	restart_ok "$T/gen.json" "$T/sink2.json"
}

# Packed rings with both ends ours: a frontend offering ring_packed over
# vhost-user to a backend port (which offers it by default) runs packed
# (bit 34 in the features both sides logged), frames verified both ways,
# jumbo ones across merged buffers, through a backend restart; a backend
# that does not offer it gets the same frontend on split rings.
PK=(--vhost-user --features mrg_rxbuf,event_idx,indirect_desc,ring_packed)
packed_bit() { # LOG: 1 if the "link up" line's features have VIRTIO_F_RING_PACKED
	local f; f=$(grep -o 'link up:.*features 0x[0-9a-f]*' "$1" | head -1 | grep -o '0x[0-9a-f]*$')
	[ -n "$f" ] && echo $(((f >> 34) & 1))
}
t_packed() {
	local QI=(--json --quiet --log-level info)
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 20 "${QI[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" "${PK[@]}" --app gen --count 100000 --size 64-1518 "${QI[@]}"
	waitfor gen 20; waitfor sink 20
	[ "$(packed_bit "$T/sink.log")" = 1 ] || failmsg+="    fe->be: backend did not log packed features"$'\n'
	[ "$(packed_bit "$T/gen.log")" = 1 ] || failmsg+="    fe->be: frontend did not log packed features"$'\n'
	expect "fe->be generator" "$T/gen.json" tx_packets 100000
	expect "fe->be sink" "$T/sink.json" received 100000
	expect "fe->be sink" "$T/sink.json" lost 0
	expect "fe->be sink" "$T/sink.json" corrupt 0
	expect "fe->be sink" "$T/sink.json" reordered 0
	expect "fe->be sink" "$T/sink.json" ok true

	rm -f "$T/be.sock"
	bg gen2 "$VM" --backend --listen "$T/be.sock" --app gen --count 50000 --size 64-9000 "${QI[@]}"
	sock_wait "$T/be.sock"
	bg sink2 "$VM" --frontend --connect "$T/be.sock" "${PK[@]}" --app sink --ends 1 --seconds 20 "${QI[@]}"
	waitfor gen2 20; waitfor sink2 20
	[ "$(packed_bit "$T/sink2.log")" = 1 ] || failmsg+="    be->fe: frontend did not log packed features"$'\n'
	expect "be->fe jumbo sink" "$T/sink2.json" received 50000
	expect "be->fe jumbo sink" "$T/sink2.json" lost 0
	expect "be->fe jumbo sink" "$T/sink2.json" corrupt 0
	expect "be->fe jumbo sink" "$T/sink2.json" ok true

	# The backend goes away mid-run and a new one comes: the frontend
	# reconnects on fresh packed rings.
	rm -f "$T/be.sock"
	bg sink3 "$VM" --backend --listen "$T/be.sock" --app sink "${QI[@]}"
	sock_wait "$T/be.sock"
	bg gen3 "$VM" --frontend --connect "$T/be.sock" "${PK[@]}" --app gen --seconds 3 --rate 200k "${QI[@]}"
	sleep 0.7
	stop sink3
	rm -f "$T/be.sock"
	bg sink4 "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 10 "${QI[@]}"
	waitfor gen3 15; waitfor sink4 15
	[ "$(packed_bit "$T/sink4.log")" = 1 ] || failmsg+="    restart: new backend did not log packed features"$'\n'
	restart_ok "$T/gen3.json" "$T/sink4.json" restart

	# A backend without ring_packed: the frontend falls back to split rings.
	rm -f "$T/be.sock"
	bg sink5 "$VM" --backend --listen "$T/be.sock" --features mrg_rxbuf,event_idx,indirect_desc --app sink --ends 1 --seconds 20 "${QI[@]}"
	sock_wait "$T/be.sock"
	bg gen5 "$VM" --frontend --connect "$T/be.sock" "${PK[@]}" --app gen --count 50000 --size 64-1518 "${QI[@]}"
	waitfor gen5 20; waitfor sink5 20
	[ "$(packed_bit "$T/sink5.log")" = 0 ] || failmsg+="    split fallback: features have packed ('$(packed_bit "$T/sink5.log")')"$'\n'
	expect "split fallback sink" "$T/sink5.json" received 50000
	expect "split fallback sink" "$T/sink5.json" lost 0
	expect "split fallback sink" "$T/sink5.json" corrupt 0
	expect "split fallback sink" "$T/sink5.json" ok true
	return 0
}

# SIGTERM: a report line and a clean exit.
t_sigterm_report() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink "${Q[@]}"
	sock_wait "$T/be.sock"
	stop sink
	expect "sink after SIGTERM" "$T/sink.json" ok true
	[ ! -e "$T/be.sock" ] || failmsg+="    socket file left behind"$'\n'
	return 0
}

t_demo_quick() {
	"$DEMO" --quick --keep >"$T/demo.out" 2>"$T/demo.log"
	local rc=$? dir
	[ $rc -eq 0 ] || failmsg+="    vp-demo --quick exit $rc"$'\n'"$(tail -20 "$T/demo.out")"$'\n'
	grep -q -- '-> PASS' "$T/demo.out" || failmsg+="    no PASS line"$'\n'
	dir=$(sed -n 's/.*kept in \(\/tmp\/vp-demo-[A-Za-z0-9]*\).*/\1/p' "$T/demo.out")
	if [ -n "$dir" ] && [ -d "$dir" ]; then
		# the children's logs: no sanitizer reports there either
		cat "$dir"/*.log >>"$T/demo-children.log" 2>/dev/null
		rm -rf "$dir"
	else
		failmsg+="    no kept directory reported"$'\n'
	fi
	return 0
}

# Ctrl-C in the middle: exit 130, every child reaped, temporary directory gone.
t_demo_interrupt() {
	local dir
	"$DEMO" --seconds 2 >"$T/demo.out" 2>"$T/demo.log" &
	local p=$!
	pids+=($p)
	sleep 1.5
	# Our demo's directory, from its own children's command lines: another
	# test run on the machine may have a /tmp/vp-demo-* of its own.
	dir=$(pgrep -P $p -a | grep -o '/tmp/vp-demo-[A-Za-z0-9]*' | head -1)
	kill -INT $p
	wait $p
	local rc=$?
	[ $rc -eq 130 ] || failmsg+="    exit $rc after SIGINT, want 130"$'\n'
	[ -n "$dir" ] || failmsg+="    could not see the demo's directory"$'\n'
	if [ -n "$dir" ]; then
		[ ! -e "$dir" ] || failmsg+="    $dir left behind"$'\n'
		sleep 0.2
		pgrep -f "$dir" >/dev/null && failmsg+="    children still running: $(pgrep -af "$dir")"$'\n'
	fi
	return 0
}

# A backend drives as many devices as its server admits (32), not 8.
t_many_frontends() {
	local i n=32
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends $n --seconds 60 --mode irq \
		"${Q[@]}"
	sock_wait "$T/be.sock"
	for i in $(seq $n); do
		bg "g$i" "$VM" --frontend --connect "$T/be.sock" --app gen --count 1000 --rate 5000 \
			--mode irq --ram 4M --name "g$i" "${Q[@]}"
	done
	for i in $(seq $n); do waitfor "g$i" 60; done
	waitfor sink 60
	expect "sink" "$T/sink.json" received $((n * 1000))
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" ends $n
	expect "sink" "$T/sink.json" ok true
	grep -q refusing "$T/sink.log" && failmsg+="    the backend refused a device"$'\n'
	return 0
}

# --max-links 2: the third frontend is refused with the reason before its
# handshake (so nothing it sends is lost), retries, and gets the link that
# the first one to finish leaves.
t_max_links() {
	local i
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 3 --seconds 30 --mode irq \
		--max-links 2 "${Q[@]}"
	sock_wait "$T/be.sock"
	for i in 1 2 3; do
		bg "g$i" "$VM" --frontend --connect "$T/be.sock" --app gen --count 20000 --rate 20000 \
			--mode irq --ram 4M --name "g$i" "${Q[@]}"
	done
	for i in 1 2 3; do waitfor "g$i" 30; expect "g$i" "$T/g$i.json" tx_packets 20000; done
	waitfor sink 30
	expect "sink" "$T/sink.json" received 60000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" ok true
	grep -q "backend full: 2 of 2 links in use" "$T"/g[123].log ||
		failmsg+="    no frontend was told 'backend full: 2 of 2 links in use'"$'\n'
	return 0
}

# Offloads: a frontend negotiating CSUM/GUEST_CSUM is served by default; a
# backend told --features without them refuses it, saying why.
t_offload_features() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 20 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg gen "$VM" --frontend --connect "$T/be.sock" --app gen --count 20000 --size 64-1518 \
		--features csum,guest_csum,mrg_rxbuf,event_idx,indirect_desc "${Q[@]}"
	waitfor gen 20; waitfor sink 20
	expect "csum frontend" "$T/sink.json" received 20000
	expect "csum frontend" "$T/sink.json" ok true
	rm -f "$T"/*.sock
	bg be2 "$VM" --backend --listen "$T/be2.sock" --app sink --seconds 5 --features mrg_rxbuf \
		"${Q[@]}"
	sock_wait "$T/be2.sock"
	bg gen2 "$VM" --frontend --connect "$T/be2.sock" --app gen --count 100 --features csum \
		--connect-timeout 1 "${Q[@]}"
	waitfor gen2 20
	[ $? -ne 0 ] || failmsg+="    gen2 succeeded against a backend without csum"$'\n'
	grep -q "does not support" "$T/gen2.log" ||
		failmsg+="    gen2 was not told why: $(tail -1 "$T/gen2.log")"$'\n'
	stop be2
}

# --allow-unsealed: a frontend that truncates its RAM mid-traffic costs only
# its own link. The backend's SIGBUS guard repairs the fault; it logs why the
# link went down, keeps verifying a second frontend's stream and exits 0
# (not 135). --test-truncate-ram-after is vp-vm's test hook (docs/vp-vm.md).
t_unsealed_truncated() {
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --allow-unsealed --ends 1 \
		--seconds 20 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg good "$VM" --frontend --connect "$T/be.sock" --app gen --count 60000 --rate 20000 \
		--name good "${Q[@]}"
	sleep 0.3
	bg bad "$VM" --frontend --connect "$T/be.sock" --app gen --seconds 10 --rate 20000 \
		--name bad --test-truncate-ram-after 2000 "${Q[@]}"
	waitfor bad 20
	waitfor good 20
	waitfor sink 20
	local rc=$? got
	[ $rc -eq 0 ] || failmsg+="    backend exit $rc, want 0 (135: killed by SIGBUS)"$'\n'
	grep -q 'RAM truncated' "$T/bad.log" || failmsg+="    the bad frontend did not truncate"$'\n'
	grep -q 'frontend memory shrank under us (truncated)' "$T/sink.log" ||
		failmsg+="    backend did not say why the link went down"$'\n'
	expect "good generator" "$T/good.json" tx_packets 60000
	expect "good generator" "$T/good.json" ok true
	expect "sink" "$T/sink.json" link_downs 1
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" ends 1
	expect "sink" "$T/sink.json" ok true
	got=$(jget "$T/sink.json" received)
	[ "${got:-0}" -ge 60000 ] || failmsg+="    sink received only '${got}' (want the good 60000 and more)"$'\n'
	return 0
}

# A hostile frontend process (vp-vm's test hook --test-bad-desc, docs/vp-vm.md): after 500
# frames it posts one bad TX chain (an address outside its memory, a descriptor loop, a
# length past its RAM) and holds the link. The backend drops only that device with the
# reason, the frontend is told it in ERROR, and a good frontend's stream is not touched.
t_bad_desc() {
	local k why
	bg sink "$VM" --backend --listen "$T/be.sock" --app sink --ends 1 --seconds 30 "${Q[@]}"
	sock_wait "$T/be.sock"
	bg good "$VM" --frontend --connect "$T/be.sock" --app gen --count 60000 --rate 20000 \
		--name good "${Q[@]}"
	for k in range loop len; do
		case $k in
		range | len) why="outside guest memory" ;;
		loop) why="loop?" ;;
		esac
		bg "bad_$k" "$VM" --frontend --connect "$T/be.sock" --app gen --seconds 60 \
			--rate 5000 --name "bad_$k" --test-bad-desc "$k@500" --log-level info \
			--json --quiet
		local t=0
		until grep -q "server reports error.*$why" "$T/bad_$k.log" || [ $t -ge 200 ]; do
			sleep 0.05; t=$((t + 1))
		done
		grep -q "posted a bad TX chain ($k) after 5[0-9][0-9] frames" "$T/bad_$k.log" ||
			failmsg+="    $k: the hook did not fire: $(tail -1 "$T/bad_$k.log")"$'\n'
		grep -q "server reports error.*TX ring broken.*$why" "$T/bad_$k.log" ||
			failmsg+="    $k: the hostile frontend was not told '$why'"$'\n'
		grep -q "dropping frontend: frontend's TX ring broken: .*$why" "$T/sink.log" ||
			failmsg+="    $k: the backend did not say why it dropped the device"$'\n'
		kill -0 "$pid_sink" 2>/dev/null || failmsg+="    $k: the backend died"$'\n'
		stop "bad_$k"
		expect "bad_$k" "$T/bad_$k.json" ok false
	done
	waitfor good 30
	waitfor sink 30
	expect "good generator" "$T/good.json" tx_packets 60000
	expect "sink" "$T/sink.json" lost 0
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" ends 1
	expect "sink" "$T/sink.json" ok true
	return 0
}

# One TAP per link: a backend tap VM with two frontends makes NAME for link 0
# and NAME1 for link 1, and each frontend's frames reach its own TAP only
# (before, every link but the first was dropped without a word).
t_tap_per_link() {
	local tb="vpt$$" a b
	if [ ! -c /dev/net/tun ] || [ "$(id -u)" != 0 ]; then
		skipped=yes skipmsg="needs /dev/net/tun and root"
		return 0
	fi
	bg tap "$VM" --backend --listen "$T/be.sock" --app tap --tap "$tb" --seconds 20 \
		--mode irq "${Q[@]}"
	sock_wait "$T/be.sock"
	bg g1 "$VM" --frontend --connect "$T/be.sock" --app gen --count 3000 --rate 1000 \
		--ram 4M --name g1 "${Q[@]}"
	# g1 holds link 0 once its frames reach the first TAP; g2 then gets link 1.
	for _ in $(seq 100); do
		[ "$(cat "/sys/class/net/$tb/statistics/rx_packets" 2>/dev/null)" -gt 0 ] 2>/dev/null &&
			break
		sleep 0.05
	done
	bg g2 "$VM" --frontend --connect "$T/be.sock" --app gen --count 700 --rate 3000 \
		--ram 4M --name g2 "${Q[@]}"
	waitfor g2 20
	waitfor g1 20
	a=$(cat "/sys/class/net/$tb/statistics/rx_packets" 2>/dev/null)
	b=$(cat "/sys/class/net/${tb}1/statistics/rx_packets" 2>/dev/null)
	[ -n "$a" ] || failmsg+="    no TAP $tb for link 0"$'\n'
	[ -n "$b" ] || failmsg+="    no TAP ${tb}1 for link 1"$'\n'
	# Each TAP got its own frontend's frames (and its END marker), nothing of the other's.
	[ "${a:-0}" -ge 3001 ] && [ "${a:-0}" -le 3010 ] ||
		failmsg+="    $tb received '${a}' frames, want g1's 3000 and its END"$'\n'
	[ "${b:-0}" -ge 701 ] && [ "${b:-0}" -le 710 ] ||
		failmsg+="    ${tb}1 received '${b}' frames, want g2's 700 and its END"$'\n'
	stop tap
	return 0
}

# 2.1 peers (docs/window21.md): a million frames of random sizes each way,
# every byte verified; one peer serves the pair broker, the other joins.
t_pair21_million_each_way() {
	bg sink "$VM" --pair21-serve "$T/p21.sock" --app sink --ends 1 --seconds 60 "${Q[@]}"
	sock_wait "$T/p21.sock"
	bg gen "$VM" --pair21 "$T/p21.sock" --app gen --count 1000000 --size 64-1518 "${Q[@]}"
	waitfor gen 60; waitfor sink 60
	expect "joining generator" "$T/gen.json" tx_packets 1000000
	expect "joining generator" "$T/gen.json" ok true
	expect "serving sink" "$T/sink.json" received 1000000
	expect "serving sink" "$T/sink.json" lost 0
	expect "serving sink" "$T/sink.json" corrupt 0
	expect "serving sink" "$T/sink.json" reordered 0
	expect "serving sink" "$T/sink.json" ok true
	rm -f "$T/p21.sock"
	bg gen2 "$VM" --pair21-serve "$T/p21.sock" --app gen --count 1000000 --size 64-1518 \
		--connect-timeout 20 "${Q[@]}"
	sock_wait "$T/p21.sock"
	bg sink2 "$VM" --pair21 "$T/p21.sock" --app sink --ends 1 --seconds 60 "${Q[@]}"
	waitfor gen2 60; waitfor sink2 60
	expect "serving generator" "$T/gen2.json" tx_packets 1000000
	expect "serving generator" "$T/gen2.json" ok true
	expect "joining sink" "$T/sink2.json" received 1000000
	expect "joining sink" "$T/sink2.json" lost 0
	expect "joining sink" "$T/sink2.json" corrupt 0
	expect "joining sink" "$T/sink2.json" reordered 0
	expect "joining sink" "$T/sink2.json" ok true
	return 0
}

# Kill one peer and start another: traffic resumes. First the joining
# generator (the serving sink keeps its half and resyncs to the new epoch),
# then the serving sink (the generator rejoins the new broker's window).
t_pair21_restart() {
	local got
	bg sink "$VM" --pair21-serve "$T/p21.sock" --app sink --seconds 30 "${Q[@]}"
	sock_wait "$T/p21.sock"
	bg gen "$VM" --pair21 "$T/p21.sock" --app gen --seconds 30 --rate 100k "${Q[@]}"
	sleep 0.7
	kill -9 "$pid_gen"; wait "$pid_gen" 2>/dev/null
	bg gen2 "$VM" --pair21 "$T/p21.sock" --app gen --seconds 1 --rate 100k "${Q[@]}"
	waitfor gen2 15
	expect "second generator" "$T/gen2.json" ok true
	expect "second generator" "$T/gen2.json" link_ups 1
	stop sink
	expect "sink" "$T/sink.json" corrupt 0
	expect "sink" "$T/sink.json" link_ups 2
	got=$(jget "$T/sink.json" received)
	[ "${got:-0}" -gt 100000 ] || failmsg+="    sink received only '${got}' from two generators"$'\n'
	rm -f "$T/p21.sock"
	bg sink2 "$VM" --pair21-serve "$T/p21.sock" --app sink "${Q[@]}"
	sock_wait "$T/p21.sock"
	bg gen3 "$VM" --pair21 "$T/p21.sock" --app gen --seconds 3 --rate 100k "${Q[@]}"
	sleep 0.7
	stop sink2
	rm -f "$T/p21.sock"
	bg sink3 "$VM" --pair21-serve "$T/p21.sock" --app sink --ends 1 --seconds 10 "${Q[@]}"
	waitfor gen3 15; waitfor sink3 15
	restart_ok "$T/gen3.json" "$T/sink3.json"
}

run_case help t_help
run_case bad-options t_bad_options
run_case frontend-to-backend-100k t_fe_to_be
run_case backend-to-frontend-100k t_be_to_fe
run_case multiqueue-two-pairs t_multiqueue
run_case copy-and-zero-copy t_copy_and_zero_copy
run_case echo-loop-tx-first t_echo_loop
run_case gen-peer-stalls t_gen_peer_stalls
run_case irq-no-lost-wakeups t_irq_no_lost_wakeups
run_case jumbo-both-ways t_jumbo_both_ways
run_case ping-and-echo t_ping_echo
run_case vswitch-path t_vswitch
run_case chain-of-3 t_chain3
run_case backend-restart t_backend_restart
run_case packed-rings-both-ends-ours t_packed
run_case many-frontends-one-backend t_many_frontends
run_case max-links-refuse-then-attach t_max_links
run_case offload-features t_offload_features
run_case unsealed-frontend-truncates-its-ram t_unsealed_truncated
run_case hostile-frontend-bad-descriptors t_bad_desc
run_case tap-per-link t_tap_per_link
run_case sigterm-report t_sigterm_report
run_case demo-quick t_demo_quick
run_case demo-interrupt t_demo_interrupt
run_case pair21-million-each-way t_pair21_million_each_way
run_case pair21-restart t_pair21_restart

echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
