# Shared by tests/peers/qemu-kmod.sh and qemu-kmod-data.sh (sourced, after setting
# vp_prog and here): the checks, the work directory, the module build, the host program
# and the guest boot with the two cold-plugged functions.
#
#   kmod_prepare VHOST_PCID       checks (exit 77 to skip), $work, $host, $ko
#   kmod_initrd [mkinitrd args]   $work/initrd.cpio with the module (not loaded)
#   kmod_host_start SECS ARGS...  kmod-host $work SECS ARGS... until it listens (SECS
#                                 from now: the guest's SECS plus the lock wait)
#   kmod_boot TEST SECS [run-guest args...]   boot under /tmp/vp-guest-boot.lock (waited
#                                 for up to $kmod_lock_wait s); sets $grc (guest) and
#                                 $hrc (kmod-host, waited for). VP_KMOD_SMP=S: --smp S
#                                 (1,maxcpus=1 brings back QEMU 7.2's lost TCG barriers)
kmod_lock_wait=300
. "$here/../guest/lib.sh"

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
    echo "$vp_prog: FAIL: $*"
    [ -f "$work/host.out" ] && sed 's/^/  host: /' "$work/host.out" | tail -30
    [ -f "$work/serial.log" ] && grep -h -E "VPGUEST|vpnet|vhost_pci|WARNING|BUG|Oops" \
        "$work/serial.log" | tail -30 | sed 's/^/  guest: /'
    exit 1
}

kmod_prepare() {
    local pcid
    pcid=$(realpath "${1:?usage: $0 VHOST_PCID [...]}")
    host=$(dirname "$pcid")/../tests/peers/kmod-host
    work=''
    [ -x "$host" ] || { echo "$vp_prog: FAIL: no $host (build it first)"; exit 1; }
    [ "$(id -u)" = 0 ] || skip "needs root (packages)"
    "$here/../guest/setup.sh" --headers >/dev/null || skip "tests/guest/setup.sh --headers failed"
    command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
    work=$(mktemp -d "/tmp/vp-$vp_prog.XXXXXX")
    hpid=''
    trap kmod_cleanup EXIT
    ko=$("$here/../../guest/linux/build.sh" -o "$work/kbuild" 2>"$work/kbuild.err") ||
        { cat "$work/kbuild.err"; fail "the module did not build warning-free"; }
    echo "$vp_prog: module built warning-free (W=1): $(basename "$ko")"
}

kmod_cleanup() {
    [ -z "$hpid" ] || { kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null; }
    [ -z "$work" ] || rm -rf "$work"
}

kmod_initrd() {
    "$here/../guest/mkinitrd.sh" -n -K "$ko" "$@" -o "$work/initrd.cpio" \
        2>"$work/mkinitrd.log" || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"
}

kmod_host_start() {
    local secs=$1
    shift
    secs=$((secs + kmod_lock_wait))
    timeout $((secs + 20)) "$host" "$work" "$secs" "$@" >"$work/host.out" 2>&1 &
    hpid=$!
    for _ in $(seq 100); do
        grep -q "kmod-host: listening" "$work/host.out" && return 0
        kill -0 "$hpid" 2>/dev/null || fail "kmod-host ended before listening"
        sleep 0.1
    done
    fail "kmod-host did not listen in 10 s"
}

kmod_boot() {
    local test=$1 secs=$2
    shift 2
    timeout $((secs + kmod_lock_wait + 40)) flock -w $kmod_lock_wait /tmp/vp-guest-boot.lock \
        "$here/../guest/run-guest.sh" \
        -t "$test" --name "qemu-$test" --initrd "$work/initrd.cpio" -T "$secs" \
        -l "$work/serial.log" --loglevel 6 ${VP_KMOD_SMP:+--smp "$VP_KMOD_SMP"} "$@" \
        -q -object -q "memory-backend-file,id=vpinfo,mem-path=$work/info,size=8K,share=on" \
        -q -device -q "ivshmem-plain,memdev=vpinfo" \
        -q -chardev -q "socket,id=vpivs,path=$work/ivs.sock" \
        -q -device -q "ivshmem-doorbell,chardev=vpivs,vectors=3" \
        >"$work/guest.out" 2>&1
    grc=$?
    wait "$hpid"
    hrc=$?
    hpid=''
}
