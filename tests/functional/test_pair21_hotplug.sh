#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# vhost-pcid's 2.1 hot-plug (design=2.1,qemu=SOCK,qmp=QMP) against a scripted QMP server
# instead of QEMU: the commands it sends, in order, with the arguments a QEMU 7.2 needs
# (docs/vhost-pcid.md, qmp=), and what it does with the answers:
#   1. no other peer: nothing is plugged;
#   2. a host vp-vm joins the pair: query-pci (slots 0-3 taken: slot 4 is picked), two
#      read-only memory-backend-files, ivshmem-plain at 4.1 and 4.2, the chardev, and
#      ivshmem-doorbell at 4.0 LAST; the scripted QEMU refuses that first function 0, so
#      the daemon removes what it made (counted, why shown) and 5 s later plugs again under
#      new ids, which succeeds;
#   3. the peer leaves: device_del of function 0 only; the DEVICE_DELETED events of the
#      three functions; then the chardev and both objects removed; counters 1 plug, 1 unplug.
#
#   test_pair21_hotplug.sh VP_VM VHOST_PCID VHOST_PCI_CTL
set -u
VM=${1:?usage: test_pair21_hotplug.sh VP_VM VHOST_PCID VHOST_PCI_CTL}
PCID=${2:?}
CTL=${3:?}
T=$(mktemp -d /tmp/vp-p21hp-test-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "test_pair21_hotplug: FAIL: $*"
	for f in daemon.log qmp.log qmp.err; do [ -f "$T/$f" ] && tail -30 "$T/$f" | sed "s/^/  $f: /"; done
	exit 1
}

# The scripted QEMU: every command it gets goes to qmp.log (one JSON line each).
python3 - "$T/qmp.sock" "$T/qmp.log" <<'PY' 2>"$T/qmp.err" &
import json, os, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
log = open(sys.argv[2], "w", buffering=1)
refused_f0 = False
while True:
    c, _ = srv.accept()
    f, out = c.makefile("r"), c.makefile("w")  # one rw file drops its read-ahead
    def send(o):
        out.write(json.dumps(o) + "\r\n")
        out.flush()
    send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}})
    for line in f:
        m = json.loads(line)
        name, args, mid = m["execute"], m.get("arguments", {}), m.get("id")
        log.write(json.dumps({"cmd": name, "args": args}) + "\n")
        if name == "query-pci":
            devs = [{"bus": 0, "slot": s, "function": 0, "qdev_id": ""} for s in range(4)]
            send({"return": [{"bus": 0, "devices": devs}], "id": mid})
        elif name == "device_add" and args.get("driver") == "ivshmem-doorbell" and not refused_f0:
            refused_f0 = True
            send({"error": {"class": "GenericError", "desc": "scripted refusal"}, "id": mid})
        elif name == "device_del":
            send({"return": {}, "id": mid})
            base = args["id"][:-len("f0")]
            for fn in ("f1", "f2", "f0"):
                send({"event": "DEVICE_DELETED", "data": {"device": base + fn, "path": "/x"},
                      "timestamp": {"seconds": 0, "microseconds": 0}})
        else:
            send({"return": {}, "id": mid})
PY
pids+=($!)
for _ in $(seq 100); do [ -S "$T/qmp.sock" ] && break; sleep 0.05; done
"$PCID" --server "path=$T/p21.sock,id=p21,design=2.1,qemu=$T/ivs.sock,qmp=$T/qmp.sock" \
	--control "$T/ctl.sock" --log-level info 2>"$T/daemon.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$T/ctl.sock" ] && break; sleep 0.05; done
q() {
	"$CTL" --control "$T/ctl.sock" --json pairs >"$T/pairs.json" || fail "vhost-pci-ctl pairs"
	python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["pairs"][0]["qemu"]
print(" ".join(str(q[k]) for k in sys.argv[2:]))' "$T/pairs.json" "$@"
}
# wait_for WANT KEY...: up to 15 s for those keys to read WANT.
wait_for() { local w=$1; shift; for _ in $(seq 150); do [ "$(q "$@")" = "$w" ] && return 0; sleep 0.1; done; return 1; }

wait_for "True none 0" qmp_connected slot_state plugs || fail "QMP: $(q qmp_connected slot_state plugs)"
sleep 0.5
[ ! -s "$T/qmp.log" ] || [ "$(grep -c device_add "$T/qmp.log")" = 0 ] || fail "plugged with no other peer"

timeout -k 5 60 "$VM" --pair21 "$T/p21.sock" --mode poll --app sink --seconds 9 --quiet --json \
	>"$T/h.json" 2>"$T/h.log" &
hp=$!
pids+=($hp)
wait_for "plugged 1 1" slot_state plugs plug_failures || fail "not plugged: $(q slot_state plugs plug_failures why)"
[ "$(q slot)" = "00:04" ] || fail "slot $(q slot), want the first free one, 00:04"
grep -q "scripted refusal" "$T/daemon.log" || fail "QEMU's refusal not logged"
wait "$hp"
wait_for "none 1 1" slot_state plugs unplugs || fail "not unplugged: $(q slot_state plugs unplugs why)"
sleep 0.3  # the removals after the last DEVICE_DELETED

python3 - "$T/qmp.log" "${pids[1]}" <<'PY' || fail "QMP commands not as expected (qmp.log above)"
import json, sys
cmds = [c for c in map(json.loads, open(sys.argv[1])) if c["cmd"] != "qmp_capabilities"]
seq = [(c["cmd"], c["args"]["driver"] if c["cmd"] == "device_add" else c["args"].get("id", ""))
       for c in cmds]
pre = "vp21-p21-p0-"
want = [("query-pci", ""),
        ("object-add", pre + "g0-hdr"), ("object-add", pre + "g0-other"),
        ("device_add", "ivshmem-plain"), ("device_add", "ivshmem-plain"),
        ("chardev-add", pre + "g0-chr"), ("device_add", "ivshmem-doorbell")]
assert seq[:7] == want, seq[:7]
# the refused function 0: what was made goes (order of removal free), ids of generation 0
undo = sorted(seq[7:12])
assert undo == sorted([("device_del", pre + "g0-f1"), ("device_del", pre + "g0-f2"),
                       ("chardev-remove", pre + "g0-chr"), ("object-del", pre + "g0-hdr"),
                       ("object-del", pre + "g0-other")]), undo
g1 = [(n, i.replace("g1-", "g0-")) for n, i in seq[12:19]]
assert g1 == want, seq[12:19]
assert seq[19] == ("device_del", pre + "g1-f0"), seq[19:]
assert sorted(seq[20:]) == sorted([("chardev-remove", pre + "g1-chr"),
                                    ("object-del", pre + "g1-hdr"),
                                    ("object-del", pre + "g1-other")]), seq[20:]
args = [c["args"] for c in cmds[12:19]]
for a in args[1:3]:
    assert a["qom-type"] == "memory-backend-file" and a["readonly"] is True and a["share"] is True, a
    assert a["mem-path"].startswith("/proc/%s/fd/" % sys.argv[2]), a
assert args[3]["addr"] == "0x4.1" and args[3]["memdev"] == pre + "g1-hdr", args[3]
assert args[4]["addr"] == "0x4.2" and args[4]["memdev"] == pre + "g1-other", args[4]
assert args[5]["backend"]["data"]["addr"]["data"]["path"].endswith("/ivs.sock"), args[5]
assert args[6]["addr"] == "0x4.0" and args[6]["multifunction"] is True and args[6]["vectors"] == 2, args[6]
assert args[6]["chardev"] == pre + "g1-chr", args[6]
PY
# Idle with nothing due: the daemon's loop must sleep (a retry time in the past is no
# deadline). Its CPU time over two idle seconds, in clock ticks.
t0=$(awk '{print $14 + $15}' "/proc/${pids[1]}/stat")
sleep 2
t1=$(awk '{print $14 + $15}' "/proc/${pids[1]}/stat")
[ $((t1 - t0)) -lt $(( $(getconf CLK_TCK) / 2 )) ] ||
	fail "the daemon used $((t1 - t0)) clock ticks in 2 idle seconds: its loop spins"
echo "test_pair21_hotplug: ok (plug order, a refused function 0 undone and retried, unplug by function 0, cleanup)"
