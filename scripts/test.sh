#!/usr/bin/env bash
# Run every vhost-pci test from a clean build (the README's second command).
#
#   1. gcc build, -Werror: unit, functional and daemon tests, then the
#      two-process ring harness
#   2. real peers: a stock QEMU guest and DPDK testpmd against vhost-pcid, and a
#      QEMU guest whose link follows a userspace backend VM that comes and goes,
#      and an ivshmem-doorbell hot-plugged into a running guest over QMP
#      (installs QEMU, a Debian guest kernel and DPDK from Debian's packages)
#   3. clang build, -Werror: unit, functional and daemon tests; a gcc release
#      build (-O3, -Werror) that only compiles: -O3 finds warnings -O2 does not
#   4. ASan+UBSan build: all of 1 again
#   5. libFuzzer targets (clang), each for FUZZ_SECONDS (default 30) from the
#      committed seed corpus
#
# Ends with one line "N passed, N failed, N skipped"; exits non-zero if any
# test failed. Environment: FUZZ_SECONDS, BUILD_ROOT (default ./build-test).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
B=${BUILD_ROOT:-$root/build-test}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
pass=0 fail=0 skip=0
failed_names=()

scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
rm -rf "$B"
mkdir -p "$B"

say() { printf '\n=== %s\n' "$*"; }
ok() { pass=$((pass + 1)); echo "PASS $1"; }
ko() { fail=$((fail + 1)); failed_names+=("$1"); echo "FAIL $1"; }

# Build one configuration; counts as a test of its own (warnings are errors).
build() { # name cc [meson options...]
	local name=$1 cc=$2; shift 2
	if CC=$cc meson setup "$B/$name" -Dwerror=true "$@" >"$B/$name.setup.log" 2>&1 &&
	   ninja -C "$B/$name" >"$B/$name.build.log" 2>&1; then
		ok "build-$name"
	else
		cat "$B/$name.setup.log" "$B/$name.build.log" 2>/dev/null | tail -40
		ko "build-$name"
		return 1
	fi
}

# Run meson tests and add their per-test results to the tally.
# SEL is a suite name, or "rest" for every suite but the (serial) harness and the guest
# boots of peers (run below, one by one, from the gcc build).
suite() { # build-name SEL [meson test options...]
	local name=$1 s=$2 sel; shift 2
	if [ "$s" = rest ]; then sel=(--no-suite harness --no-suite peers); else sel=(--suite "$s"); fi
	meson test -C "$B/$name" "${sel[@]}" --print-errorlogs "$@" \
		>"$B/$name.$s.log" 2>&1
	grep -E '^ *[0-9]+/[0-9]+ ' "$B/$name.$s.log" | sed "s/^/  [$name] /"
	local counts
	counts=$(python3 - "$B/$name/meson-logs/testlog.json" "$name" "$B/failures.txt" <<'PY'
import json, sys
p = f = s = 0
names = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    r = t.get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
        name = sys.argv[2] + ":" + t.get("name", "?")
        names.append(name)
        # Kept for the end of the run, where a CI viewer that shows only
        # the last part of the output still sees why.
        out = (t.get("stdout") or "").splitlines()
        with open(sys.argv[3], "a") as fl:
            fl.write(f"--- {name}: {r}, last {min(len(out), 60)} lines of its output\n")
            fl.write("\n".join(out[-60:]) + "\n")
print(p, f, s, " ".join(names))
PY
)
	# testlog.json is rewritten per meson test run, so it holds this suite only.
	local np nf ns names
	read -r np nf ns names <<<"$counts"
	pass=$((pass + np)); fail=$((fail + nf)); skip=$((skip + ns))
	[ -n "${names:-}" ] && failed_names+=($names)
	# --print-errorlogs put each failed test's own output in the log.
	[ "$nf" -eq 0 ] || tail -150 "$B/$name.$s.log"
}

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1

say "gcc build (-Werror): unit, functional, daemon tests and ring harness"
if build gcc gcc; then
	suite gcc rest
	suite gcc harness --num-processes 1
fi

say "real peers: stock QEMU 7.2 guest and DPDK testpmd against vhost-pcid (packed and multiqueue against vp-vm and through vhost-pcid)"
if [ -x "$B/gcc/daemon/vhost-pcid" ]; then
	for t in qemu-daemon qemu-backend dpdk-daemon dpdk-packed dpdk-mq qemu-packed qemu-mq qemu-ivshmem qemu-bevm qemu-cold qemu-guestbe \
		qemu-kmod qemu-kmod-data qemu-twoguest qemu-twoguest-resil qemu-twoguest-kmod \
		qemu-twoguest-kmod-resil qemu-twoguest-offload qemu-pair21 qemu-pair21-kmod \
		qemu-pair21-twoguest qemu-pair21-hotplug qemu-pair21-irq; do
		timeout 900 "$root/tests/peers/$t.sh" "$B/gcc/daemon/vhost-pcid" "$B/gcc/tools/vhost-pci-ctl" \
			"$B/gcc/tools/vp-vm" >"$B/$t.log" 2>&1
		rc=$?
		grep -E "^(device|$t|run-guest)" "$B/$t.log" | sed 's/^/  /'
		case $rc in
		0) ok "$t" ;;
		77) skip=$((skip + 1)); echo "SKIP $t" ;;
		*) tail -30 "$B/$t.log"
		   { echo "--- $t: exit $rc, last 30 lines of its log"; tail -30 "$B/$t.log"; } >>"$B/failures.txt"
		   ko "$t" ;;
		esac
	done
fi

say "clang build (-Werror): unit, functional and daemon tests"
if build clang clang; then
	suite clang rest
fi

say "gcc release build (-O3 -Werror): compiles warning-free (what bench/suite and packagers build)"
build release gcc --buildtype=release

say "ASan+UBSan build: everything of the gcc run again"
if build asan gcc -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug; then
	suite asan rest --timeout-multiplier 3
	suite asan harness --num-processes 1 --timeout-multiplier 4
fi

say "libFuzzer targets, ${FUZZ_SECONDS}s each"
if build fuzz clang -Dfuzz=true; then
	for t in proto vring vring_packed session devinfo pair21; do
		work=$B/fuzz/corpus-$t
		mkdir -p "$work"
		# New inputs go to the scratch dir; the committed seeds are read only.
		if "$B/fuzz/tests/fuzz/fuzz-$t" -max_total_time="$FUZZ_SECONDS" \
			-print_final_stats=1 -artifact_prefix="$B/fuzz/crash-$t-" \
			"$work" "$root/tests/fuzz/corpus/$t" >"$B/fuzz-$t.log" 2>&1; then
			ok "fuzz-$t ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$B/fuzz-$t.log" | grep -o '[0-9]*$') execs)"
		else
			tail -40 "$B/fuzz-$t.log"
			{ echo "--- fuzz-$t, last 40 lines of its log"; tail -40 "$B/fuzz-$t.log"; } >>"$B/failures.txt"
			ko "fuzz-$t"
		fi
	done
fi

echo
[ -s "$B/failures.txt" ] && { echo "=== why the failed tests failed (repeated from above)"; cat "$B/failures.txt"; }
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
