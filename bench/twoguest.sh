#!/bin/bash
# Two real guests (stock Debian kernel, QEMU 7.2 TCG) talking, through vhost-pci and through
# a vSwitch, in one run so the ratios compare like with like:
#   vhost-pci  guest A: stock virtio-net on vhost-user to vhost-pcid; guest B: a backend VM
#              (backend-vm=) running vp-vm --backend --guest-pci --app tap (adaptive) with
#              its TAP in a bridge; the frames cross once, in B's userspace;
#   vhost-pci-tso  the same with the daemon's server declaring offloads=tso (vp-vm's tap app
#              takes TSO and hands it to B's kernel through the TAP);
#   kmod       the same, with the guest kernel driver (guest/linux/, vhost_pci_net.ko) in B
#              instead of vp-vm: its vpnet0 in the bridge; the frames cross once, in B's
#              kernel (skipped, with a note, without the guest kernel's headers); the
#              daemon offers A no offloads, so both kernels segment and checksum per MTU;
#   kmod-tso   the same with the daemon's server declaring offloads=tso: A negotiates
#              CSUM/GUEST_CSUM and HOST/GUEST_TSO4/6, TCP crosses in frames of up to 64 KiB
#              with partial checksums (docs/protocol.md "Offloads");
#   vswitch    guests A and B: stock virtio-net on vhost-user to vp-vswitch (adaptive, a
#              host process copying each frame out of one guest's ring into the other's).
# For each path, in each direction: ping RTT (min/avg/max of COUNT pings, busybox ping in the
# guest) and the time to push MIB MiB of random bytes over TCP (busybox nc, until the peer has
# counted them). A measurement, not a test: numbers depend on the machine's load.
#
#   bench/twoguest.sh BUILD_DIR [MIB [COUNT]]     (defaults 16 MiB, 20 pings)
#
# VP_BENCH_PATHS="kmod kmod-tso" (say) runs only those paths, in that order.
# VP_BENCH_PROFILE=N profiles the backend guest's kernel during each kmod* transfer (ftrace's
# function_graph tracer, the guest's "profile" command, tests/guest/tests/twoguest.sh) and
# prints its top N functions; the tracer slows the transfer, so those times are not the
# path's.
#
# Needs root, QEMU and the guest kit (tests/guest/setup.sh). Takes the guest-boot lock.
set -uo pipefail
vp_prog=bench-twoguest
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/guest/lib.sh"
. "$here/../tests/peers/twoguest-lib.sh"

build=$(realpath "${1:?usage: $0 BUILD_DIR [MIB [COUNT]]}")
mib=${2:-16} count=${3:-20}
pcid=$build/daemon/vhost-pcid vpvm=$build/tools/vp-vm vswitch=$build/tools/vp-vswitch
A=169.254.88.2 B=169.254.88.1
for f in "$pcid" "$vpvm" "$vswitch"; do [ -x "$f" ] || vp_die "no $f (build first)"; done
"$here/../tests/guest/setup.sh" >/dev/null || vp_die "tests/guest/setup.sh failed"

work=$(mktemp -d /tmp/vp-bench-twoguest.XXXXXX)
trap tg_cleanup EXIT
read -r -a paths <<<"${VP_BENCH_PATHS:-vhost-pci vhost-pci-tso kmod kmod-tso vswitch}"
for p in "${paths[@]}"; do
	case $p in vhost-pci | vhost-pci-tso | kmod | kmod-tso | vswitch) ;;
	*) vp_die "unknown path $p" ;;
	esac
done
has() { [[ " ${paths[*]} " == *" $1 "* ]]; }
if ! "$here/../tests/guest/setup.sh" --headers >/dev/null 2>&1 ||
	! tg_ko=$("$here/../guest/linux/build.sh" -o "$work/kbuild" 2>"$work/kbuild.err"); then
	echo "$vp_prog: no kmod paths: no guest kernel headers, or the module did not build"
	tg_ko=''
	read -r -a paths <<<"$(for p in "${paths[@]}"; do [[ $p == kmod* ]] || printf '%s ' "$p"; done)"
fi
tg_initrd || vp_die "mkinitrd.sh failed"
tg_lock
declare -A res=()

# measure PATH NAME PEER: one bench command; fills res[PATH.NAME.rtt|s]. With
# VP_BENCH_PROFILE on a kmod path, the backend guest (b) profiles it.
measure() {
	local from fromb m prof=''
	[[ $1 == kmod* ]] && prof=${VP_BENCH_PROFILE:-}
	# From the line after the last one now: a previous "profile end" must not count.
	from=$(tg_lines "$2") fromb=$(($(tg_lines b) + 1))
	if [ -n "$prof" ]; then
		tg_cmd b "profile start" || vp_die "b: no profile start"
		tg_wait b 60 "profile \(started\|FAIL\)" "$fromb" || vp_die "b: profile did not start"
		tg_marker b "profile FAIL" "$fromb" | grep . && vp_die "b: profile did not start"
	fi
	tg_cmd "$2" "bench $3 $count $mib" || vp_die "$2: no bench"
	tg_wait "$2" 300 "bench \(rtt\|FAIL\)" "$from" || vp_die "$2: bench did not finish"
	m=$(tg_marker "$2" "bench " "$from")
	if [ -n "$prof" ]; then
		tg_cmd b "profile stop $prof" || vp_die "b: no profile stop"
		# Reading back the whole trace buffer takes minutes under TCG.
		tg_wait b 900 "profile end" "$fromb" || vp_die "b: profile did not end"
		tail -n +"$fromb" "$work/b.log" | grep -a "INFO tg: profile " | sed 's/.*INFO tg: //' |
			tr -d '\r' | sed "s/^/$vp_prog: $1 $2 -> $3 backend /"
	fi
	echo "$vp_prog: $1 $2 -> $3: $m"
	grep -q "answer $((mib * 1048576))\$" <<<"$m" || vp_die "$2: the peer did not get $mib MiB"
	res[$1.$2.rtt]=$(awk '{ print $3 }' <<<"$m")
	res[$1.$2.s]=$(awk '{ print $7 }' <<<"$m")
}

# vhost-pci, vhost-pci-tso: B is the backend VM with vp-vm; kmod, kmod-tso: with the
# kernel driver. The server declares the offloads the backend honours for the -tso paths.
for p in vhost-pci vhost-pci-tso kmod kmod-tso; do
	has $p || continue
	rm -rf "$work/run" "$work/ctl.sock" "$work/net0.sock"
	tg_guest b "$([[ $p == kmod* ]] && echo bek || echo be)" "$B/24"
	tg_wait b 90 ready || vp_die "backend guest ($p) did not come up"
	tg_pcid "$pcid" b "$([[ $p == *-tso ]] && echo offloads=tso)" || vp_die "vhost-pcid did not start"
	tg_guest a fe "$A/24" -n "$work/net0.sock" --mac 52:54:00:88:00:02
	tg_wait a 90 ready || vp_die "frontend guest did not come up"
	tg_wait b 90 "bridged \(vpnet0\|vpB\)" || vp_die "no interface in the backend guest"
	echo "$vp_prog: $p: negotiated $("$build/tools/vhost-pci-ctl" --control "$work/ctl.sock" --json list |
		python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["devices"][0]["driver_feature_names"]))')"
	measure $p a $B
	measure $p b $A
	tg_stop_all
	kill "$tg_dpid"; wait "$tg_dpid" 2>/dev/null; tg_dpid=''
done

# vSwitch: both guests are plain virtio-net guests on vp-vswitch.
if has vswitch; then
	"$vswitch" --listen "$work/vs.sock" --ports 2 --quiet >"$work/vswitch.out" 2>"$work/vswitch.log" &
	tg_dpid=$!
	tg_guest b fe "$B/24" -n "$work/vs.sock" --mac 52:54:00:88:00:01
	tg_guest a fe "$A/24" -n "$work/vs.sock" --mac 52:54:00:88:00:02
	tg_wait b 90 ready && tg_wait a 90 ready || vp_die "vswitch guests did not come up"
	measure vswitch a $B
	measure vswitch b $A
	tg_stop_all
	kill "$tg_dpid"; wait "$tg_dpid" 2>/dev/null; tg_dpid=''
fi

echo
echo "two guests, TCG, $count pings, $mib MiB TCP (busybox nc), $(date -u +%Y-%m-%d)"
printf '%-14s %-8s %-22s %-10s %-10s\n' path dir "rtt min/avg/max ms" "tcp s" "MiB/s"
for p in "${paths[@]}"; do
	for g in a b; do
		d=$([ $g = a ] && echo "A->B" || echo "B->A")
		printf '%-14s %-8s %-22s %-10s %-10s\n' $p "$d" "${res[$p.$g.rtt]}" "${res[$p.$g.s]}" \
			"$(awk -v m="$mib" -v s="${res[$p.$g.s]}" 'BEGIN { printf "%.1f", ((s > 0) ? m / s : 0) }')"
	done
done
# ratio P Q: P's avg RTT and TCP time over Q's, each direction.
ratio() {
	local g
	for g in a b; do
		awk -v g=$g -v p="$1" -v q="$2" -v r1="${res[$1.$g.rtt]}" -v r2="${res[$2.$g.rtt]}" \
			-v s1="${res[$1.$g.s]}" -v s2="${res[$2.$g.s]}" 'BEGIN {
			split(r1, x, "/"); split(r2, y, "/");
			d = (g == "a") ? "A->B" : "B->A"; rr = (y[2] > 0) ? x[2] / y[2] : 0
			rs = (s2 > 0) ? s1 / s2 : 0
			printf "ratio %s/%s %s: avg rtt %.2f, tcp time %.2f\n", p, q, d, rr, rs }'
	done
}
# Each ratio whose two paths ran.
for pq in "vhost-pci vswitch" "kmod vswitch" "kmod vhost-pci" "vhost-pci-tso vhost-pci" \
	"kmod-tso kmod" "kmod-tso vswitch"; do
	if has "${pq% *}" && has "${pq#* }"; then ratio $pq; fi
done
