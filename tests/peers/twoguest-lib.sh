# Host side of the two-guest tests (qemu-twoguest.sh, qemu-twoguest-resil.sh) and of
# bench/twoguest.sh: boot guests running tests/guest/tests/twoguest.sh, send them commands
# on their second serial port, wait for their markers. Sourced (bash), after lib.sh; the
# caller sets `work` (a scratch directory), `vp_prog`, and `vpvm` (the vp-vm binary) or
# `tg_ko` (the kernel driver, tg_kmod) or both: what the backend guest runs.
# shellcheck shell=bash

tg_kit=$(cd "$(dirname "${BASH_SOURCE[0]}")/../guest" && pwd)
declare -A tg_pid=()

# Every run that boots guests holds this lock: two TCG guests take both cores, and other
# tests boot guests too. Held until the caller exits.
tg_lock() {
	exec {tg_lockfd}>/tmp/vp-guest-boot.lock
	flock "$tg_lockfd"
}

# One initramfs for every role: vp-vm and the libraries ldd names (in /lib/vp: the guest's
# /tmp is a tmpfs, so build-tree paths would be hidden), the loader where vp-vm looks for it,
# tun and bridge for the backend's TAPs (and tg_modules, a comma list, if set), virtio_net
# for the frontends; the kernel driver in
# /lib/modules/extra (not loaded: role bek insmods it) when tg_ko is set; ethtool then, or
# when tg_ethtool=1.
tg_initrd() {
	local files=() bins=() lib
	[ -z "${tg_ko:-}" ] || files+=(-K "$tg_ko")
	[ -z "${vpvm:-}" ] || { files+=(-f "$vpvm:/bin/vp-vm"); bins+=("$vpvm"); }
	# ethtool (-i, -S) for the kernel driver's interfaces, where the host has it (Debian's,
	# like the guest's userland libraries).
	if [ -n "${tg_ko:-}${tg_ethtool:-}" ] && command -v ethtool >/dev/null; then
		files+=(-f "$(command -v ethtool):/bin/ethtool")
		bins+=("$(command -v ethtool)")
	fi
	while read -r lib; do
		case $lib in
		*ld-linux*) files+=(-f "$(realpath "$lib"):$lib") ;;
		*) files+=(-f "$(realpath "$lib"):/lib/vp/$(basename "$lib")") ;;
		esac
	done < <(for lib in "${bins[@]}"; do ldd "$lib" | grep -o '/[^ ]*'; done | sort -u)
	"$tg_kit/mkinitrd.sh" -m "tun,bridge${tg_modules:+,$tg_modules}" "${files[@]}" -o "$work/initrd.cpio" \
		2>"$work/mkinitrd.log"
}

# tg_guest NAME ROLE IP/N [run-guest.sh options]: boot a guest in the background. Its serial
# log is $work/NAME.log, its command port $work/NAME.cmd, its QMP $work/NAME.qmp.
tg_guest() {
	local name=$1 role=$2 ip=$3
	shift 3
	# A previous guest of this name must not answer for this one (run-guest.sh empties
	# the log only once it runs).
	[ ! -f "$work/$name.log" ] || mv "$work/$name.log" "$work/$name.log.old"
	rm -f "$work/$name.cmd" "$work/$name.qmp"
	"$tg_kit/run-guest.sh" -t twoguest --name "$name" --initrd "$work/initrd.cpio" \
		-e VP_TG_ROLE="$role" -e VP_TG_IP="$ip" -e VP_TG_KIB="${TG_KIB:-1024}" \
		-e VP_HOSTNAME="$name" -T "${TG_GUEST_TIMEOUT:-300}" -l "$work/$name.log" \
		-q -chardev -q "socket,id=tgcmd,path=$work/$name.cmd,server=on,wait=off" \
		-q -serial -q chardev:tgcmd \
		-q -qmp -q "unix:$work/$name.qmp,server=on,wait=off" "$@" \
		>>"$work/$name.out" 2>&1 &
	tg_pid[$name]=$!
}

# The guest's QEMU process (run-guest.sh writes its pid file next to the log).
tg_qemu_pid() { cat "$work/$1.log.pid" 2>/dev/null; }

# Lines in NAME's serial log so far: a starting point for tg_wait.
tg_lines() { wc -l <"$work/$1.log" 2>/dev/null || echo 0; }

# tg_wait NAME SECONDS PATTERN [FROM-LINE]: a "VPGUEST: INFO tg: PATTERN" marker.
tg_wait() {
	vp_wait_serial "$work/$1.log" "${tg_pid[$1]}" "$2" "INFO tg: $3" "${4:-1}"
}

# The newest marker matching PATTERN after FROM-LINE, without the prefix.
tg_marker() {
	tail -n +"${3:-1}" "$work/$1.log" | grep -a "INFO tg: $2" | tail -1 | sed 's/.*INFO tg: //' | tr -d '\r'
}

# tg_cmd NAME LINE: one command line to the guest's second serial port. The connection stays
# open until the guest has echoed the line ("tg: cmd LINE"): QEMU drops what it has not yet
# read from a chardev that hangs up.
tg_cmd() {
	python3 - "$work/$1.cmd" "$2" "$work/$1.log" "$(tg_lines "$1")" <<'EOF'
import socket, sys, time
path, line, log, skip = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(line.encode() + b"\n")
want = "INFO tg: cmd " + " ".join(line.split())
for _ in range(300):
    with open(log, errors="replace") as f:
        if any(want in l for l in f.readlines()[skip:]):
            sys.exit(0)
    time.sleep(0.1)
sys.exit("the guest did not take the command '%s' within 30 s" % line)
EOF
}

# tg_qmp NAME COMMAND: one QMP command, e.g. system_reset; fails on an error answer.
tg_qmp() {
	python3 - "$work/$1.qmp" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
json.loads(f.readline())
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m:
            break
        if "error" in m:
            sys.exit("qmp %s: %s" % (cmd, m["error"]))
EOF
}

# tg_round NAME N PEER SECONDS [SIZE]: run round N from NAME against PEER (with SIZE: first
# pings of SIZE bytes that must leave unfragmented); 0 when it passed.
tg_round() {
	local from
	from=$(tg_lines "$1")
	tg_cmd "$1" "round $2 $3${5:+ $5}" || return 1
	tg_wait "$1" "$4" "round $2 \(ok\|FAIL\)" "$from" || return 1
	echo "$vp_prog: $1: $(tg_marker "$1" "round $2 " "$from")"
	tg_wait "$1" 1 "round $2 ok" "$from"
}

# tg_step NAME COMMAND SECONDS OK-PATTERN: send COMMAND, wait for "OK-PATTERN" or for the
# command's FAIL marker (COMMAND's first word, then FAIL), print the marker; 0 when it was OK.
tg_step() {
	local from
	from=$(tg_lines "$1")
	tg_cmd "$1" "$2" || return 1
	tg_wait "$1" "$3" "\($4\|${2%% *} FAIL\)" "$from" || return 1
	echo "$vp_prog: $1: $(tg_marker "$1" "\($4\|${2%% *} FAIL\)" "$from")"
	tg_wait "$1" 1 "$4" "$from"
}

# tg_reboot NAME: reset the guest over QMP and wait until it has booted again and is ready.
tg_reboot() {
	local from
	from=$(tg_lines "$1")
	tg_qmp "$1" system_reset || return 1
	tg_wait "$1" 90 "ready" "$from" || return 1
	grep -aq "VPGUEST: BOOTED" <(tail -n +"$from" "$work/$1.log")
}

# A hostile frontend process (vp-vm's test hook --test-bad-desc, docs/vp-vm.md) beside the
# guests, on the daemon's socket: 16 MiB of sealed memfd RAM, 200 frames a second, after 64
# one bad TX chain (KIND range, loop or len), then it holds the link until stopped. Needs
# $vpvm and the daemon of tg_pcid. Each prints why it failed and returns 1.
#
# tg_hostile_start KIND PAIRS: start it; wait until the backend guest has PAIRS vhost-pci
# devices and the process has posted its chain. Sets tg_hostile_pid.
tg_hostile_start() {
	local from
	from=$(tg_lines be)
	tg_hostile_nfail=$(grep -c "backend VM driver status .*failed: " "$work/daemon.log")
	"$vpvm" --frontend --connect "$work/net0.sock" --app gen --rate 200 --seconds 3600 \
		--ram 16M --name "hostile-$1" --test-bad-desc "$1@64" --log-level info --quiet \
		--json >"$work/hostile-$1.json" 2>"$work/hostile-$1.log" &
	tg_hostile_pid=$!
	tg_wait be 90 "pairs $2" "$from" || { echo "$1: no device for the hostile frontend"; return 1; }
	vp_wait_serial "$work/hostile-$1.log" "$tg_hostile_pid" 30 "posted a bad TX chain ($1)" ||
		{ echo "$1: the hostile frontend did not post its bad chain"; return 1; }
}

# tg_hostile_failed WHY: the backend guest's driver failed the hostile device with WHY in
# its reason: one more "driver status ... failed" in the daemon's log than at the start, and
# vhost-pci-ctl shows the device still plugged, FAILED, with the reason.
tg_hostile_failed() {
	local _
	for _ in $(seq 600); do
		[ "$(grep -c "backend VM driver status .*failed: " "$work/daemon.log")" -gt \
			"$tg_hostile_nfail" ] && break
		sleep 0.1
	done
	grep "backend VM driver status .*failed: " "$work/daemon.log" | tail -1 | grep -q -- "$1" ||
		{ echo "the daemon did not see the device failed with '$1'"; return 1; }
	echo "$vp_prog: $(grep "backend VM driver status .*failed: " "$work/daemon.log" |
		tail -1 | sed 's/.*warn: //')"
	"$ctl" --control "$work/ctl.sock" --json list | python3 -c '
import json, sys
prog, pid, why = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ds = [d for d in json.load(sys.stdin)["devices"] if d["peer_pid"] == pid]
b = ds[0].get("backend") or {} if ds else {}
r = b.get("reason") or ""
print("%s: vhost-pci-ctl: device %s: %s, driver_status %s, reason: %s" %
      (prog, ds[0]["id"] if ds else "?", b.get("state"), b.get("driver_status"), r))
sys.exit(not ds or b.get("state") != "plugged" or not int(b.get("driver_status") or "0", 16) & 0x80
         or "driver failed the device" not in r or why not in r)' "$vp_prog" "$tg_hostile_pid" "$1" ||
		{ echo "vhost-pci-ctl does not show the device failed with its reason"; return 1; }
}

# tg_hostile_stop PAIRS: the process is still there (it holds its link); stop it and wait
# until the backend guest is back to PAIRS devices (its device unplugged).
tg_hostile_stop() {
	local from
	kill -0 "$tg_hostile_pid" || { echo "the hostile frontend exited by itself"; return 1; }
	from=$(tg_lines be)
	kill "$tg_hostile_pid"
	wait "$tg_hostile_pid"
	tg_hostile_pid=''
	tg_wait be 60 "pairs $1" "$from" || { echo "the hostile frontend's device was not unplugged"; return 1; }
}

# Stop a guest: its run-guest.sh takes QEMU down with it.
tg_stop() {
	local p=${tg_pid[$1]:-}
	[ -n "$p" ] || return 0
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	tg_pid[$1]=''
}

tg_stop_all() {
	local n
	for n in "${!tg_pid[@]}"; do tg_stop "$n"; done
}

# tg_diag NAME...: ask each running guest for its state (vp-vm's log, devices, neighbours)
# and print the markers of every guest named.
tg_diag() {
	local n
	for n in "$@"; do
		[ -n "${tg_pid[$n]:-}" ] && tg_cmd "$n" diag 2>/dev/null && tg_wait "$n" 10 "diag end"
	done
	for n in "$@"; do
		[ -f "$work/$n.log" ] &&
			grep -ah "VPGUEST\|BUG\|Oops" "$work/$n.log" | tail -50 | sed "s/^/  $n: /"
	done
}

# tg_fail MESSAGE GUEST...: report a failed step with what the guests, the daemon's rings
# (when $ctl names vhost-pci-ctl) and its log say, and exit 1.
tg_fail() {
	local id
	echo "$vp_prog: FAIL: $1"
	shift
	tg_diag "$@"
	[ -n "${ctl:-}" ] && [ -S "$work/ctl.sock" ] &&
		for id in $("$ctl" --control "$work/ctl.sock" --json list 2>/dev/null |
			python3 -c 'import json, sys; print(*[d["id"] for d in json.load(sys.stdin)["devices"]])'); do
			"$ctl" --control "$work/ctl.sock" show "$id" | sed 's/^/  ctl: /'
		done
	[ -f "$work/daemon.log" ] && grep -v debug "$work/daemon.log" | tail -25 | sed 's/^/  daemon: /'
	exit 1
}

# tg_args VHOST_PCID [VHOST_PCI_CTL VP_VM]: the arguments of the guest scripts; sets pcid,
# build, ctl and vpvm (defaults: the tools next to the daemon's build); exit 1 without them.
tg_args() {
	local f
	pcid=$(realpath "${1:?usage: $0 VHOST_PCID [VHOST_PCI_CTL VP_VM]}")
	build=$(dirname "$pcid")/..
	ctl=$(realpath "${2:-$build/tools/vhost-pci-ctl}")
	vpvm=$(realpath "${3:-$build/tools/vp-vm}")
	for f in "$ctl" "$vpvm"; do
		[ -x "$f" ] || { echo "$vp_prog: FAIL: no $f (build it first)"; exit 1; }
	done
}

# tg_fail_logs MESSAGE LOG...: report a failed step with the tail of each $work/LOG and the
# guests' markers and driver/kernel lines (every $work/serial*.log), and exit 1.
tg_fail_logs() {
	local f
	echo "$vp_prog: FAIL: $1"
	shift
	for f in "$@"; do
		[ -f "$work/$f" ] && { echo "  $f:"; tail -8 "$work/$f" | sed 's/^/    /'; }
	done
	for f in "$work"/serial*.log; do
		[ -f "$f" ] && grep -ahE "VPGUEST|vp21|vhost_pci|net21|WARNING|BUG|Oops" "$f" |
			tail -20 | sed "s/^/  $(basename "$f" .log): /"
	done
	exit 1
}

# What every two-guest script needs before it boots anything; exit 77 (SKIP) without it.
tg_require() {
	[ "$(id -u)" = 0 ] || { echo "$vp_prog: SKIP: needs root (packages)"; exit 77; }
	"$tg_kit/setup.sh" >/dev/null ||
		{ echo "$vp_prog: SKIP: tests/guest/setup.sh failed (no QEMU or guest kernel)"; exit 77; }
	command -v qemu-system-x86_64 >/dev/null || { echo "$vp_prog: SKIP: no qemu-system-x86_64"; exit 77; }
}

# tg_kmod: build the kernel driver (guest/linux/build.sh, W=1, warning-free) against the guest
# kernel's headers into $work/kbuild; sets tg_ko. Exit 77 (SKIP) without the headers, 1 when
# the build fails or warns.
tg_kmod() {
	"$tg_kit/setup.sh" --headers >/dev/null ||
		{ echo "$vp_prog: SKIP: tests/guest/setup.sh --headers failed"; exit 77; }
	tg_ko=$("$tg_kit/../../guest/linux/build.sh" -o "$work/kbuild" 2>"$work/kbuild.err") || {
		cat "$work/kbuild.err"
		echo "$vp_prog: FAIL: the module did not build warning-free"
		exit 1
	}
}

# tg_setup_kmod: what a kernel-driver two-guest script does before its first guest: the
# checks (SKIP), $work with the cleanup trap, the module, the initramfs, the lock; t0.
tg_setup_kmod() {
	tg_require
	work=$(mktemp -d "/tmp/vp-$vp_prog.XXXXXX")
	trap tg_cleanup EXIT
	tg_kmod
	echo "$vp_prog: module built warning-free (W=1)"
	tg_initrd || fail "mkinitrd.sh failed: $(tail -3 "$work/mkinitrd.log")"
	tg_lock
	t0=$(vp_now)
}

# tg_pcid VHOST_PCID BACKEND_VM_GUEST [SPEC-KEYS]: vhost-pcid serving $work/net0.sock into that
# guest's QMP (SPEC-KEYS, e.g. offloads=tso, added to the server spec), debug log in
# $work/daemon.log, control socket $work/ctl.sock. Sets tg_dpid.
tg_pcid() {
	"$1" --server "path=$work/net0.sock,id=net0,backend-vm=$work/$2.qmp${3:+,$3}" \
		--control "$work/ctl.sock" --run-dir "$work/run" --log-level debug \
		2>"$work/daemon.log" &
	tg_dpid=$!
	for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && return 0; sleep 0.1; done
	return 1
}

# The EXIT trap of every two-guest script: a hostile frontend, guests, the daemon or switch,
# the scratch dir.
tg_cleanup() {
	[ -z "${tg_hostile_pid:-}" ] || { kill "$tg_hostile_pid" 2>/dev/null; wait "$tg_hostile_pid" 2>/dev/null; }
	tg_stop_all
	[ -z "${tg_dpid:-}" ] || { kill "$tg_dpid" 2>/dev/null; wait "$tg_dpid" 2>/dev/null; }
	tg_dpid=''
	[ "${VP_KEEP_LOGS:-0}" = 1 ] && echo "$vp_prog: logs in $work" || rm -rf "$work"
}

# tg_pair21 PCID CTL: vhost-pcid serving one 2.1 pair whose peer 0 is a QEMU guest (docs/
# window21.md 9): the other peer joins at $work/p21.sock. Sets dpid (the daemon), other (the
# /proc path of the other's section, as the daemon names it) and tg_p21_slot, the
# run-guest.sh arguments of the guest's slot (.0 ivshmem-doorbell on the daemon's ivshmem
# server, .1 the header and .2 the other's section, both readonly=on). Calls the script's
# fail when the daemon does not serve it.
tg_pair21() {
	local header ssize
	"$1" --server "path=$work/p21.sock,id=p21,design=2.1,qemu=$work/ivshmem.sock" \
		--control "$work/ctl.sock" --log-level info 2>"$work/daemon.log" &
	dpid=$!
	for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && [ -S "$work/ivshmem.sock" ] && break; sleep 0.1; done
	[ -S "$work/ivshmem.sock" ] || fail "the daemon did not serve the pair's QEMU peer"
	"$2" --control "$work/ctl.sock" --json pairs >"$work/pairs.json" || fail "vhost-pci-ctl pairs"
	read -r header other ssize < <(python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["pairs"][0]["qemu"]
assert q["peer"] == 0
print(q["header"], q["other_section"], q["section_size"])' "$work/pairs.json") ||
		fail "no qemu peer in $(cat "$work/pairs.json")"
	tg_p21_slot_args "$work/ivshmem.sock" "$header" "$other" "$ssize"
}

# tg_p21_slot_args IVSHMEM_SOCK HEADER OTHER SECTION_SIZE: sets tg_p21_slot, the run-guest.sh
# arguments of one guest's 2.1 slot (docs/device.md 9): .0 ivshmem-doorbell on the daemon's
# ivshmem server, .1 the header and .2 the other's section, both readonly=on.
tg_p21_slot_args() {
	tg_p21_slot=(-q -chardev -q "socket,id=vp21,path=$1"
		-q -device -q "ivshmem-doorbell,chardev=vp21,vectors=2,addr=0x10.0,multifunction=on"
		-q -object -q "memory-backend-file,id=vp21h,mem-path=$2,size=4K,share=on,readonly=on"
		-q -device -q "ivshmem-plain,memdev=vp21h,addr=0x10.1"
		-q -object -q "memory-backend-file,id=vp21o,mem-path=$3,size=$4,share=on,readonly=on"
		-q -device -q "ivshmem-plain,memdev=vp21o,addr=0x10.2")
}
