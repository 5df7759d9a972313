#!/bin/bash
# A stock QEMU 7.2 guest (TCG, -M pc) as a backend VM: a vhost-pci device (docs/device.md)
# cold-plugged at start, and vp-vm running inside the guest on it, unchanged:
#   - the host side is tests/peers/guestbe_host.c: a vp_netfe frontend in a sealed
#     power-of-two memfd, its info window in a file (-object memory-backend-file +
#     -device ivshmem-plain) and the daemon's ivshmem server (daemon/ivshmem.c) giving
#     -device ivshmem-doorbell that memfd as BAR2 and its kick/call eventfds as vectors;
#   - the guest (tests/guest/tests/guestbe.sh) runs the vp-vm binary of this build, packed
#     into its initramfs with the shared libraries ldd names: vp-vm --backend --guest-pci
#     --app echo --mode poll;
#   - the host sends COUNT frames and checks every one that comes back, then says GONE.
#
#   tests/peers/qemu-guestbe.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# BUILD is VHOST_PCID's build directory: BUILD/tests/peers/guestbe-host and, unless given,
# BUILD/tools/vp-vm. Exits 77 with "SKIP: reason" when QEMU or the guest kit cannot be
# had, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-guestbe
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID [VHOST_PCI_CTL VP_VM]}")
build=$(dirname "$pcid")/..
host=$build/tests/peers/guestbe-host
vpvm=$(realpath "${3:-$build/tools/vp-vm}")
count=${VP_GB_COUNT:-3000}

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/host.out" ] && sed 's/^/  /' "$work/host.out" | tail -20
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -15 | sed 's/^/  /'
	exit 1
}

[ -x "$host" ] || { echo "$vp_prog: FAIL: no $host (build it first)"; exit 1; }
[ -x "$vpvm" ] || { echo "$vp_prog: FAIL: no $vpvm (build it first)"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-guestbe.XXXXXX)
gpid='' hpid=''
cleanup() {
	for p in $hpid $gpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

# wait_file SECONDS FILE PATTERN: a line from a process that is still running.
wait_file() {
	local _
	for _ in $(seq $(($1 * 10))); do
		grep -q -- "$3" "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# vp-vm and what it links against, for an image with no libc of its own: the libraries
# go to /lib/vp (the guest's /tmp is a tmpfs, so build-tree paths would be hidden), the
# loader to the path vp-vm names.
files=(-f "$vpvm:/bin/vp-vm")
while read -r lib; do
	case $lib in
	*ld-linux*) files+=(-f "$(realpath "$lib"):$lib") ;;
	*) files+=(-f "$(realpath "$lib"):/lib/vp/$(basename "$lib")") ;;
	esac
done < <(ldd "$vpvm" | grep -o '/[^ ]*' | sort -u)
"$here/../guest/mkinitrd.sh" -n "${files[@]}" -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
	fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

# The host half first: QEMU reads the ivshmem server's setup while it creates the device.
timeout 200 "$host" qemu "$work/ivshmem.sock" "$work/info" "$count" 180 >"$work/host.out" 2>&1 &
hpid=$!
wait_file 10 "$work/host.out" "ready" || fail "guestbe-host did not publish its device"

timeout 200 "$here/../guest/run-guest.sh" -t guestbe --name qemu-guestbe \
	--initrd "$work/initrd.cpio" -e VP_GB_COUNT="$count" -T 180 -l "$work/serial.log" \
	-q -object -q "memory-backend-file,id=vpinfo,mem-path=$work/info,size=8K,share=on" \
	-q -device -q "ivshmem-plain,memdev=vpinfo" \
	-q -chardev -q "socket,id=vpivs,path=$work/ivshmem.sock" \
	-q -device -q "ivshmem-doorbell,chardev=vpivs,vectors=3" \
	>"$work/guest.out" 2>&1 &
gpid=$!
wait "$hpid"
hrc=$?
hpid=''
wait "$gpid"
grc=$?
gpid=''
sed 's/^/  /' "$work/host.out"
grep -h "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'
[ "$hrc" = 0 ] || fail "guestbe-host failed (rc $hrc)"
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
grep -q "PASS: $count frames" "$work/host.out" || fail "no PASS line from guestbe-host"
echo "$vp_prog: PASS"
