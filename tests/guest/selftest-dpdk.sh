#!/bin/bash
# Self-test of the guest kit against a stock vhost-user backend: DPDK testpmd's vhost PMD
# (a stand-in for the vhost-pci daemon).
#
#   tests/guest/selftest-dpdk.sh
#
#   1. one guest on a one-port testpmd (io forwarding reflects every frame):
#      virtio-net-up with VP_EXPECT_RX=1 (link, carrier, and frames come back)
#   2. two guests on a two-port testpmd io forwarder (port 0 <-> port 1):
#      ping.sh pings the other guest VP_COUNT (5) times, the other answers (ping.sh
#      responder mode); both must PASS
#
# Installs what it needs (setup.sh; dpdk-dev + librte-net-vhost23) and exits 77 with
# "SKIP: reason" when that is impossible. Ends with "N passed, N failed".
# Variables: VP_SELFTEST_TIMEOUT (per guest, default 150 s), VP_COUNT (pings, default 5),
# VP_SELFTEST_KEEP=1 keeps the work directory (logs) even on success.
set -uo pipefail
vp_prog=selftest-dpdk
. "$(dirname "$0")/lib.sh"

T_ALL=$(vp_now)
gtimeout=${VP_SELFTEST_TIMEOUT:-150}
count=${VP_COUNT:-5}

skip() { echo "$vp_prog: SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (apt-get, QEMU memfd guests)"

# ---- prerequisites -----------------------------------------------------------------------
"$VP_GUEST_DIR/setup.sh" || skip "setup.sh failed (no QEMU, busybox or guest kernel)"
pmd_dir=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | head -1)
if ! command -v dpdk-testpmd >/dev/null || [ ! -e "$pmd_dir/librte_net_vhost.so" ]; then
    vp_log "installing dpdk-dev librte-net-vhost23"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends dpdk-dev librte-net-vhost23 >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
            apt-get install -y -qq --no-install-recommends dpdk-dev librte-net-vhost23 >/dev/null 2>&1; } ||
        skip "cannot install dpdk-dev / librte-net-vhost23"
    pmd_dir=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | head -1)
fi
command -v dpdk-testpmd >/dev/null || skip "dpdk-testpmd not found after installing dpdk-dev"
[ -e "$pmd_dir/librte_net_vhost.so" ] || skip "DPDK vhost PMD (librte_net_vhost.so) not found"

work=$(mktemp -d /tmp/vp-selftest.XXXXXX)
prefix=vpself$$
tp_pid='' failed=0 passed=0
cleanup() {
    if [ -n "$tp_pid" ] && kill -0 "$tp_pid" 2>/dev/null; then
        kill -INT "$tp_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$tp_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$tp_pid" 2>/dev/null
        wait "$tp_pid" 2>/dev/null
    fi
    tp_pid=''
    rm -rf "/var/run/dpdk/$prefix"
}
trap 'cleanup; [ $failed = 0 ] && [ "${VP_SELFTEST_KEEP:-0}" != 1 ] && rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_testpmd NPORTS: vhost-user servers at $work/vhostN.sock, io forwarding.
# The forwarding lcore busy-polls: keep it on one CPU at the lowest priority so that the
# TCG guests (and whoever else uses the machine) get the CPU first.
start_testpmd() {
    local n=$1 i vdevs=()
    for ((i = 0; i < n; i++)); do
        rm -f "$work/vhost$i.sock"
        vdevs+=(--vdev "net_vhost$i,iface=$work/vhost$i.sock")
    done
    tp_log=$work/testpmd-$n.log
    nice -n 19 dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci \
        --file-prefix "$prefix" "${vdevs[@]}" -- \
        --forward-mode=io --auto-start --nb-cores=1 --total-num-mbufs=8192 \
        --stats-period 5 </dev/null >"$tp_log" 2>&1 &
    tp_pid=$!
    for _ in $(seq 100); do
        kill -0 "$tp_pid" 2>/dev/null || break
        grep -q 'Start automatic packet forwarding\|start packet forwarding' "$tp_log" &&
            [ -S "$work/vhost$((n - 1)).sock" ] && return 0
        sleep 0.1
    done
    vp_log "testpmd did not start:"
    tail -n 20 "$tp_log" >&2
    return 1
}

# stop_testpmd: SIGINT makes testpmd print its accumulated per-port statistics.
stop_testpmd() {
    cleanup
    sed -n '/Accumulated forward statistics/,/^ *+\{5,\}/p' "$tp_log" | grep -E 'RX-packets|TX-packets' |
        sed 's/^ */    testpmd total: /' | head -2
}

results=()
record() { # LABEL RC OUTPUT-LINE
    local label=$1 rc=$2 line=$3
    if [ "$rc" = 0 ]; then passed=$((passed + 1)); st=PASS; else failed=$((failed + 1)); st=FAIL; fi
    results+=("$(printf '%-28s %s  %s' "$label" "$st" "$(echo "$line" | grep -o 'boot=[^ ]* total=[^ ]*')")")
}

# ---- 1: one guest, reflected by a one-port io forwarder ----------------------------------
vp_log "test 1: one guest on testpmd (1 vhost port, io forwarding)"
t1=$(vp_now)
if start_testpmd 1; then
    line=$("$VP_GUEST_DIR/run-guest.sh" --name up -t virtio-net-up -e VP_EXPECT_RX=1 \
        -n "$work/vhost0.sock" -T "$gtimeout" -l "$work/guest-up.log")
    rc=$?
    echo "$line"
    stop_testpmd
else
    rc=1 line=''
    cleanup
fi
record "virtio-net-up (1 guest)" $rc "$line"
vp_log "test 1 took $(vp_elapsed "$t1" "$(vp_now)") s"

# ---- 2: two guests behind a two-port io forwarder -----------------------------------------
vp_log "test 2: two guests on testpmd (2 vhost ports, io forwarding), ping x$count"
t2=$(vp_now)
if start_testpmd 2; then
    # Link-local addresses: the link exists only between the two guests and testpmd.
    "$VP_GUEST_DIR/run-guest.sh" --name responder -t ping -n "$work/vhost1.sock" \
        --mac 52:54:00:76:70:02 -e VP_IP=169.254.77.2/24 -e VP_COUNT="$count" \
        -T "$gtimeout" -l "$work/guest-responder.log" >"$work/responder.out" &
    rpid=$!
    line=$("$VP_GUEST_DIR/run-guest.sh" --name pinger -t ping -n "$work/vhost0.sock" \
        --mac 52:54:00:76:70:01 -e VP_IP=169.254.77.1/24 -e VP_PEER=169.254.77.2 \
        -e VP_COUNT="$count" -T "$gtimeout" -l "$work/guest-pinger.log")
    rc=$?
    wait "$rpid"
    rrc=$?
    rline=$(cat "$work/responder.out")
    echo "$line"
    echo "$rline"
    stop_testpmd
else
    rc=1 rrc=1 line='' rline=''
    cleanup
fi
record "ping pinger (2 guests)" $rc "$line"
record "ping responder (2 guests)" $rrc "$rline"
vp_log "test 2 took $(vp_elapsed "$t2" "$(vp_now)") s"

# ---- summary -----------------------------------------------------------------------------
echo "$vp_prog: results (boot = QEMU start to BOOTED marker; total = whole guest run):"
for r in "${results[@]}"; do echo "  $r"; done
echo "$vp_prog: total time $(vp_elapsed "$T_ALL" "$(vp_now)") s; work dir $work$([ $failed = 0 ] && [ "${VP_SELFTEST_KEEP:-0}" != 1 ] && echo ' (removed)')"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
