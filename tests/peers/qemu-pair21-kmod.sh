#!/bin/bash
# The guest kernel driver's 2.1 mode (guest/linux/vpnet21.c) as one peer of a 2.1 pair
# (docs/window21.md 9), a host vp-vm as the other, with real traffic over the link:
#   - vhost-pcid serves the pair (design=2.1,qemu=SOCK), the guest gets the slot as in
#     qemu-pair21.sh (.0 ivshmem-doorbell with 2 MSI-X vectors, .1 and .2 readonly=on);
#   - the host's vp-vm joins as peer 1 with its tap app (--mode irq) in a network namespace
#     of its own (169.254.21.1/24 on its TAP); the guest insmods the module: vp21_0,
#     169.254.21.2 (tests/guest/tests/pair21-kmod.sh);
#   - checked: pings both ways; a VP_P21K_KIB KiB (default 1024) random blob downloaded from
#     the guest and one uploaded to it, each by sha256 on both ends;
#   - hostile peer: the host's vp-vm is stopped (SIGSTOP) and a bad avail index is written
#     into its own section (the daemon's memfd): the guest's link must go down with the
#     reason in sysfs and dmesg, the guest stay up with a clean kernel log; then vp-vm goes
#     on (SIGCONT), the guest sets vp21_0 down and up (a new epoch), the link comes back
#     and pings pass again; rmmod detaches (the guest reads state 0 in its own section).
#
#   tests/peers/qemu-pair21-kmod.sh VHOST_PCID [VHOST_PCI_CTL VP_VM]
#
# Exits 77 with "SKIP: reason" where the other guest tests skip, 0 on success, 1 on failure.
set -uo pipefail
vp_prog=qemu-pair21-kmod
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../guest/lib.sh"
. "$here/twoguest-lib.sh"

tg_args "$@"
hostvm=$vpvm
kib=${VP_P21K_KIB:-1024}
GUEST=169.254.21.2 ADDR=169.254.21.1/24

fail() { tg_fail_logs "$*" daemon.log vm.log; }

tg_require  # exits 77 (SKIP) where the other guest tests skip
command -v ip >/dev/null || { echo "$vp_prog: SKIP: no ip(8) for the host's namespace"; exit 77; }
command -v busybox >/dev/null || { echo "$vp_prog: SKIP: no busybox (ping) on the host"; exit 77; }

work=$(mktemp -d /tmp/vp-qemu-pair21-kmod.XXXXXX)
ns=vp21k$$
gpid='' dpid='' vpid=''
cleanup() {
	[ -z "$vpid" ] || kill -CONT "$vpid" 2>/dev/null
	for p in $vpid $gpid $dpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
	[ "${VP_KEEP_LOGS:-0}" = 1 ] && echo "$vp_prog: logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
inns() { ip netns exec "$ns" "$@"; }
# marker TEXT SECS: the guest's serial log has "VPGUEST: INFO ...: TEXT" (waits SECS).
marker() {
	local i
	for i in $(seq $(($2 * 5))); do
		grep -aq "VPGUEST: INFO .*: $1" "$work/serial.log" 2>/dev/null && return 0
		kill -0 "$gpid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

vpvm=''  # the guest runs no vp-vm: the image has the module (and ethtool) only
tg_kmod  # the module, warning-free (W=1), or SKIP without the headers
echo "$vp_prog: module built warning-free (W=1)"
tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"
ip netns add "$ns" || { echo "$vp_prog: SKIP: cannot make a network namespace"; exit 77; }
inns ip link set lo up

tg_lock  # one test boots guests at a time, machine-wide

tg_pair21 "$pcid" "$ctl"  # sets dpid, other, tg_p21_slot

timeout 500 "$here/../guest/run-guest.sh" -t pair21-kmod --name qemu-pair21-kmod \
	--initrd "$work/initrd.cpio" -e VP_P21K_KIB="$kib" -T 460 -l "$work/serial.log" \
	--loglevel 6 \
	"${tg_p21_slot[@]}" \
	>"$work/guest.out" 2>&1 &
gpid=$!

# The host's peer: vp-vm's tap app in its own namespace (its TAP and address stay there).
# ip execs vp-vm (so $! is vp-vm, for SIGSTOP and the cleanup); it does not keep the lock.
ip netns exec "$ns" "$hostvm" --pair21 "$work/p21.sock" --app tap --tap vp21h \
	--tap-addr "$ADDR" --mode irq --connect-timeout 300 --log-level info \
	>"$work/vm.out" 2>"$work/vm.log" {tg_lockfd}>&- &
vpid=$!

marker "ready" 400 || fail "the guest did not get its link up and serve"
grep -ah "VPGUEST: INFO" "$work/serial.log" | sed 's/^/  /'

# Both directions: pings, then the blob down and an upload, each checked by sha256.
out=$(inns busybox ping -c 5 -W 3 "$GUEST" 2>&1)
grep -q "5 packets received" <<<"$out" || fail "host -> guest ping: $(echo "$out" | tail -2 | tr '\n' ' ')"
echo "  host: ping guest: $(echo "$out" | grep -E 'received')"
inns python3 - "$GUEST" "$kib" "$work" <<'EOF' || fail "TCP over the 2.1 link"
import hashlib, os, socket, sys, time
guest, kib, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def talk(port, data=b""):
    s = socket.create_connection((guest, port), timeout=60)
    s.settimeout(120)
    if data:
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return bytes(got)
t0 = time.time()
blob = talk(5001)
t1 = time.time()
want = talk(5003).decode().strip()
have = hashlib.sha256(blob).hexdigest()
if len(blob) != kib * 1024 or have != want:
    sys.exit("download: %d bytes sha256 %s, the guest says %s" % (len(blob), have, want))
print("  host: downloaded %d bytes from the guest, sha256 ok (%.2f s)" % (len(blob), t1 - t0))
up = os.urandom(kib * 1024)
t0 = time.time()
ans = talk(5002, up).decode().split()
t1 = time.time()
if ans != [hashlib.sha256(up).hexdigest(), str(len(up))]:
    sys.exit("upload: the guest says %s, sent %d bytes sha256 %s" % (ans, len(up), hashlib.sha256(up).hexdigest()))
print("  host: uploaded %d bytes to the guest, sha256 ok (%.2f s)" % (len(up), t1 - t0))
EOF

# Hostile: our peer's own section (peer 1's, the daemon's memfd: the guest's .2) gets an
# avail index a whole ring ahead of what the guest consumed, while vp-vm is stopped (so it
# cannot publish over it); the guest learns of it at its next look (a doorbell or its 1 s
# link poll).
kill -STOP "$vpid" || fail "cannot stop the host's vp-vm"
python3 - "$other" <<'EOF' || fail "cannot write the bad index"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0x40)
    avail = struct.unpack("<H", f.read(2))[0]
    f.seek(0x40)
    f.write(struct.pack("<H", (avail + 0x4000) & 0xffff))
    print("  host: peer 1's avail %u -> %u (the guest's ring view: ran ahead)" % (avail, (avail + 0x4000) & 0xffff))
EOF
marker "broken: " 60 || fail "the guest's link did not go down with a reason"
grep -ah "VPGUEST: INFO .*: \(broken\|kernel log\)" "$work/serial.log" | sed 's/^/  /'
grep -aq "VPGUEST: INFO .*: broken: .*avail index ran ahead" "$work/serial.log" ||
	fail "the guest's reason does not name the bad avail index"
kill -CONT "$vpid"

marker "recovered" 120 || fail "the guest did not recover the link and pass its last checks"
wait "$gpid"
grc=$?
gpid=''
grep -ah "VPGUEST: INFO .*: \(ping\|ethtool\|recovered\|unloaded\)" "$work/serial.log" | tail -5 | sed 's/^/  /'
[ "$grc" = 0 ] || { tail -20 "$work/guest.out"; fail "guest test failed (rc $grc)"; }
kill -0 "$vpid" 2>/dev/null || fail "the host's vp-vm died"
echo "$vp_prog: PASS: ping and $kib KiB TCP each way by sha256 over vp21_0; a bad index from the host took the guest's link down with its reason, the guest stayed up, down/up recovered the link"
