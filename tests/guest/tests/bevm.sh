# Guest test: vhost-pci devices (docs/device.md) hot-plugged into this backend VM by
# vhost-pcid (tests/peers/qemu-bevm.sh). Each pair is an info function (1af4:1110, 8 KiB
# BAR2 starting with the magic "VHOSTPCI") and a memory function (1af4:1110 whose
# IVPosition is the info window's memory_peer). Whenever the set of 1af4:1110 functions
# changes, the guest lists them and reads each info window with busybox devmem.
#   VP_BEVM_PAIRS=N   the most pairs the host plugs at once (default 2)
#   VP_BEVM_COLD=N    cold plug instead (tests/peers/qemu-cold.sh): N pairs are on QEMU's
#                     command line at boot; done once every info window says GONE (the
#                     host's frontends left; the functions stay: nothing unplugs them)
# Markers: "bevm: waiting", "bevm: function BDF ...", "bevm: pair info BDF memory BDF
# magic M status S uuid U peer P", "bevm: pairs N", "bevm: done" (N reached, then 0),
# cold: "bevm: gone N, functions left F".
. /lib/vp.sh

want=${VP_BEVM_PAIRS:-2}
ivshmem_fns() {
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] &&
            [ "$(cat "$d/device" 2>/dev/null)" = 0x1110 ] && echo "$d"
    done
}
bar() { awk -v n="$2" 'NR == n { print $1, $2 }' "$1/resource"; }
rd() { devmem "$1" "$2" 2>/dev/null || echo 0; }
# hex of N bytes at ADDR, one devmem per byte
bytes() {
    _a=$1 _n=$2 _o=''
    while [ "$_n" -gt 0 ]; do
        _o="$_o$(printf %02x $(($(rd "$_a" 8))))"
        _a=$((_a + 1)) _n=$((_n - 1))
    done
    echo "$_o"
}
report() {
    pairs=0 infos=''
    for d in $1; do
        echo 1 >"$d/enable" 2>/dev/null
        set -- $(bar "$d" 3)
        size=$(($2 - $1 + 1))
        vp_info "function $(basename "$d") BAR2 $size bytes"
        [ "$size" = 8192 ] || continue
        b2=$1
        magic=$(rd "$b2" 64)
        [ $((magic)) = $((0x49435054534f4856)) ] || continue
        status=$(rd $((b2 + 0x14)) 32)
        peer=$(($(rd $((b2 + 0x34)) 32) >> 16))
        u=$(bytes $((b2 + 0x20)) 16)
        uuid=$(echo "$u" | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)/\1-\2-\3-\4-/')
        mem=none
        for m in $fns; do
            set -- $(bar "$m" 1)
            [ "$m" != "$d" ] && [ $(($(rd $(($1 + 8)) 32))) = "$peer" ] && mem=$(basename "$m")
        done
        vp_info "pair info $(basename "$d") memory $mem magic $magic status $status uuid $uuid peer $peer"
        infos="$infos $b2"
        pairs=$((pairs + 1))
    done
    vp_info "pairs $pairs"
}

if [ -n "${VP_BEVM_COLD:-}" ]; then
    fns=$(ivshmem_fns)
    report "$fns"
    [ "$pairs" = "$VP_BEVM_COLD" ] || vp_fail "$pairs pairs at boot, expected $VP_BEVM_COLD"
    t=0
    while [ $t -lt 3000 ]; do
        gone=0
        for b2 in $infos; do
            [ $(($(rd $((b2 + 0x14)) 32) & 0x8)) != 0 ] && gone=$((gone + 1))
        done
        if [ "$gone" = "$pairs" ]; then
            vp_info "gone $gone, functions left $(ivshmem_fns | wc -l)"
            vp_info "done"
            exit 0
        fi
        sleep 0.1
        t=$((t + 1))
    done
    vp_fail "the info windows did not say GONE within 300 s"
fi

[ -n "$(ivshmem_fns)" ] && vp_fail "ivshmem functions are there before the host plugged any"
vp_info "waiting"
seen=0 last='' pairs=0 t=0
while [ $t -lt 3000 ]; do
    fns=$(ivshmem_fns)
    if [ "$fns" != "$last" ]; then
        # let a pair finish appearing (info first, memory right after)
        sleep 0.5
        fns=$(ivshmem_fns)
        last=$fns
        report "$fns"
        [ "$pairs" -gt "$seen" ] && seen=$pairs
        if [ "$seen" -ge "$want" ] && [ -z "$fns" ]; then
            # Wait for acpiphp's _EJ0 (see ivshmem.sh): the rescan lock is held
            # until the eject of the functions was asked of QEMU.
            echo 1 >/sys/bus/pci/rescan || vp_fail "cannot rescan the PCI bus"
            vp_info "done"
            exit 0
        fi
    fi
    sleep 0.1
    t=$((t + 1))
done
vp_fail "saw at most $seen pairs and not all gone after 300 s"
