#!/bin/bash
# Cold plug into a backend VM under stock QEMU 7.2 (TCG, -M pc, no QMP) served by vhost-pcid:
# a frontend (vp-vm --frontend --vhost-user, a sealed power-of-two memfd as RAM) connects
# to a server without backend-vm=; `vhost-pci-ctl qemu-args` reserves its device and prints
# the -chardev/-object/-device arguments; the backend guest is started with them and
#   1. at boot sees the pair at the requested slots (info 00:10.0, memory 00:11.0), reads
#      the info window with devmem: magic, status PRESENT|READY, the frontend's uuid, and
#      a memory_peer equal to the memory function's IVPosition; vhost-pci-ctl agrees;
#   2. the frontend leaves: the window says GONE (the functions stay: no QMP to remove
#      them), the daemon logs it and its run directory is empty.
#
#   tests/peers/qemu-cold.sh VHOST_PCID VHOST_PCI_CTL VP_VM
#
# Exits 77 with "SKIP: reason" when QEMU or the guest kit cannot be had, 0 on success,
# 1 on failure. The reservation and the boot hold /tmp/vp-guest-boot.lock (one test guest
# at a time across test runs).
set -uo pipefail
vp_prog=qemu-cold
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"

pcid=$(realpath "${1:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
ctl=$(realpath "${2:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")
vm=$(realpath "${3:?usage: $0 VHOST_PCID VHOST_PCI_CTL VP_VM}")

skip() { echo "$vp_prog: SKIP: $*"; exit 77; }
fail() {
	echo "$vp_prog: FAIL: $*"
	[ -f "$work/daemon.log" ] && tail -20 "$work/daemon.log" | sed 's/^/  daemon: /'
	[ -f "$work/serial.log" ] && grep -h "VPGUEST" "$work/serial.log" | tail -12 | sed 's/^/  /'
	exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (packages)"
"$here/../guest/setup.sh" >/dev/null || skip "tests/guest/setup.sh failed (no QEMU or guest kernel)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"

work=$(mktemp -d /tmp/vp-qemu-cold.XXXXXX)
gpid='' dpid='' f1=''
cleanup() {
	for p in $f1 $dpid $gpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

json() { "$ctl" --control "$work/ctl.sock" --json "$@"; }
wait_serial() { vp_wait_serial "$work/serial.log" "$gpid" "$@"; }

# An initramfs of our own: the shared cache's may be rebuilt from another tree meanwhile.
"$here/../guest/mkinitrd.sh" -n -o "$work/initrd.cpio" 2>"$work/mkinitrd.log" ||
	fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"

"$pcid" --server "path=$work/net0.sock,id=net0" --control "$work/ctl.sock" \
	--run-dir "$work/run" --log-level debug 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "daemon did not start"

"$vm" --frontend --vhost-user --connect "$work/net0.sock" --ram 4M --app sink --quiet \
	--connect-timeout 30 >>"$work/fe1.out" 2>&1 &
f1=$!
id=''
for _ in $(seq 300); do
	id=$(json list 2>/dev/null | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["state"] == "ready":
        print(d["id"], d["uuid"])' 2>/dev/null)
	[ -n "$id" ] && break
	kill -0 "$f1" 2>/dev/null || fail "the frontend ended: $(tail -3 "$work/fe1.out")"
	sleep 0.1
done
[ -n "$id" ] || fail "the frontend's device did not become ready"
read -r id uuid <<<"$id"

# One guest at a time: the lock before the reservation, so waiting for it cannot lapse it.
exec 9>/tmp/vp-guest-boot.lock
flock -w 900 9 || fail "no guest boot lock within 900 s"

"$ctl" --control "$work/ctl.sock" qemu-args --timeout 120 net0 "$id@0x10" \
	>"$work/args" 2>"$work/args.err" || fail "qemu-args failed: $(cat "$work/args.err")"
sed 's/^/  qemu-args: /' "$work/args"
mapfile -t args <"$work/args"
[ "${#args[@]}" = 8 ] || fail "qemu-args printed ${#args[@]} arguments, expected 8"
qargs=()
for a in "${args[@]}"; do qargs+=(-q "$a"); done
state=$(json show "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device"]["backend"]["state"])')
[ "$state" = reserved ] || fail "device $id is $state after qemu-args, not reserved"

timeout 400 "$here/../guest/run-guest.sh" -t bevm --name qemu-cold --initrd "$work/initrd.cpio" \
	-e VP_BEVM_COLD=1 -T 300 -l "$work/serial.log" "${qargs[@]}" >"$work/guest.out" 2>&1 &
gpid=$!

# 1. The pair at boot, as vhost-pci-ctl says.
wait_serial 240 "bevm: pairs" || { tail -20 "$work/guest.out"; fail "the guest did not report"; }
line=$(grep -h "bevm: pair info" "$work/serial.log" | tail -1)
echo "  guest: ${line#*VPGUEST: INFO }"
grep -q "bevm: pairs 1" "$work/serial.log" || fail "not exactly one pair at boot"
grep -qi "magic 0x49435054534F4856" <<<"$line" || fail "no magic in the info window: $line"
grep -q "status 0x0*3 " <<<"$line" || fail "status is not PRESENT|READY: $line"
grep -q " uuid $uuid " <<<"$line" || fail "the window's uuid is not the frontend's $uuid: $line"
grep -q "pair info 0000:00:10.0 memory 0000:00:11.0 " <<<"$line" ||
	fail "the pair is not at slots 0x10/0x11: $line"
json show "$id" | python3 -c '
import json, sys
b = json.load(sys.stdin)["device"]["backend"]
ok = b["state"] == "plugged" and b["cold"] and b["info_pci"] == "00:10.0" and \
    b["memory_pci"] == "00:11.0" and b["path"] is None
print("qemu-cold: vhost-pci-ctl: %s %s+%s cold %s: %s" % (b["state"], b["memory_pci"],
      b["info_pci"], b["cold"], "matches" if ok else "MISMATCH %r" % b))
sys.exit(0 if ok else 1)' || fail "vhost-pci-ctl disagrees with the guest"

# 2. The frontend leaves: GONE in the window; the functions stay.
kill "$f1"; wait "$f1" 2>/dev/null; f1=''
wait "$gpid"
grc=$?
gpid=''
exec 9>&-
grep -h "VPGUEST: INFO bevm: gone" "$work/serial.log" | sed 's/^/  /'
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
grep -q "bevm: gone 1, functions left 2" "$work/serial.log" ||
	fail "the guest did not see GONE with both functions still there"
grep -q "keeps its functions" "$work/daemon.log" || fail "the daemon did not log letting go"
[ -z "$(ls -A "$work/run")" ] || fail "run directory not empty: $(ls "$work/run")"
echo "$vp_prog: PASS"
