#!/bin/bash
# Boot one test guest under QEMU and wait for its serial-console markers.
#
#   tests/guest/run-guest.sh [options] [-- extra QEMU args...]
#
#   -t, --test NAME[,NAME]  guest test(s) to run (/tests/NAME.sh; VP_TEST); default: boot only
#   -e, --env VAR=val       pass VAR=val on the kernel command line (guest environment)
#       --append STR        more kernel command-line words, raw
#   -m, --mem SIZE          guest RAM, a power of two (256M default; K/M/G suffixes)
#       --any-mem           allow a --mem that is not a power of two (a frontend that
#                           vhost-pcid must refuse for a backend VM: tests only)
#       --mem-path FILE     RAM from memory-backend-file FILE (share=on) instead of memfd
#   -n, --vhost-user SOCK   add a virtio-net-pci NIC on a vhost-user netdev whose backend
#                           listens on SOCK (QEMU is the client, reconnect=1); repeatable
#       --mac MAC           MAC of the next/last NIC (default derived from name and socket)
#       --vectors N         MSI-X vectors of the NICs (default 0 under TCG: see docs)
#       --packed            the NICs offer packed rings (virtio-net-pci packed=on)
#       --queues N          the NICs have N queue pairs (netdev queues=N, virtio-net-pci
#                           mq=on: VIRTIO_NET_F_MQ; the backend must offer N)
#   -q, --qemu-arg ARG      one extra QEMU argument (repeatable); also everything after --
#   -l, --log FILE          serial log (default /tmp/vp-guest-NAME-XXXX.log, removed after
#                           a PASS unless VP_KEEP_LOGS=1)
#   -T, --timeout SEC       give up after SEC seconds (default 120); QEMU is killed
#       --name NAME         label for messages and QEMU -name (default: first test)
#       --initrd FILE       initramfs (default: $VP_GUEST_CACHE/initrd.cpio, rebuilt by
#                           mkinitrd.sh when the kit's files are newer)
#       --kernel FILE       kernel (default: the uncompressed vmlinux from setup.sh)
#       --smp N             vCPUs (default 1; QEMU's -smp syntax; under TCG a lone vCPU
#                           gets maxcpus=2 unless maxcpus is given, see below)
#       --reboot            a reboot (in the guest, or QMP system_reset) restarts the guest
#                           instead of ending QEMU (no -no-reboot)
#       --accel A           tcg | kvm | auto (default auto: kvm only where it is real)
#       --loglevel N        kernel console log level (default 5: errors, warnings and oops
#                           traces reach the serial log; 8 shows everything)
#   -i, --interactive       serial console on this terminal, VP_TEST=shell, no waiting
#
# Exit status: 0 PASS, 1 FAIL marker, 2 timeout, 3 QEMU ended without a result,
# 4 usage or setup error. The last stdout line is
#   run-guest: NAME PASS|FAIL|TIMEOUT|NORESULT boot=S total=S log=FILE
# where boot is the time from starting QEMU to the guest's BOOTED marker.
set -uo pipefail
vp_prog=run-guest
. "$(dirname "$0")/lib.sh"
VP_DIE_RC=4

tests='' mem=256M mem_path='' timeout=120 name='' initrd='' kernel='' smp=1 accel=auto
log='' vectors='' packed='' queues='' interactive=0 append='' loglevel=5 reboot=0 any_mem=0
socks=() macs=() envs=() qargs=()
need() { [ $# -ge 2 ] || vp_die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
    -t | --test) need "$@"; tests=$2; shift ;;
    -e | --env) need "$@"; envs+=("$2"); shift ;;
    --append) need "$@"; append="$append $2"; shift ;;
    -m | --mem) need "$@"; mem=$2; shift ;;
    --mem-path) need "$@"; mem_path=$2; shift ;;
    -n | --vhost-user) need "$@"; socks+=("$2"); shift ;;
    --mac) need "$@"; macs[$((${#socks[@]} > 0 ? ${#socks[@]} - 1 : 0))]=$2; shift ;;
    --vectors) need "$@"; vectors=$2; shift ;;
    --packed) packed=,packed=on ;;
    --queues) need "$@"; queues=$2; shift ;;
    -q | --qemu-arg) need "$@"; qargs+=("$2"); shift ;;
    -l | --log) need "$@"; log=$2; shift ;;
    -T | --timeout) need "$@"; timeout=$2; shift ;;
    --name) need "$@"; name=$2; shift ;;
    --initrd) need "$@"; initrd=$2; shift ;;
    --kernel) need "$@"; kernel=$2; shift ;;
    --smp) need "$@"; smp=$2; shift ;;
    --reboot) reboot=1 ;;
    --any-mem) any_mem=1 ;;
    --accel) need "$@"; accel=$2; shift ;;
    --loglevel) need "$@"; loglevel=$2; shift ;;
    -i | --interactive) interactive=1 ;;
    -h | --help) vp_usage; exit 0 ;;
    --) shift; qargs+=("$@"); break ;;
    *) vp_die "unknown option: $1 (try --help)" ;;
    esac
    shift
done

vp_load_env
command -v qemu-system-x86_64 >/dev/null || vp_die "qemu-system-x86_64 missing: run setup.sh"
[ "$timeout" -gt 0 ] 2>/dev/null || vp_die "--timeout: positive number of seconds"
[ -z "$queues" ] || [ "$queues" -ge 1 ] 2>/dev/null || vp_die "--queues: a number of queue pairs"
[ -n "$name" ] || name=${tests%%,*}
[ -n "$name" ] || name=boot
[ $interactive = 0 ] || { [ -n "$tests" ] || tests=shell; }

# RAM: a power of two (ivshmem asserts that when this RAM is exported as a BAR).
mem_mib=$(awk -v s="$mem" 'BEGIN {
    n = s + 0; u = toupper(substr(s, length(s)));
    if (u == "G") n *= 1024; else if (u == "K") n /= 1024; else if (u != "M" && u !~ /[0-9]/) n = -1;
    print (n == int(n)) ? n : -1 }')
[ "$mem_mib" -gt 0 ] 2>/dev/null && { [ $any_mem = 1 ] || [ $((mem_mib & (mem_mib - 1))) = 0 ]; } ||
    vp_die "--mem $mem: must be a power of two of at least 1M"

case $accel in
auto) if vp_have_real_kvm; then accel=kvm; else accel=tcg; fi ;;
tcg | kvm) ;;
*) vp_die "--accel tcg|kvm|auto" ;;
esac
# QEMU 7.2 under TCG crashes in vhost_net_start when virtio-net-pci uses MSI-X with a
# vhost-user netdev: default to vectors=0 there.
[ -n "$vectors" ] || { [ $accel = tcg ] && vectors=0; }
# QEMU before 8.1 (upstream c914d46d0a64) drops a TCG guest's memory barriers, and makes
# its locked instructions plain, when the machine can have only one vCPU, although
# QEMU's threads and other processes (vhost-user backends, kmod-host, the peer guest)
# share its memory: the guest's full fence between a ring index store and the load of
# the peer's event index is then no fence on the host, and notifications get lost
# (guest/linux/README.md). A second possible vCPU (never started) keeps them.
if [ $accel = tcg ] && [ "${smp%%,*}" = 1 ] && [[ $smp != *maxcpus=* ]]; then
    smp="$smp,maxcpus=2"
fi

[ -n "$kernel" ] || kernel=$VP_VMLINUX
if [ -z "$initrd" ]; then
    initrd=$VP_GUEST_CACHE/initrd.cpio
    if [ ! -s "$initrd" ] || [ -n "$(find "$VP_GUEST_DIR/mkinitrd.sh" "$VP_GUEST_DIR/initrd" \
        "$VP_GUEST_DIR/tests" "$VP_GUEST_ENV" -newer "$initrd" 2>/dev/null | head -1)" ]; then
        "$VP_GUEST_DIR/mkinitrd.sh" -o "$initrd" || vp_die "mkinitrd.sh failed"
    fi
fi
[ -r "$kernel" ] || vp_die "no kernel $kernel"
[ -r "$initrd" ] || vp_die "no initrd $initrd"

auto_log=0
if [ -z "$log" ]; then
    auto_log=1
    log=$(mktemp "/tmp/vp-guest-${name//[^A-Za-z0-9_.-]/_}-XXXXXX.log")
fi
: >"$log" || vp_die "cannot write $log"
qerr=$log.qemu
pidfile=$log.pid

# ---- QEMU command line -------------------------------------------------------------------
cmdline="console=ttyS0 panic=-1 loglevel=$loglevel"
[ -z "$tests" ] || cmdline="$cmdline VP_TEST=$tests"
if [ $interactive = 0 ]; then
    gt=$((timeout > 10 ? timeout - 3 : timeout))
    cmdline="$cmdline VP_GUEST_TIMEOUT=$gt"
fi
for e in "${envs[@]}"; do
    case $e in *=*) cmdline="$cmdline $e" ;; *) vp_die "--env $e: VAR=val expected" ;; esac
done
cmdline="$cmdline$append"

q=(qemu-system-x86_64 -name "vp-$name" -M pc -accel "$accel" -smp "$smp" -m "$mem"
    -nodefaults -no-user-config -display none
    -kernel "$kernel" -initrd "$initrd" -append "$cmdline")
[ $reboot = 1 ] || q+=(-no-reboot)
if [ -n "$mem_path" ]; then
    q+=(-object "memory-backend-file,id=vpmem,mem-path=$mem_path,size=$mem,share=on")
else
    q+=(-object "memory-backend-memfd,id=vpmem,size=$mem,share=on")
fi
q+=(-numa "node,memdev=vpmem")
for i in "${!socks[@]}"; do
    mac=${macs[$i]-}
    if [ -z "$mac" ]; then
        h=$(printf '%s:%s:%s' "$name" "${socks[$i]}" "$i" | cksum | cut -d' ' -f1)
        mac=$(printf '52:54:00:%02x:%02x:%02x' $((h >> 16 & 255)) $((h >> 8 & 255)) $((h & 255)))
    fi
    q+=(-chardev "socket,id=vpchr$i,path=${socks[$i]},reconnect=1"
        -netdev "vhost-user,id=vpnet$i,chardev=vpchr$i${queues:+,queues=$queues}"
        -device "virtio-net-pci,netdev=vpnet$i,mac=$mac${vectors:+,vectors=$vectors}$packed${queues:+,mq=on}")
    vp_log "$name: NIC $i mac=$mac on vhost-user $(printf %q "${socks[$i]}")"
done

if [ $interactive = 1 ]; then
    exec "${q[@]}" -serial mon:stdio "${qargs[@]}"
fi

# ---- run and wait for markers ------------------------------------------------------------
qpid=''
cleanup() {
    local p
    p=$(cat "$pidfile" 2>/dev/null)
    for pid in $p $qpid; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
    done
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        alive=0
        for pid in $p $qpid; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 1 ] || break
        sleep 0.1
    done
    for pid in $p $qpid; do kill -KILL "$pid" 2>/dev/null; done
    [ -z "$qpid" ] || wait "$qpid" 2>/dev/null
    rm -f "$pidfile"
    qpid=''
}
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP

t0=$(vp_now)
# timeout(1) is a backstop should this script itself be killed with SIGKILL.
timeout -k 5 $((timeout + 10)) "${q[@]}" -serial "file:$log" -pidfile "$pidfile" \
    "${qargs[@]}" </dev/null >"$qerr" 2>&1 &
qpid=$!
deadline=$(awk -v a="$t0" -v t="$timeout" 'BEGIN { printf "%d", a + t }')
boot=- status=''
while :; do
    if [ "$boot" = - ] && grep -q 'VPGUEST: BOOTED' "$log"; then
        boot=$(vp_elapsed "$t0" "$(vp_now)")
        vp_log "$name: booted in ${boot}s ($(grep -o 'BOOTED.*' "$log" | head -1))"
    fi
    if grep -q 'VPGUEST: RESULT' "$log"; then
        status=$(grep -o 'VPGUEST: RESULT [A-Z]*' "$log" | head -1 | cut -d' ' -f3)
        break
    fi
    if ! kill -0 "$qpid" 2>/dev/null; then
        grep -q 'VPGUEST: RESULT' "$log" && continue
        status=NORESULT
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        status=TIMEOUT
        break
    fi
    sleep 0.1
done
# The guest powers off right after RESULT: give QEMU a moment to exit by itself.
if [ "$status" = PASS ] || [ "$status" = FAIL ]; then
    for _ in $(seq 50); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done
fi
cleanup
total=$(vp_elapsed "$t0" "$(vp_now)")

case $status in
PASS) rc=0 ;;
FAIL) rc=1 ;;
TIMEOUT) rc=2 ;;
*) status=NORESULT rc=3 ;;
esac
if [ $rc != 0 ]; then
    {
        echo "---- $name: $status after ${total}s; tail of $log:"
        tail -n 30 "$log"
        if [ -s "$qerr" ]; then
            echo "---- QEMU stderr ($qerr):"
            tail -n 15 "$qerr"
        fi
        echo "---- QEMU command: ${q[*]} -serial file:$log ${qargs[*]}"
    } >&2
else
    grep 'VPGUEST: \(PASS\|INFO\)' "$log" | sed "s/^/$vp_prog: $name: /" >&2
fi
[ -s "$qerr" ] || rm -f "$qerr"
if [ $rc = 0 ] && [ $auto_log = 1 ] && [ "${VP_KEEP_LOGS:-0}" != 1 ]; then
    rm -f "$log" "$qerr"
    log=-
fi
echo "run-guest: $name $status boot=$boot total=$total log=$log"
exit $rc
