#!/bin/bash
# Install (idempotently) what the guest-VM tests need and prepare a guest kernel.
#
#   tests/guest/setup.sh [--headers] [--no-kernel]
#
#   - host packages: qemu-system-x86 qemu-utils busybox-static cpio xz-utils gzip
#     (apt-get update + install only when one is missing)
#   - the Debian 12 kernel that linux-image-amd64 currently depends on, downloaded with
#     apt-get download (never installed on the host), unpacked into $VP_GUEST_CACHE
#     (default /var/cache/vhost-pci-guest) with an uncompressed vmlinux for fast PVH boot
#     and its modules directory
#   - the matching header packages (downloaded always; installed with dpkg -i only with
#     --headers, for building guest kernel modules against /usr/src/linux-headers-KVER)
#
# Writes $VP_GUEST_CACHE/guest.env, which the other tools source.
set -euo pipefail
vp_prog=setup
. "$(dirname "$0")/lib.sh"

want_headers=0
want_kernel=1
for a in "$@"; do
    case $a in
    --headers) want_headers=1 ;;
    --no-kernel) want_kernel=0 ;;
    -h | --help) vp_usage; exit 0 ;;
    *) vp_die "unknown argument: $a (try --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || vp_die "must run as root (apt-get, dpkg)"
export DEBIAN_FRONTEND=noninteractive
t0=$(vp_now)
apt_updated=0
apt_update() {
    [ $apt_updated = 1 ] && return 0
    vp_log "apt-get update"
    apt-get update -qq >/dev/null || vp_log "warning: apt-get update failed"
    apt_updated=1
}
apt_install() {
    local missing=() p
    for p in "$@"; do vp_pkg_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} = 0 ]; then
        return 0
    fi
    apt_update
    vp_log "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        vp_die "apt-get install ${missing[*]} failed"
}

# ---- host packages -----------------------------------------------------------------------
host_pkgs=(qemu-system-x86 qemu-utils busybox-static cpio xz-utils gzip)
apt_install "${host_pkgs[@]}"
vp_log "host packages present: ${host_pkgs[*]} ($(qemu-system-x86_64 --version | head -1))"
[ $want_kernel = 1 ] || exit 0

mkdir -p "$VP_GUEST_CACHE/debs"
# One setup at a time per cache (tests may call setup.sh concurrently).
exec 9>"$VP_GUEST_CACHE/.lock"
flock 9

# ---- which kernel? -----------------------------------------------------------------------
# linux-image-amd64's candidate depends on "linux-image-6.1.0-NN-amd64 (= VERSION)".
lookup_kernel() {
    local dep
    dep=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
        sed -n 's/^Depends: .*\(linux-image-[0-9][^ ,]*\) (= \([^)]*\)).*/\1 \2/p' | head -1)
    [ -n "$dep" ] || return 1
    kpkg=${dep% *}
    kver_pkg=${dep#* }
    kver=${kpkg#linux-image-}
}
kpkg='' kver='' kver_pkg=''
if ! lookup_kernel; then
    apt_update
    lookup_kernel || true
fi
if [ -z "$kpkg" ]; then
    # No package lists and no network: fall back to whatever is cached.
    if [ -r "$VP_GUEST_ENV" ]; then
        vp_log "warning: cannot look up linux-image-amd64; using the cached kernel"
        # shellcheck disable=SC1090
        . "$VP_GUEST_ENV"
        exit 0
    fi
    vp_die "cannot find linux-image-amd64 with apt-cache (no package lists?)"
fi
kdir="$VP_GUEST_CACHE/kernel-$kver"
vp_log "guest kernel: $kpkg $kver_pkg"

# Download package=version into debs/ unless already there; sets deb_path.
# try_fetch only tries; fetch_deb refreshes the package lists once and retries, or dies.
try_fetch() {
    local pkg=$1 ver=$2
    deb_path=$(ls "$VP_GUEST_CACHE/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    [ -z "$deb_path" ] || return 0
    vp_log "apt-get download $pkg=$ver"
    (cd "$VP_GUEST_CACHE/debs" &&
        apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) || return 1
    deb_path=$(ls "$VP_GUEST_CACHE/debs/${pkg}_${ver//:/%3a}_"*.deb | head -1)
}
fetch_deb() {
    try_fetch "$1" "$2" && return 0
    apt_update
    try_fetch "$1" "$2" || vp_die "apt-get download $1=$2 failed"
}

# ---- kernel image + modules --------------------------------------------------------------
if [ -r "$kdir/.complete" ]; then
    vp_log "cached: $kdir"
else
    if ! try_fetch "$kpkg" "$kver_pkg"; then
        # Stale package lists name a version the archive no longer has: refresh, look again.
        apt_update
        lookup_kernel || vp_die "cannot find linux-image-amd64 with apt-cache"
        kdir="$VP_GUEST_CACHE/kernel-$kver"
        vp_log "guest kernel (after apt-get update): $kpkg $kver_pkg"
        [ -r "$kdir/.complete" ] || fetch_deb "$kpkg" "$kver_pkg"
    fi
fi
if [ ! -r "$kdir/.complete" ]; then
    vp_log "extracting $(basename "$deb_path")"
    rm -rf "$kdir.tmp"
    mkdir -p "$kdir.tmp"
    dpkg-deb -x "$deb_path" "$kdir.tmp/root"
    mkdir -p "$kdir.tmp/lib/modules"
    mv "$kdir.tmp/root/boot/vmlinuz-$kver" "$kdir.tmp/vmlinuz"
    mv "$kdir.tmp/root/boot/config-$kver" "$kdir.tmp/config"
    mv "$kdir.tmp/root/boot/System.map-$kver" "$kdir.tmp/System.map" 2>/dev/null || true
    if [ -d "$kdir.tmp/root/lib/modules/$kver" ]; then
        mv "$kdir.tmp/root/lib/modules/$kver" "$kdir.tmp/lib/modules/"
    else
        mv "$kdir.tmp/root/usr/lib/modules/$kver" "$kdir.tmp/lib/modules/"
    fi
    rm -rf "$kdir.tmp/root"
    # modules.dep etc. are generated by depmod at install time; do it here (kmod is
    # optional: mkinitrd.sh can also resolve dependencies from the .ko files itself).
    if command -v depmod >/dev/null; then
        depmod -b "$kdir.tmp" "$kver" 2>/dev/null || vp_log "warning: depmod failed"
    fi

    # Uncompressed vmlinux: the bzImage carries an XZ stream (magic FD 37 7A 58 5A 00).
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kdir.tmp/vmlinuz" | head -1 | cut -d: -f1)
    [ -n "$off" ] || vp_die "no XZ stream in $kdir.tmp/vmlinuz"
    # xz stops at the end of its stream, so tail may die of SIGPIPE: ignore that.
    { tail -c +$((off + 1)) "$kdir.tmp/vmlinuz" || true; } | xz -dc --single-stream >"$kdir.tmp/vmlinux" ||
        vp_die "xz decompression of the kernel failed"
    [ "$(head -c 4 "$kdir.tmp/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
        vp_die "decompressed kernel is not an ELF file"
    grep -q '^CONFIG_PVH=y' "$kdir.tmp/config" ||
        vp_log "warning: CONFIG_PVH is not set: boot $kdir/vmlinuz instead (VP_KERNEL)"
    vp_log "vmlinux: XZ stream at offset $off, $(($(stat -c %s "$kdir.tmp/vmlinux") / 1048576)) MiB"
    touch "$kdir.tmp/.complete"
    rm -rf "$kdir"
    mv "$kdir.tmp" "$kdir"
fi

# Which virtio-net pieces are modules and which are built in?
report=''
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
    failover net_failover virtio_net; do
    if find "$kdir/lib/modules/$kver/kernel" -name "$m.ko*" | grep -q .; then
        report="$report $m=module"
    elif grep -q "/$m.ko\$" "$kdir/lib/modules/$kver/modules.builtin" 2>/dev/null; then
        report="$report $m=builtin"
    else
        report="$report $m=absent"
    fi
done
vp_log "virtio-net:$report"

# ---- headers (downloaded always, installed on request) -----------------------------------
hdr_pkgs=("linux-headers-$kver" "linux-headers-${kver%-*}-common" "linux-kbuild-6.1"
    "linux-compiler-gcc-12-x86")
hdr_debs=()
for p in "${hdr_pkgs[@]}"; do
    fetch_deb "$p" "$kver_pkg"
    hdr_debs+=("$deb_path")
done
vp_log "header packages cached in $VP_GUEST_CACHE/debs"
kbuild="/usr/src/linux-headers-$kver"
if [ $want_headers = 1 ]; then
    need=0
    for p in "${hdr_pkgs[@]}"; do
        [ "$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null)" = \
            "install ok installed $kver_pkg" ] || need=1
    done
    if [ $need = 1 ]; then
        # Their dependencies from the archive first (gcc-12, libelf1, ...), plus make.
        deps=(make)
        for d in "${hdr_debs[@]}"; do
            for n in $(dpkg-deb -f "$d" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//' |
                tr -d ' '); do
                case " ${hdr_pkgs[*]} " in *" $n "*) ;; *) deps+=("$n") ;; esac
            done
        done
        apt_install "${deps[@]}"
        vp_log "dpkg -i ${hdr_pkgs[*]}"
        dpkg -i "${hdr_debs[@]}" >/dev/null || vp_die "dpkg -i of the header packages failed"
    fi
    [ -r "$kbuild/Makefile" ] || vp_die "$kbuild/Makefile missing after install"
    vp_log "headers installed: make -C $kbuild M=\$PWD modules"
fi

# ---- guest.env ---------------------------------------------------------------------------
cat >"$VP_GUEST_ENV.tmp" <<EOF
# Written by tests/guest/setup.sh; sourced by mkinitrd.sh and run-guest.sh.
VP_KPKG=$kpkg
VP_KPKGVER=$kver_pkg
VP_KVER=$kver
VP_KDIR=$kdir
VP_VMLINUX=$kdir/vmlinux
VP_BZIMAGE=$kdir/vmlinuz
VP_KCONFIG=$kdir/config
VP_MODDIR=$kdir/lib/modules/$kver
VP_KBUILD=$kbuild
EOF
mv "$VP_GUEST_ENV.tmp" "$VP_GUEST_ENV"

# Drop kernels and packages of older versions.
for d in "$VP_GUEST_CACHE"/kernel-*; do
    [ -d "$d" ] && [ "$d" != "$kdir" ] && { vp_log "removing old $d"; rm -rf "$d"; }
done
for f in "$VP_GUEST_CACHE"/debs/*.deb; do
    [ -e "$f" ] || continue
    case $f in *"_${kver_pkg//:/%3a}_"*) ;; *) vp_log "removing old $(basename "$f")"; rm -f "$f" ;; esac
done

vp_log "ready: $VP_GUEST_ENV (kernel $kver) in $(vp_elapsed "$t0" "$(vp_now)") s"
