#!/bin/bash
# Build a busybox initramfs for the guest tests.
#
#   tests/guest/mkinitrd.sh [options] [-o OUT.cpio]
#
#   -o FILE        output (newc cpio); default $VP_GUEST_CACHE/initrd.cpio
#   -m MOD[,MOD]   also load guest-kernel module MOD at boot (dependencies resolved)
#   -k FILE.ko     copy an out-of-tree module to /lib/modules/extra/ and load it at boot,
#                  after the kernel's modules (its depends= are resolved from the kernel)
#   -K FILE.ko     copy it there but do not load it (a test script insmods it)
#   -f SRC[:DEST]  copy a file or directory into the image (DEST default /SRC-basename)
#   -t SCRIPT      add a guest test script as /tests/NAME.sh (run with VP_TEST=NAME)
#   -n             no virtio-net modules (the default list is loaded otherwise)
#   -z none|gzip   compression (default none: under TCG gunzip costs ~0.4 s of boot)
#
# Every tests/guest/tests/*.sh is included. The image's /init runs the tests named by the
# kernel command-line word VP_TEST=name[,name]; see tests/guest/initrd/init for markers.
set -euo pipefail
vp_prog=mkinitrd
. "$(dirname "$0")/lib.sh"

out=$VP_GUEST_CACHE/initrd.cpio
mods=() kos=() kos_noload=() files=() tests=()
net=1
comp=none
while getopts "o:m:k:K:f:t:nz:h" o; do
    case $o in
    o) out=$OPTARG ;;
    m) IFS=, read -r -a more <<<"$OPTARG"; mods+=("${more[@]}") ;;
    k) kos+=("$OPTARG") ;;
    K) kos_noload+=("$OPTARG") ;;
    f) files+=("$OPTARG") ;;
    t) tests+=("$OPTARG") ;;
    n) net=0 ;;
    z) comp=$OPTARG ;;
    h) vp_usage; exit 0 ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# = 0 ] || vp_die "unexpected argument: $1"
case $comp in gzip | none) ;; *) vp_die "-z gzip|none" ;; esac
vp_load_env
case $out in /*) ;; *) out=$PWD/$out ;; esac # cpio runs in another directory

bb=/bin/busybox
[ -x $bb ] && vp_pkg_installed busybox-static ||
    vp_die "busybox-static is not installed: run tests/guest/setup.sh"

# ---- module resolution (no kmod needed: read depends= from each .ko's .modinfo) ----------
declare -A modpath=()
while IFS= read -r p; do
    n=${p##*/}
    n=${n%%.ko*}
    modpath[${n//-/_}]=$p
done < <(find "$VP_MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')
[ -n "${modpath[virtio_net]-}" ] || vp_log "warning: virtio_net.ko not found in $VP_MODDIR"

ko_depends() { # FILE: print dependency names (uncompressed .ko only)
    LC_ALL=C grep -a -o 'depends=[^[:cntrl:]]*' "$1" | head -1 | sed 's/^depends=//' | tr ',' ' '
}
builtin() { grep -q "/$1.ko\$" "$VP_MODDIR/modules.builtin" 2>/dev/null; }

declare -A seen=()
order=()
add_mod() { # NAME: append NAME after its dependencies
    local n=${1//-/_} d
    [ -z "${seen[$n]-}" ] || return 0
    seen[$n]=1
    if [ -z "${modpath[$n]-}" ]; then
        builtin "$n" && return 0
        vp_die "module $n: neither a module nor built in to $VP_KVER"
    fi
    case ${modpath[$n]} in *.ko) ;; *) vp_die "module $n is compressed; not supported" ;; esac
    for d in $(ko_depends "${modpath[$n]}"); do add_mod "$d"; done
    order+=("$n")
}
if [ $net = 1 ]; then
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
        failover net_failover virtio_net; do
        if [ -n "${modpath[$m]-}" ]; then add_mod "$m"; elif ! builtin "$m"; then
            vp_log "note: $m is neither a module nor built in; skipped"
        fi
    done
fi
for m in "${mods[@]}"; do add_mod "$m"; done
for k in "${kos[@]}"; do
    [ -r "$k" ] || vp_die "no such module file: $k"
    for d in $(ko_depends "$k"); do add_mod "$d"; done
done

# ---- image tree --------------------------------------------------------------------------
work=$(mktemp -d /tmp/vp-initrd.XXXXXX)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,dev,etc,lib/modules/kernel,lib/modules/extra,proc,sys,tmp,run,tests,root}
ln -s bin "$r/sbin"
mkdir -p "$r/usr"
ln -s ../bin "$r/usr/bin"
ln -s ../bin "$r/usr/sbin"
cp $bb "$r/bin/busybox"
for a in $($bb --list); do
    # "busybox --list" names busybox itself: a self-link would make bin/busybox a loop.
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
done
# The kernel opens /dev/console for init before devtmpfs is mounted.
mknod -m 600 "$r/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$r/dev/null" c 1 3 2>/dev/null || true
install -m 755 "$VP_GUEST_DIR/initrd/init" "$r/init"
install -m 644 "$VP_GUEST_DIR/initrd/vp.sh" "$r/lib/vp.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
echo "$VP_KVER" >"$r/etc/vp-kernel"

: >"$r/etc/vp-modules"
for n in "${order[@]}"; do
    cp "${modpath[$n]}" "$r/lib/modules/kernel/"
    echo "/lib/modules/kernel/$(basename "${modpath[$n]}")" >>"$r/etc/vp-modules"
done
for k in "${kos[@]}"; do
    cp "$k" "$r/lib/modules/extra/"
    echo "/lib/modules/extra/$(basename "$k")" >>"$r/etc/vp-modules"
done
for k in "${kos_noload[@]}"; do
    [ -r "$k" ] || vp_die "no such module file: $k"
    cp "$k" "$r/lib/modules/extra/"
done
for t in "$VP_GUEST_DIR"/tests/*.sh "${tests[@]}"; do
    [ -r "$t" ] || vp_die "no such test script: $t"
    install -m 755 "$t" "$r/tests/$(basename "$t")"
done
for f in "${files[@]}"; do
    src=${f%%:*}
    dest=/$(basename "$src")
    [ "$src" = "$f" ] || dest=${f#*:}
    [ -e "$src" ] || vp_die "no such file: $src"
    mkdir -p "$r$(dirname "$dest")"
    cp -a "$src" "$r$dest"
done

# ---- pack --------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tmp_out=$out.tmp.$$
(
    cd "$r"
    find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet
) | if [ "$comp" = gzip ]; then gzip -6; else cat; fi >"$tmp_out"
mv "$tmp_out" "$out"
vp_log "wrote $out ($(($(stat -c %s "$out") / 1024)) KiB; modules: ${order[*]:-none}${kos:+ + ${kos[*]##*/}})"
